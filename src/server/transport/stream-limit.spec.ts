import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { kCaller, type CallerIdentity } from "../identity/caller-identity.js";
import { createStreamLimiter, createStreamLimitInterceptor } from "./stream-limit.js";

// The caller's certificate, as the transport would read it, taken here from a test header.
const asCaller: Interceptor = (next) => (request) => {
  const fingerprint = request.header.get("x-test-fingerprint");
  request.contextValues.set(kCaller, { identity: fingerprint ? ({ fingerprint } as CallerIdentity) : undefined, observedAddress: "127.0.0.1" });
  return next(request);
};

function setup(max: number) {
  let refused = 0;
  const transport = createRouterTransport(
    (router) =>
      router.service(RelayService, {
        async *heartbeat(requests) {
          for await (const _ of requests) yield {};
        },
      }),
    { router: { interceptors: [asCaller, createStreamLimitInterceptor(createStreamLimiter({ maxStreamsPerCertificate: max, logger: pino({ level: "silent" }), onLimited: () => refused++ }))] } },
  );
  return { client: createClient(RelayService, transport), refused: () => refused };
}

/** Opens a Heartbeat stream as fingerprint and reads one answer; "ok" or the error code. */
async function open(client: ReturnType<typeof setup>["client"], fingerprint: string): Promise<{ outcome: "ok" | Code; close: () => Promise<void> }> {
  const requests = createWritableIterable<object>();
  const responses = client.heartbeat(requests, { headers: { "x-test-fingerprint": fingerprint } })[Symbol.asyncIterator]();
  requests.write({}).catch(() => {});
  try {
    await responses.next();
    // Half-close, then read to the end: the call is over when its answer has been read.
    const close = async () => {
      requests.close();
      while (!(await responses.next()).done);
    };
    return { outcome: "ok", close };
  } catch (error) {
    return { outcome: ConnectError.from(error).code, close: async () => {} };
  }
}

describe("createStreamLimitInterceptor", () => {
  it("should refuse a certificate's streams beyond the cap with resource_exhausted, and count each certificate apart", async () => {
    const { client, refused } = setup(2);
    const outcomes = [await open(client, "a"), await open(client, "a"), await open(client, "a"), await open(client, "b")];
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "ok", Code.ResourceExhausted, "ok"]);
    expect(refused()).toBe(1);
    for (const o of outcomes) await o.close();
  });

  it("should give a closed stream's place back", async () => {
    const { client } = setup(1);
    const first = await open(client, "a");
    expect((await open(client, "a")).outcome).toBe(Code.ResourceExhausted);
    await first.close();
    expect((await open(client, "a")).outcome).toBe("ok");
  });

  it("should not count callers without a certificate, nor limit with a cap of 0", async () => {
    const { client } = setup(0);
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => open(client, "a")));
    expect(outcomes.every((o) => o.outcome === "ok")).toBe(true);
    const anonymous = setup(1);
    expect((await Promise.all([open(anonymous.client, ""), open(anonymous.client, "")])).map((o) => o.outcome)).toEqual(["ok", "ok"]);
  });
});

// Unary calls are served two ways: gRPC and Connect with the binary codec on the relay's own path
// (direct-unary.ts), gRPC-Web and the JSON codec through connect-node. The first part runs every
// case over each of the four against the real relay over mutual TLS and expects the same answers.
// The second sends the same raw HTTP/2 requests to a relay serving them directly and to one whose
// extra interceptor keeps every call with connect-node, and expects the same answers from both.
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Client, type Interceptor } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { LookupRequestSchema, RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayMetrics, type RelayMetrics } from "../src/server/ops/metrics.js";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { createTestPeer, registeredClient, relayClient, type Protocol, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { rstCodeWithin, zeroWindowSession } from "./support/streams.js";
import { codeOf } from "./support/codes.js";

const protocols: Protocol[] = ["grpc", "connect", "grpc-web", "connect-json"];
let sequence = 0;
const newPeer = (tag: string) => createTestPeer(`unary-${tag}-${process.pid}-${++sequence}@example.com`);

/** The relay_rpc_requests_total count of rpc ending with code. */
async function requestsCounted(metrics: RelayMetrics, method: string, code: string): Promise<number> {
  const values = (await metrics.registry.getSingleMetric("relay_rpc_requests_total")!.get()).values;
  return values.find((value) => value.labels.rpc === `relay.v1.RelayService/${method}` && value.labels.code === code)?.value ?? 0;
}

describe.each(protocols)("unary calls over %s", (protocol) => {
  let relay: TestRelay;
  let limited: TestRelay;
  const metrics = createRelayMetrics({ store: new MemoryStore() });
  beforeAll(async () => {
    relay = await startTestRelay({ metrics });
    limited = await startTestRelay({ rateLimits: { windowSeconds: 600, perCertificate: 3 } });
  });
  afterAll(async () => {
    await relay?.stop();
    await limited?.stop();
  });

  it("should register, announce, look up, find the registration and go offline, each answer with a request id", async () => {
    const peer = await newPeer(protocol);
    const client = relayClient(relay, peer, protocol);
    const requestIds: Array<string | null> = [];
    const onHeader = (headers: Headers) => requestIds.push(headers.get("x-request-id"));
    const registered = await client.register({ email: peer.email, certificatePem: peer.certificatePem }, { onHeader });
    expect(registered.clientId).toBe(peer.fingerprint);
    expect(registered.alreadyRegistered).toBe(false);
    expect((await client.register({ email: peer.email, certificatePem: peer.certificatePem })).alreadyRegistered).toBe(true);
    const ready = await client.ready({ port: 4100, addresses: ["127.0.0.1"] }, { onHeader });
    expect(ready.broadcastId).not.toBe("");
    expect(ready.observedAddress).toBe("127.0.0.1");
    const found = await client.lookup({ email: peer.email }, { onHeader, headers: { "x-request-id": `given-${protocol}` } });
    expect(found.peer).toMatchObject({ email: peer.email, port: 4100, addresses: ["127.0.0.1"], fingerprint: peer.fingerprint, observedAddress: "127.0.0.1" });
    expect(found.peer!.expiresAt!.seconds).toBeGreaterThan(BigInt(Math.floor(Date.now() / 1000)));
    const registration = await client.getRegistration({ key: { case: "email", value: peer.email } });
    expect(registration.fingerprint).toBe(peer.fingerprint);
    expect((await client.offline({ broadcastId: ready.broadcastId })).wasOnline).toBe(true);
    const gone = await client.lookup({ email: peer.email }).then(() => undefined, (error: unknown) => ConnectError.from(error));
    expect(gone?.code).toBe(Code.NotFound);
    expect(gone?.rawMessage).toBe(`peer ${peer.email} is not online`);
    expect(gone?.metadata.get("x-request-id")).toMatch(/^[0-9a-f]{16}$/);
    expect(requestIds[0]).toMatch(/^[0-9a-f]{16}$/);
    expect(requestIds[1]).toMatch(/^[0-9a-f]{16}$/);
    expect(requestIds[2]).toBe(`given-${protocol}`);
  });

  it("should refuse a connection without a certificate, an unregistered peer, a malformed email and an oversized message", async () => {
    expect(await codeOf(relayClient(relay, undefined, protocol).lookup({ email: "someone@example.com" }))).toBe(Code.Unauthenticated);
    expect(await codeOf(relayClient(relay, await newPeer(protocol), protocol).lookup({ email: "someone@example.com" }))).toBe(Code.Unauthenticated);
    const client = await registeredClient(relay, await newPeer(protocol), protocol);
    expect(await codeOf(client.lookup({ email: "not an email" }))).toBe(Code.InvalidArgument);
    const oversized = await client.lookup({ email: `${"x".repeat(2000)}@example.com` }).then(() => undefined, (error: unknown) => ConnectError.from(error));
    expect(oversized?.code).toBe(Code.ResourceExhausted);
    expect(oversized?.rawMessage).toContain("is larger than configured readMaxBytes 1024");
  });

  it("should refuse calls over the rate limit with resource_exhausted and a retry-after", async () => {
    const peer = await newPeer(protocol);
    const client = await registeredClient(limited, peer, protocol);
    await client.ready({ port: 4101 });
    await client.lookup({ email: peer.email });
    const refused = await client.lookup({ email: peer.email }).then(() => undefined, (error: unknown) => ConnectError.from(error));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(Number(refused?.metadata.get("retry-after"))).toBeGreaterThan(0);
  });

  it("should count every call on the relay's metrics by rpc and outcome", async () => {
    const before = { ok: await requestsCounted(metrics, "Lookup", "ok"), notFound: await requestsCounted(metrics, "Lookup", "not_found") };
    const peer = await newPeer(protocol);
    const client = await registeredClient(relay, peer, protocol);
    await client.ready({ port: 4102 });
    await client.lookup({ email: peer.email });
    await client.lookup({ email: peer.email });
    await codeOf(client.lookup({ email: `absent-${peer.email}` }));
    expect(await requestsCounted(metrics, "Lookup", "ok")).toBe(before.ok + 2);
    expect(await requestsCounted(metrics, "Lookup", "not_found")).toBe(before.notFound + 1);
  });
});

/** One raw HTTP/2 request's answer, as a client would read it. */
interface RawAnswer {
  status: number;
  contentType: string | undefined;
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  /** A Connect error's JSON code and message. */
  error: { code?: string; message?: string } | undefined;
}

/** A Lookup store that takes delayMs to answer, as a database under load does. */
class SlowLookupStore extends MemoryStore {
  delayMs = 0;
  override async findBroadcast(...args: Parameters<MemoryStore["findBroadcast"]>): ReturnType<MemoryStore["findBroadcast"]> {
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    return super.findBroadcast(...args);
  }
}

describe("unary calls on the raw HTTP/2 stream", () => {
  const passThrough: Interceptor = (next) => (request) => next(request);
  const store = new SlowLookupStore();
  let direct: TestRelay;
  let throughConnect: TestRelay;
  let peer: TestPeer;
  let client: Client<typeof RelayService>;
  const sessions: http2.ClientHttp2Session[] = [];
  beforeAll(async () => {
    direct = await startTestRelay({ store });
    // With an extra interceptor every call goes through connect-node.
    throughConnect = await startTestRelay({ store, interceptors: [passThrough] });
    peer = await newPeer("raw");
    client = await registeredClient(direct, peer);
    await client.ready({ port: 4103 });
  });
  afterAll(async () => {
    for (const session of sessions) session.close();
    await direct?.stop();
    await throughConnect?.stop();
  });

  async function send(relay: TestRelay, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<RawAnswer> {
    const session = http2.connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
    sessions.push(session);
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/Lookup", ...headers });
    const chunks: Buffer[] = [];
    const answer = await new Promise<RawAnswer>((resolve, reject) => {
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (received) => (head = received));
      stream.on("trailers", (received) => (trailers = received));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", reject);
      stream.on("close", () => {
        const contentType = head["content-type"];
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({
          status: Number(head[":status"]),
          contentType,
          grpcStatus: (trailers["grpc-status"] ?? head["grpc-status"]) as string | undefined,
          grpcMessage: (trailers["grpc-message"] ?? head["grpc-message"]) as string | undefined,
          error: contentType === "application/json" ? (JSON.parse(text) as RawAnswer["error"]) : undefined,
        });
      });
      stream.end(body);
    });
    session.close();
    return answer;
  }

  /** Sends the same request to both relays; they must answer alike. */
  async function bothAnswer(headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<RawAnswer> {
    const answers = [await send(direct, headers, body), await send(throughConnect, headers, body)];
    expect(answers[0]).toEqual(answers[1]);
    return answers[0]!;
  }

  const grpc = { "content-type": "application/grpc", te: "trailers" };
  const connect = { "content-type": "application/proto", "connect-protocol-version": "1" };
  const lookupMessage = () => toBinary(LookupRequestSchema, create(LookupRequestSchema, { email: peer.email }));
  const frame = (message: Uint8Array, flags = 0, length = message.length) => {
    const framed = Buffer.alloc(5 + message.length);
    framed[0] = flags;
    framed.writeUInt32BE(length, 1);
    framed.set(message, 5);
    return framed;
  };

  it("should answer a gRPC and a Connect Lookup alike on both paths", async () => {
    expect(await bothAnswer(grpc, frame(lookupMessage()))).toMatchObject({ status: 200, contentType: "application/grpc+proto", grpcStatus: "0" });
    expect(await bothAnswer(connect, lookupMessage())).toMatchObject({ status: 200, contentType: "application/proto" });
  });

  it("should refuse malformed gRPC bodies with connect-node's codes and messages", async () => {
    const message = lookupMessage();
    const cases: Array<[Uint8Array, string]> = [
      [Buffer.alloc(0), String(Code.Unimplemented)],
      [Buffer.concat([frame(message), frame(message)]), String(Code.Unimplemented)],
      [frame(message).subarray(0, 8), String(Code.InvalidArgument)],
      [frame(message, 1), String(Code.Internal)],
      [frame(Buffer.from([0xff, 0xff, 0xff])), String(Code.Internal)],
      [frame(message, 0, 1 << 20).subarray(0, 5), String(Code.ResourceExhausted)],
    ];
    for (const [body, code] of cases) expect((await bothAnswer(grpc, body)).grpcStatus).toBe(code);
  });

  it("should refuse malformed and oversized Connect bodies with connect-node's codes and messages", async () => {
    expect((await bothAnswer(connect, Buffer.from([0xff, 0xff, 0xff]))).error?.code).toBe("internal");
    expect(await bothAnswer({ ...connect, "content-length": "4096" }, Buffer.alloc(4096))).toMatchObject({ status: 429, error: { code: "resource_exhausted" } });
    expect(await bothAnswer(connect, Buffer.alloc(4096))).toMatchObject({ status: 429, error: { code: "resource_exhausted" } });
    // An empty body is an empty request: the handler refuses its email.
    expect((await bothAnswer(connect, Buffer.alloc(0))).error?.code).toBe("invalid_argument");
  });

  it("should keep a connection whose calls it served itself past the handshake timeout", async () => {
    // The guard closes a connection that made no request within the handshake timeout; calls
    // served on the raw stream never reach the request handler, and must count all the same.
    const quick = await startTestRelay({ store, connectionLimits: { handshakeTimeoutMs: 300 } });
    const session = http2.connect(quick.url, { ca: quick.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
    session.on("error", () => {});
    let closed = false;
    session.on("close", () => (closed = true));
    const lookupOnce = () =>
      new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/Lookup", ...grpc });
        let status: string | undefined;
        stream.on("response", (head) => (status ??= head["grpc-status"] as string | undefined));
        stream.on("trailers", (trailers) => (status = trailers["grpc-status"] as string | undefined));
        stream.on("data", () => {});
        stream.on("error", reject);
        stream.on("close", () => resolve(status));
        stream.end(frame(lookupMessage()));
      });
    try {
      // The peer is registered and online in the store this relay shares.
      expect(await lookupOnce()).toBe("0");
      await new Promise((resolve) => setTimeout(resolve, 900));
      expect(closed).toBe(false);
      expect(await lookupOnce()).toBe("0");
    } finally {
      session.close();
      await quick.stop();
    }
  });

  it("should reset an answer a client leaves unread within the write timeout", async () => {
    const stuck = await startTestRelay({ store, connectionLimits: { writeTimeoutMs: 300 } });
    // A receive window of zero: not one byte of the answer can leave the relay.
    const session = zeroWindowSession(stuck, peer);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/Lookup", ...grpc });
      stream.on("error", () => {});
      stream.end(frame(lookupMessage()));
      expect(await rstCodeWithin(stream, 5_000)).toBe(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
      await stuck.stop();
    }
  });

  it("should answer deadline_exceeded at the deadline the request's header sets, while the store still works", async () => {
    store.delayMs = 2_000;
    try {
      const answers = await Promise.all([send(direct, { ...grpc, "grpc-timeout": "100m" }, frame(lookupMessage())), send(direct, { ...connect, "connect-timeout-ms": "100" }, lookupMessage())]);
      expect(answers[0]!.grpcStatus).toBe(String(Code.DeadlineExceeded));
      expect(answers[1]).toMatchObject({ status: 504, error: { code: "deadline_exceeded" } });
    } finally {
      store.delayMs = 0;
    }
  });
});

import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { createHealthRoutes, createReadiness, ServingStatus } from "./health.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";

function setup() {
  const readiness = createReadiness();
  const shutdown = new AbortController();
  const client = createClient(Health, createRouterTransport(createHealthRoutes(readiness, { shutdownSignal: shutdown.signal })));
  return { readiness, client, shutdown };
}

describe("health", () => {
  it("should report NOT_SERVING until the relay says it serves", async () => {
    const { readiness, client } = setup();
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    readiness.set(ServingStatus.SERVING);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await client.check({ service: "relay.v1.RelayService" })).status).toBe(ServingStatus.SERVING);
  });

  it("should answer NOT_FOUND to Check of an unknown service", async () => {
    const { client } = setup();
    const error = await client.check({ service: "nope.v1.Nope" }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
  });

  it("should list every service", async () => {
    const { readiness, client } = setup();
    readiness.set(ServingStatus.SERVING, "relay.v1.RelayService");
    const { statuses } = await client.list({});
    expect(Object.fromEntries(Object.entries(statuses).map(([k, v]) => [k, v.status]))).toEqual({
      "": ServingStatus.NOT_SERVING,
      "relay.v1.RelayService": ServingStatus.SERVING,
    });
  });

  it("should end an open Watch stream when the relay shuts down", async () => {
    const { client, shutdown } = setup();
    const watch = client.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    const next = watch.next();
    shutdown.abort();
    expect((await next).done).toBe(true);
  });

  it("should stream the current status, then each change once", async () => {
    const { readiness, client } = setup();
    const abort = new AbortController();
    const stream = client.watch({ service: "relay.v1.RelayService" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    readiness.set(ServingStatus.SERVING);
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    readiness.set(ServingStatus.SERVING);
    readiness.set(ServingStatus.NOT_SERVING, "relay.v1.RelayService");
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    abort.abort();
  });

  it("should stream SERVICE_UNKNOWN for an unknown service without failing", async () => {
    const { client } = setup();
    const abort = new AbortController();
    const stream = client.watch({ service: "nope.v1.Nope" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    abort.abort();
  });
});

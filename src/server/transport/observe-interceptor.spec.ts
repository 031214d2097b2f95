import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { pino } from "pino";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { createRelayMetrics } from "../ops/metrics.js";
import { createObserveInterceptor } from "./observe-interceptor.js";

function setup(level = "debug") {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const metrics = createRelayMetrics({ processMetrics: false });
  // Handlers standing in for the relay's, each ending one way, so the interceptor sees every outcome.
  const transport = createRouterTransport(
    (router) =>
      router.service(RelayService, {
        register: () => ({ clientId: "ab" }),
        lookup: (request) => {
          throw new ConnectError(`peer ${request.email} is not online`, Code.NotFound);
        },
        list: () => {
          throw new ConnectError("slow down", Code.ResourceExhausted);
        },
        ready: () => {
          throw new ConnectError("internal error", Code.Internal, undefined, undefined, new Error("driver exploded"));
        },
        async *heartbeat(requests) {
          for await (const _ of requests) yield { nextHeartbeatIn: { seconds: 1n } };
        },
      }),
    { router: { interceptors: [createObserveInterceptor({ metrics, logger })] } },
  );
  return { lines, metrics, client: createClient(RelayService, transport) };
}

async function value(metrics: ReturnType<typeof createRelayMetrics>, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  // A histogram's series (name_count, name_sum, name_bucket) live under the histogram's name.
  const base = name.replace(/_(count|sum|bucket)$/, "");
  const metric = await metrics.registry.getSingleMetric(base)?.get();
  return metric?.values.find(
    (v) => ((v as { metricName?: string }).metricName ?? base) === name && Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  )?.value;
}

describe("observe interceptor", () => {
  it("should count each RPC by outcome code and time it", async () => {
    const { client, metrics } = setup();
    await client.register({ certificatePem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", email: "a@example.com" });
    await expect(client.lookup({ email: "b@example.com" })).rejects.toThrow(/not online/);
    expect(await value(metrics, "relay_rpc_requests_total", { rpc: "relay.v1.RelayService/Register", code: "ok" })).toBe(1);
    expect(await value(metrics, "relay_rpc_requests_total", { rpc: "relay.v1.RelayService/Lookup", code: "not_found" })).toBe(1);
    expect(await value(metrics, "relay_rpc_duration_seconds_count", { rpc: "relay.v1.RelayService/Register" })).toBe(1);
  });

  it("should count resource_exhausted by rpc (rate limits count themselves by key)", async () => {
    const { client, metrics } = setup();
    await expect(client.list({})).rejects.toThrow(/slow down/);
    expect(await value(metrics, "relay_rpc_requests_total", { rpc: "relay.v1.RelayService/List", code: "resource_exhausted" })).toBe(1);
  });

  it("should answer a request id, the caller's when well-formed", async () => {
    const { client } = setup();
    let header: Headers | undefined;
    await client.register({}, { headers: { "x-request-id": "trace-123" }, onHeader: (h) => (header = h) });
    expect(header?.get("x-request-id")).toBe("trace-123");
    const error = await client.lookup({ email: "x@example.com" }, { headers: { "x-request-id": "bad id with spaces" } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(error?.metadata.get("x-request-id")).toMatch(/^[0-9a-f]{16}$/);
  });

  it("should log client faults at debug and server faults at error with the cause, never a message body", async () => {
    const { client, lines } = setup();
    await client.register({ certificatePem: "-----BEGIN CERTIFICATE-----\nSECRETBODY\n-----END CERTIFICATE-----" });
    await expect(client.lookup({ email: "b@example.com" })).rejects.toThrow();
    await expect(client.ready({ port: 1 })).rejects.toThrow();
    expect(lines.map((l) => [l.rpc, l.code, l.level])).toEqual([
      ["relay.v1.RelayService/Register", "ok", 20],
      ["relay.v1.RelayService/Lookup", "not_found", 20],
      ["relay.v1.RelayService/Ready", "internal", 50],
    ]);
    expect((lines[2]?.err as { message: string }).message).toBe("driver exploded");
    expect(typeof lines[0]?.durationMs).toBe("number");
    expect(JSON.stringify(lines)).not.toContain("SECRETBODY");
  });

  it("should log a server fault as one line with a short cause and no stack above debug", async () => {
    const { client, lines } = setup("info");
    await expect(client.ready({ port: 1 })).rejects.toThrow();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "rpc failed", code: "internal", reason: "internal error", cause: "Error: driver exploded" });
    expect(lines[0]).not.toHaveProperty("err");
    expect(JSON.stringify(lines)).not.toContain("at ");
  });

  it("should count open heartbeat streams until they end", async () => {
    const { client, metrics } = setup();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    async function* beats() {
      yield {};
      await released;
    }
    const stream = client.heartbeat(beats())[Symbol.asyncIterator]();
    await stream.next();
    expect(await value(metrics, "relay_heartbeat_streams_open")).toBe(1);
    release();
    expect((await stream.next()).done).toBe(true);
    expect(await value(metrics, "relay_heartbeat_streams_open")).toBe(0);
    expect(await value(metrics, "relay_rpc_requests_total", { rpc: "relay.v1.RelayService/Heartbeat", code: "ok" })).toBe(1);
    expect(await value(metrics, "relay_stream_duration_seconds_count", { rpc: "relay.v1.RelayService/Heartbeat" })).toBe(1);
  });
});

// Which unary calls the direct transport takes, on a cleartext HTTP/2 server whose request handler
// records what reaches it (test/unary-transports.test.ts holds both paths to the same answers
// over TLS).
import { createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingServer, type RecordingServer } from "../../../test/support/recording-server.js";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { systemClock } from "../../shared/clock.js";
import { createRelayMetrics } from "../ops/metrics.js";
import { MemoryStore } from "../store/memory-store.js";
import type { UnaryHandler } from "../service/relay-service.js";
import { createCallObserver } from "./observe-interceptor.js";
import { createRateLimiter, defaultRateLimits } from "./rate-limit.js";
import { serveDirectUnary } from "./direct-unary.js";

describe("serveDirectUnary", () => {
  const logger = pino({ level: "silent" });
  let recording: RecordingServer;
  let baseUrl: string;
  let reachedHandler: string[];
  const lookup = { method: RelayService.method.lookup, readMaxBytes: 1024, handle: async (request: { email: string }) => ({ peer: { email: request.email, port: 7 } }) } as unknown as UnaryHandler;
  beforeAll(async () => {
    // The request handler answers nothing but a 404: a call that reaches it fails.
    recording = await startRecordingServer(
      (server) =>
        serveDirectUnary(server, {
          handlers: [lookup],
          observer: createCallObserver({ metrics: createRelayMetrics({ store: new MemoryStore(), processMetrics: false }), logger }),
          rateLimiter: createRateLimiter({ limits: defaultRateLimits, clock: systemClock, logger }),
          callerOf: () => ({ identity: undefined, observedAddress: "127.0.0.1" }),
          maxHeaderListBytes: 16_384,
          clock: systemClock,
          logger,
        }),
      (request) => `${request.method} ${request.url.split("?")[0]} ${String(request.headers["content-type"])}`,
    );
    ({ baseUrl, reached: reachedHandler } = recording);
  });
  afterAll(() => recording.close());

  const client = (transport: Parameters<typeof createClient>[1]) => createClient(RelayService, transport);

  it.each([
    ["gRPC", () => createGrpcTransport({ baseUrl }), {}],
    ["gRPC with a deadline header (as Go clients send)", () => createGrpcTransport({ baseUrl }), { "grpc-timeout": "10S" }],
    ["Connect, binary", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }), { "connect-timeout-ms": "10000" }],
  ])("should serve Lookup over %s itself", async (_name, transport, headers) => {
    const before = reachedHandler.length;
    const answer = await client(transport()).lookup({ email: "peer@example.com" }, { headers });
    expect(answer.peer).toMatchObject({ email: "peer@example.com", port: 7 });
    expect(reachedHandler.length).toBe(before);
  });

  it.each([
    ["gRPC-Web", () => createGrpcWebTransport({ baseUrl, httpVersion: "2" }), {}, "POST /relay.v1.RelayService/Lookup application/grpc-web+proto"],
    ["Connect, JSON", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }), {}, "POST /relay.v1.RelayService/Lookup application/json"],
    ["Connect, GET", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, useHttpGet: true }), {}, "GET /relay.v1.RelayService/Lookup undefined"],
    ["gRPC with a compressed message", () => createGrpcTransport({ baseUrl, sendCompression: compressionGzip, compressMinBytes: 0 }), {}, "POST /relay.v1.RelayService/Lookup application/grpc+proto"],
    ["Connect with a compressed body", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sendCompression: compressionGzip, compressMinBytes: 0 }), {}, "POST /relay.v1.RelayService/Lookup application/proto"],
    ["gRPC with a malformed deadline", () => createGrpcTransport({ baseUrl }), { "grpc-timeout": "soon" }, "POST /relay.v1.RelayService/Lookup application/grpc+proto"],
  ])("should leave Lookup over %s to the request handler", async (_name, transport, headers, reached) => {
    const before = reachedHandler.length;
    await expect(client(transport()).lookup({ email: "peer@example.com" }, { headers })).rejects.toThrow();
    expect(reachedHandler.slice(before)).toEqual([reached]);
  });

  it("should leave methods it was not given to the request handler", async () => {
    const before = reachedHandler.length;
    await expect(client(createGrpcTransport({ baseUrl })).list({})).rejects.toThrow();
    expect(reachedHandler.slice(before)).toEqual(["POST /relay.v1.RelayService/List application/grpc+proto"]);
  });
});

// Which Heartbeat streams the held transport takes, on a cleartext HTTP/2 server whose request
// handler records what reaches it (test/heartbeat-transports.test.ts holds both paths to the same
// answers over TLS).
import { createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingServer, type RecordingServer } from "../../../test/support/recording-server.js";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { systemClock } from "../../shared/clock.js";
import { createRelayMetrics } from "../ops/metrics.js";
import { MemoryStore } from "../store/memory-store.js";
import { createShutdownHooks } from "./shutdown-hooks.js";
import { createCallObserver } from "./observe-interceptor.js";
import { createRateLimiter, defaultRateLimits } from "./rate-limit.js";
import { createStreamLimiter } from "./stream-limit.js";
import { serveHeldHeartbeats } from "./held-heartbeats.js";

describe("serveHeldHeartbeats", () => {
  const logger = pino({ level: "silent" });
  let recording: RecordingServer;
  let baseUrl: string;
  let reachedHandler: string[];
  beforeAll(async () => {
    // The request handler answers nothing but a 404: a call that reaches it fails.
    recording = await startRecordingServer(
      (server) =>
        serveHeldHeartbeats(server, {
          heartbeats: {
            shutdownHooks: createShutdownHooks(new AbortController().signal),
            readMaxBytes: 256,
            open: async () => ({ beat: async () => ({ expiresIn: durationFromMs(60_000) }), settle: async () => {} }),
          },
          observer: createCallObserver({ metrics: createRelayMetrics({ store: new MemoryStore(), processMetrics: false }), logger }),
          rateLimiter: createRateLimiter({ limits: defaultRateLimits, clock: systemClock, logger }),
          streamLimiter: createStreamLimiter({ maxStreamsPerCertificate: 4, logger }),
          markAuthenticated: () => {},
          maxHeaderListBytes: 16_384,
          clock: systemClock,
          logger,
        }),
      (request) => String(request.headers["content-type"]),
    );
    ({ baseUrl, reached: reachedHandler } = recording);
  });
  afterAll(() => recording.close());

  async function beatOnce(transport: Parameters<typeof createClient>[1], headers: Record<string, string> = {}): Promise<bigint | undefined> {
    const requests = createWritableIterable<{ broadcastId?: string }>();
    void requests.write({});
    const responses = createClient(RelayService, transport).heartbeat(requests, { headers })[Symbol.asyncIterator]();
    try {
      return (await responses.next()).value?.expiresIn?.seconds;
    } finally {
      requests.close();
    }
  }

  it.each([
    ["gRPC", () => createGrpcTransport({ baseUrl }), {}],
    ["gRPC with a deadline header (as Go clients send)", () => createGrpcTransport({ baseUrl }), { "grpc-timeout": "60S" }],
    ["Connect, binary", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }), { "connect-timeout-ms": "60000" }],
  ])("should serve Heartbeat over %s itself", async (_name, transport, headers) => {
    const before = reachedHandler.length;
    expect(await beatOnce(transport(), headers)).toBe(60n);
    expect(reachedHandler.length).toBe(before);
  });

  it.each([
    ["gRPC-Web", () => createGrpcWebTransport({ baseUrl, httpVersion: "2" }), {}, "application/grpc-web+proto"],
    ["Connect, JSON", () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }), {}, "application/connect+json"],
    ["gRPC with compressed messages", () => createGrpcTransport({ baseUrl }), { "grpc-encoding": "gzip" }, "application/grpc+proto"],
    ["gRPC with a malformed deadline", () => createGrpcTransport({ baseUrl }), { "grpc-timeout": "soon" }, "application/grpc+proto"],
  ])("should leave Heartbeat over %s to the request handler", async (_name, transport, headers, contentType) => {
    const before = reachedHandler.length;
    await expect(beatOnce(transport(), headers)).rejects.toThrow();
    expect(reachedHandler.slice(before)).toEqual([contentType]);
  });
});

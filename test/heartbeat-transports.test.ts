// Heartbeat is served two ways: gRPC and Connect with the binary codec on the relay's own held
// stream (held-heartbeats.ts), gRPC-Web and the JSON codec through connect-node. Every case here
// runs over each of the four, against the real relay over mutual TLS, and expects the same.
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayMetrics } from "../src/server/ops/metrics.js";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { createTestPeer, registeredClient, relayClient, type Protocol, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { rstCodeWithin, zeroWindowSession } from "./support/streams.js";
import { codeOf } from "./support/codes.js";
import { until } from "./faults/support.js";

const protocols: Protocol[] = ["grpc", "connect", "grpc-web", "connect-json"];

/** The in-memory store, with a withdraw that takes a while, as a database's does. */
class SlowWithdrawStore extends MemoryStore {
  override async withdrawBroadcast(...args: Parameters<MemoryStore["withdrawBroadcast"]>): ReturnType<MemoryStore["withdrawBroadcast"]> {
    await new Promise((resolve) => setTimeout(resolve, 100));
    return super.withdrawBroadcast(...args);
  }
}
const graceMs = 60_000;
let sequence = 0;

describe.each(protocols)("Heartbeat over %s", (protocol) => {
  let relay: TestRelay;
  let observer: Client<typeof RelayService>;
  const store = new SlowWithdrawStore();
  const metrics = createRelayMetrics({ store });
  beforeAll(async () => {
    relay = await startTestRelay({ store, metrics, presenceGraceMs: graceMs, maxStreamsPerCertificate: 2 });
    observer = await registeredClient(relay, await createTestPeer(`observer-${protocol}-${process.pid}@example.com`));
  });
  afterAll(async () => {
    await relay?.stop();
  });

  const newPeer = () => createTestPeer(`hb-${protocol}-${process.pid}-${++sequence}@example.com`);
  const openStream = (client: Client<typeof RelayService>, options: { timeoutMs?: number; onHeader?: (headers: Headers) => void } = {}) => {
    const requests = createWritableIterable<{ broadcastId?: string }>();
    const controller = new AbortController();
    const responses = client.heartbeat(requests, { ...options, signal: controller.signal })[Symbol.asyncIterator]();
    return { requests, responses, abort: () => controller.abort() };
  };
  const online = async (peer: TestPeer) => (await observer.lookup({ email: peer.email }).then(() => true, () => false));

  it("should answer each message with the extended expiry and withdraw the broadcast on a clean end", async () => {
    const peer = await newPeer();
    const client = await registeredClient(relay, peer, protocol);
    const ready = await client.ready({ port: 4000 });
    let requestId: string | null = null;
    const stream = openStream(client, { onHeader: (headers) => (requestId = headers.get("x-request-id")) });
    for (const broadcastId of [ready.broadcastId, "", ready.broadcastId]) {
      void stream.requests.write({ broadcastId });
      const { value } = await stream.responses.next();
      expect(value!.expiresIn!.seconds).toBeGreaterThan(3000n);
      expect(value!.nextHeartbeatIn!.seconds).toBeGreaterThan(0n);
    }
    expect(requestId).toMatch(/^[0-9a-f]{16}$/);
    stream.requests.close();
    expect((await stream.responses.next()).done).toBe(true);
    // Withdrawn before the end reached the client, slow as the store is.
    expect(await online(peer)).toBe(false);
  });

  it("should answer not_found before Ready and failed_precondition for a replaced broadcast", async () => {
    const peer = await newPeer();
    const client = await registeredClient(relay, peer, protocol);
    const early = openStream(client);
    void early.requests.write({});
    expect(await codeOf(early.responses.next())).toBe(Code.NotFound);
    await client.ready({ port: 4001 });
    const stale = openStream(client);
    void stale.requests.write({ broadcastId: "an-older-broadcast" });
    expect(await codeOf(stale.responses.next())).toBe(Code.FailedPrecondition);
    // A failed stream is not the peer leaving: still online.
    expect(await online(peer)).toBe(true);
  });

  it("should refuse a peer that never registered, and a connection without a certificate", async () => {
    const stranger = openStream(relayClient(relay, await newPeer(), protocol));
    void stranger.requests.write({});
    expect(await codeOf(stranger.responses.next())).toBe(Code.Unauthenticated);
    const anonymous = openStream(relayClient(relay, undefined, protocol));
    void anonymous.requests.write({});
    expect(await codeOf(anonymous.responses.next())).toBe(Code.Unauthenticated);
  });

  it("should refuse an oversized message with resource_exhausted", async () => {
    const client = await registeredClient(relay, await newPeer(), protocol);
    await client.ready({ port: 4002 });
    const stream = openStream(client);
    void stream.requests.write({ broadcastId: "x".repeat(1024) });
    expect(await codeOf(stream.responses.next())).toBe(Code.ResourceExhausted);
  });

  it("should count open streams per certificate across protocols, and free the count when one ends", async () => {
    const peer = await newPeer();
    const client = await registeredClient(relay, peer, protocol);
    await client.ready({ port: 4003 });
    // One stream over this protocol, one over another, both held open.
    const other = await registeredClient(relay, peer, protocol === "grpc" ? "grpc-web" : "grpc");
    const first = openStream(client);
    const second = openStream(other);
    for (const stream of [first, second]) {
      void stream.requests.write({});
      expect((await stream.responses.next()).done).toBe(false);
    }
    const third = openStream(client);
    void third.requests.write({});
    const refused = await third.responses.next().then(() => undefined, (error: unknown) => ConnectError.from(error));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toContain("too many open Heartbeat streams for this client certificate: at most 2");
    first.requests.close();
    expect((await first.responses.next()).done).toBe(true);
    const fourth = openStream(client);
    void fourth.requests.write({});
    expect((await fourth.responses.next()).done).toBe(false);
    second.abort();
    fourth.abort();
  });

  it("should keep a peer whose stream was reset online for the grace", async () => {
    const peer = await newPeer();
    const client = await registeredClient(relay, peer, protocol);
    await client.ready({ port: 4004 });
    const stream = openStream(client);
    void stream.requests.write({});
    await stream.responses.next();
    await until(async () => (await store.findBroadcastRecords([peer.email]))[0]?.holder !== undefined, "the stream holds the broadcast");
    stream.abort();
    // Lost, not left: the broadcast is released to its grace, and the peer stays online.
    await until(async () => (await store.findBroadcastRecords([peer.email]))[0]?.holder === undefined, "the lost stream released the broadcast");
    expect(await online(peer)).toBe(true);
  });

  it("should end the stream with deadline_exceeded at the deadline the client's header sets, and keep the peer online", async () => {
    const peer = await newPeer();
    const client = await registeredClient(relay, peer, protocol);
    await client.ready({ port: 4005 });
    // The header alone, without timeoutMs: the client library would otherwise end the call itself.
    const deadline = protocol === "grpc" || protocol === "grpc-web" ? { "grpc-timeout": "300m" } : { "connect-timeout-ms": "300" };
    const requests = createWritableIterable<{ broadcastId?: string }>();
    const responses = client.heartbeat(requests, { headers: deadline })[Symbol.asyncIterator]();
    void requests.write({});
    expect((await responses.next()).done).toBe(false);
    expect(await codeOf(responses.next())).toBe(Code.DeadlineExceeded);
    expect(await online(peer)).toBe(true);
  });

  it("should count every stream in the metrics and close the open-stream gauge", async () => {
    const client = await registeredClient(relay, await newPeer(), protocol);
    await client.ready({ port: 4006 });
    const before = await metrics.registry.getSingleMetricAsString("relay_heartbeat_streams_open");
    const stream = openStream(client);
    void stream.requests.write({});
    await stream.responses.next();
    const gauge = async () => Number(/relay_heartbeat_streams_open (\d+)/.exec(await metrics.registry.getSingleMetricAsString("relay_heartbeat_streams_open"))![1]);
    const open = await gauge();
    expect(open).toBe(Number(/relay_heartbeat_streams_open (\d+)/.exec(before)![1]) + 1);
    stream.requests.close();
    await stream.responses.next();
    await until(async () => (await gauge()) === open - 1, "the gauge counts the stream closed");
  });
});

describe("Heartbeat at shutdown, over each protocol", () => {
  it.each(protocols)("should end an open stream with unavailable over %s", async (protocol) => {
    const relay = await startTestRelay({});
    try {
      const client = await registeredClient(relay, await createTestPeer(`shutdown-${protocol}-${process.pid}@example.com`), protocol);
      await client.ready({ port: 4100 });
      const requests = createWritableIterable<{ broadcastId?: string }>();
      const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
      void requests.write({});
      await responses.next();
      const stopped = relay.stop();
      expect(await codeOf(responses.next())).toBe(Code.Unavailable);
      await stopped;
    } finally {
      await relay.stop();
    }
  });
});

describe("Heartbeat's end, unread", () => {
  it("should reset a Connect end-of-stream message a client leaves unread within the write timeout", async () => {
    const relay = await startTestRelay({ connectionLimits: { writeTimeoutMs: 300 } });
    const peer = await createTestPeer(`unread-end-${process.pid}@example.com`);
    await registeredClient(relay, peer);
    // A receive window of zero: the end-of-stream message, a DATA frame, cannot leave the relay.
    const session = zeroWindowSession(relay, peer);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/Heartbeat", "content-type": "application/connect+proto" });
      stream.on("error", () => {});
      // Half-closed at once: a clean end, answered with the end-of-stream message alone.
      stream.end();
      expect(await rstCodeWithin(stream, 5_000)).toBe(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
      await relay.stop();
    }
  });
});

import { describe, expect, it } from "vitest";
import { createRelayMetrics, countStoreErrors } from "./metrics.js";
import { codeName } from "../../shared/code-name.js";
import { MemoryStore } from "../store/memory-store.js";
import { Code } from "@connectrpc/connect";
import type { RelayStore } from "../store/store.js";

describe("relay metrics", () => {
  it("should expose every relay series at zero from the start", async () => {
    const text = await createRelayMetrics({ processMetrics: false }).registry.metrics();
    for (const series of [
      'relay_rpc_requests_total{rpc="relay.v1.RelayService/Register",code="ok"} 0',
      'relay_rpc_duration_seconds_count{rpc="relay.v1.RelayService/Lookup"} 0',
      'relay_stream_duration_seconds_count{rpc="relay.v1.RelayService/Heartbeat"} 0',
      'relay_rate_limited_total{by="certificate"} 0',
      'relay_connection_limited_total{reason="idle"} 0',
      'relay_store_errors_total{operation="findBroadcast"} 0',
      "relay_heartbeat_streams_open 0",
      'relay_online_peers_by_family{family="ipv6"} 0',
      "relay_online_peers 0",
      "relay_registered_peers 0",
    ]) {
      expect(text).toContain(series);
    }
  });

  it("should hand RPCs counted between scrapes to the counter once", async () => {
    const metrics = createRelayMetrics({ processMetrics: false });
    const rpc = "relay.v1.RelayService/Lookup";
    metrics.countRequest(rpc, "ok");
    metrics.countRequest(rpc, "ok");
    metrics.countRequest(rpc, "not_found");
    expect(await metrics.registry.metrics()).toContain(`relay_rpc_requests_total{rpc="${rpc}",code="ok"} 2`);
    metrics.countRequest(rpc, "ok");
    const text = await metrics.registry.metrics();
    expect(text).toContain(`relay_rpc_requests_total{rpc="${rpc}",code="ok"} 3`);
    expect(text).toContain(`relay_rpc_requests_total{rpc="${rpc}",code="not_found"} 1`);
  });

  it("should read peer counts from the store on scrape", async () => {
    const store = new MemoryStore();
    const now = new Date();
    await store.register({ fingerprint: "f1", email: "a@example.com", certificatePem: "", registeredAt: now, retainUntil: new Date(now.getTime() + 60_000) });
    await store.putBroadcast({
      broadcastId: "b1", fingerprint: "f1", email: "a@example.com", port: 1, addresses: ["::1", "127.0.0.1"],
      capabilities: {}, observedAddress: "127.0.0.1", lastSeen: now, expiresAt: new Date(now.getTime() + 60_000),
    });
    const text = await createRelayMetrics({ store, processMetrics: false }).registry.metrics();
    expect(text).toContain("relay_registered_peers 1");
    expect(text).toContain("relay_online_peers 1");
    expect(text).toContain('relay_online_peers_by_family{family="ipv4"} 1');
    expect(text).toContain('relay_online_peers_by_family{family="ipv6"} 1');
  });

  it("should count failed store calls by operation and still reject them", async () => {
    const metrics = createRelayMetrics({ processMetrics: false });
    const failing = new MemoryStore() as RelayStore;
    failing.findBroadcast = () => Promise.reject(new Error("database down"));
    const store = countStoreErrors(failing, metrics);
    await expect(store.findBroadcast("a@example.com", new Date())).rejects.toThrow("database down");
    expect(await metrics.registry.metrics()).toContain('relay_store_errors_total{operation="findBroadcast"} 1');
  });

  it.each([
    [undefined, "ok"],
    [Code.InvalidArgument, "invalid_argument"],
    [Code.ResourceExhausted, "resource_exhausted"],
    [Code.Unauthenticated, "unauthenticated"],
  ])("should label code %s as %s", (code, label) => {
    expect(codeName(code)).toBe(label);
  });
});

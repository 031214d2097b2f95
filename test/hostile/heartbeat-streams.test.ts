// One certificate opening 200 Heartbeat streams, over as many connections as it may hold. Bounds:
// the first 4 are served and every later one is refused with resource_exhausted before its
// handler runs; a closed stream frees its place; memory and descriptors stay bounded.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createTestPeer, registeredClient, relayClient, type TestPeer } from "../support/peers.js";
import { descriptorsOf, figure, rssMiBOf, startRelayProcess, waitFor, type RelayProcess } from "./support.js";

let relay: RelayProcess;
let peer: TestPeer;

beforeAll(async () => {
  // The rate limit would refuse most of 200 streams first: off, so the stream cap is what answers.
  relay = await startRelayProcess(["--max-streams-per-cert", "4", "--rate-limit-per-cert", "0", "--rate-limit-per-ip", "0"]);
  peer = await createTestPeer(`streams-${process.pid}@example.com`);
  const client = await registeredClient(relay, peer);
  await client.ready({ port: 7000 });
});
afterAll(async () => {
  await relay?.kill();
});

/** Opens a Heartbeat stream, sends one beat; resolves "ok" with its answer, or the error code. */
async function openStream(client: ReturnType<typeof relayClient>): Promise<{ outcome: "ok" | Code; close: () => void }> {
  const requests = createWritableIterable<{ broadcastId: string }>();
  const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
  void requests.write({ broadcastId: "" });
  try {
    await responses.next();
    return { outcome: "ok", close: () => requests.close() };
  } catch (error) {
    return { outcome: ConnectError.from(error).code, close: () => {} };
  }
}

describe("Heartbeat streams per certificate", () => {
  it("should serve 4 of 200 streams from one certificate and refuse the rest with resource_exhausted (--max-streams-per-cert)", async () => {
    const baselineRss = rssMiBOf(relay.pid);
    const baselineDescriptors = descriptorsOf(relay.pid);
    // 8 connections (the default per certificate), 25 streams each (under 32 per connection).
    const clients = Array.from({ length: 8 }, () => relayClient(relay, peer));
    const streams = await Promise.all(Array.from({ length: 200 }, (_, i) => openStream(clients[i % clients.length]!)));
    const peakRss = rssMiBOf(relay.pid);
    const served = streams.filter((s) => s.outcome === "ok");
    const refused = streams.filter((s) => s.outcome === Code.ResourceExhausted);
    figure(`200 Heartbeat streams from one certificate: ${served.length} served, ${refused.length} refused with resource_exhausted; relay RSS +${(peakRss - baselineRss).toFixed(1)} MiB`);
    expect(served).toHaveLength(4);
    expect(refused).toHaveLength(196);

    // A closed stream frees its place (a clean close also withdraws the broadcast: announce again).
    for (const stream of served) stream.close();
    await waitFor(() => false, 300);
    await clients[0]!.ready({ port: 7000 });
    const again = await openStream(clients[0]!);
    expect(again.outcome).toBe("ok");
    again.close();

    const backAfterMs = await waitFor(() => descriptorsOf(relay.pid) <= baselineDescriptors + clients.length, 5000);
    figure(`200 Heartbeat streams: relay descriptors ${baselineDescriptors} before, back to ${descriptorsOf(relay.pid)} (+${clients.length} open connections) ${backAfterMs === undefined ? "NOT within 5 s" : `within ${(backAfterMs / 1000).toFixed(2)} s`}`);
    expect(backAfterMs).toBeDefined();
  });
});

// Clients that never read: List(1000) calls over peers with the largest broadcasts, on connections
// whose HTTP/2 receive window is zero, so not one byte of any answer can leave the relay. Bounds:
// a List page is at most about 1 MiB and cut short with a next_page_token rather than failed; each
// stuck response is reset within the write timeout (or at once, when its connection already holds
// its cap of unsent bytes); the relay's memory growth stays small and is given back.
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { ListRequestSchema, ListResponseSchema, RelayService } from "../../src/gen/relay/v1/relay_pb.js";
import { createTestPeer, registeredClient, type TestPeer } from "../support/peers.js";
import { descriptorsOf, figure, rssMiBOf, startRelayProcess, waitFor, type RelayProcess } from "./support.js";

const writeTimeoutMs = 2000;
const peerCount = 300;
let relay: RelayProcess;

/** The largest broadcast a peer may announce: 16 IPv6 addresses and 4 KiB of capabilities. */
const addresses = Array.from({ length: 16 }, (_, i) => `2001:db8:ffff:ffff:ffff:ffff:ffff:${(0xff00 + i).toString(16)}`);
const capabilities = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`capability-${String(i).padStart(2, "0")}-${"k".repeat(40)}`, "v".repeat(210)]));

beforeAll(async () => {
  relay = await startRelayProcess(["--write-timeout", "2s", "--max-session-buffer", "2MiB", "--rate-limit-per-ip", "0"]);
  const peers = await Promise.all(Array.from({ length: peerCount }, (_, i) => createTestPeer(`big-${String(i).padStart(4, "0")}-${process.pid}@example.com`)));
  // In batches within the unauthenticated-per-source cap: each peer is a TLS connection of its own.
  for (let i = 0; i < peers.length; i += 25) {
    await Promise.all(
      peers.slice(i, i + 25).map(async (peer) => {
        const client = await registeredClient(relay, peer);
        await client.ready({ port: 443, addresses, capabilities });
      }),
    );
  }
}, 120_000);
afterAll(async () => {
  await relay?.kill();
});

/** A gRPC request body: one length-prefixed message. */
function grpcBody(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

describe("clients that never read", () => {
  it("should cut a List page of the largest broadcasts at about 1 MiB with a next_page_token, and page through them all", async () => {
    const reader = await createTestPeer(`reader-${process.pid}@example.com`);
    const client = await registeredClient(relay, reader);
    const first = await client.list({ pageSize: 1000 });
    const bytes = toBinary(ListResponseSchema, first).length;
    figure(`List(1000) over ${peerCount} max-size broadcasts: first page ${first.peers.length} peers, ${(bytes / 1024).toFixed(0)} KiB, next_page_token ${first.nextPageToken === "" ? "absent" : "present"}`);
    expect(first.peers.length).toBeLessThan(peerCount);
    expect(first.nextPageToken).not.toBe("");
    expect(bytes).toBeLessThanOrEqual(1024 * 1024);
    let seen = first.peers.length;
    for (let token = first.nextPageToken; token !== ""; ) {
      const page = await client.list({ pageSize: 1000, pageToken: token });
      seen += page.peers.length;
      token = page.nextPageToken;
    }
    expect(seen).toBe(peerCount);
  });

  it("should reset every List answer a zero-window client leaves unread within the write timeout, keeping memory growth small (--write-timeout, --max-session-buffer)", async () => {
    const flooders: TestPeer[] = await Promise.all(Array.from({ length: 5 }, (_, i) => createTestPeer(`stuck-${i}-${process.pid}@example.com`)));
    for (const flooder of flooders) await registeredClient(relay, flooder);
    const baselineRss = rssMiBOf(relay.pid);
    const baselineDescriptors = descriptorsOf(relay.pid);
    const connections = 10;
    const callsEach = 6;
    const body = grpcBody(toBinary(ListRequestSchema, create(ListRequestSchema, { pageSize: 1000 })));
    const sessions: http2.ClientHttp2Session[] = [];
    const outcomes: Array<Promise<{ rstCode: number | undefined; ms: number; stuckMs: number | undefined; bytes: number }>> = [];
    const started = performance.now();
    for (let c = 0; c < connections; c++) {
      const flooder = flooders[c % flooders.length]!;
      // A receive window of zero: the relay may not send a byte of DATA on any stream.
      const session = http2.connect(relay.url, { ca: relay.caPem, cert: flooder.certificatePem, key: flooder.privateKeyPem, settings: { initialWindowSize: 0 } });
      session.on("error", () => {});
      sessions.push(session);
      for (let k = 0; k < callsEach; k++) {
        const stream = session.request({ ":method": "POST", ":path": `/${RelayService.typeName}/List`, "content-type": "application/grpc", te: "trailers" });
        stream.on("error", () => {});
        let bytes = 0;
        stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
        // Response headers are not flow-controlled: they arrive just before the relay writes the
        // answer it cannot send, so from them to the reset is how long the answer sat unsent.
        let answeredAt: number | undefined;
        stream.once("response", () => (answeredAt = performance.now()));
        stream.end(body);
        outcomes.push(new Promise((resolve) => stream.once("close", () => resolve({ rstCode: stream.rstCode, ms: performance.now() - started, stuckMs: answeredAt === undefined ? undefined : performance.now() - answeredAt, bytes }))));
      }
    }
    let peakRss = baselineRss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiBOf(relay.pid))), 100);
    const results = await Promise.all(outcomes);
    clearInterval(sampler);
    for (const session of sessions) session.destroy();
    await waitFor(() => descriptorsOf(relay.pid) <= baselineDescriptors, 5000);
    await waitFor(() => false, 1000);
    const afterRss = rssMiBOf(relay.pid);

    const byCode = new Map<number | undefined, number>();
    for (const result of results) byCode.set(result.rstCode, (byCode.get(result.rstCode) ?? 0) + 1);
    const slowest = Math.max(...results.map((r) => r.ms));
    const timedOut = results.filter((r) => r.rstCode === 8).map((r) => r.stuckMs!);
    figure(`zero-window List flood: ${connections} connections x ${callsEach} List(1000); streams reset: ${[...byCode].map(([code, n]) => `${n} with ${code === 8 ? "CANCEL (write timeout)" : code === 11 ? "ENHANCE_YOUR_CALM (session buffer)" : `code ${code}`}`).join(", ")}; last one ${(slowest / 1000).toFixed(2)} s after the first call; unsent answers reset after ${(Math.min(...timedOut) / 1000).toFixed(2)}-${(Math.max(...timedOut) / 1000).toFixed(2)} s with --write-timeout 2s`);
    figure(`zero-window List flood: relay RSS ${baselineRss.toFixed(0)} MiB before, peak ${peakRss.toFixed(0)} MiB (+${(peakRss - baselineRss).toFixed(0)} MiB), ${afterRss.toFixed(0)} MiB after the clients left`);
    expect(results.every((r) => r.rstCode === 8 || r.rstCode === 11)).toBe(true);
    expect(results.every((r) => r.bytes === 0)).toBe(true);
    expect(byCode.get(8)).toBeGreaterThan(0);
    for (const stuckMs of timedOut) {
      expect(stuckMs).toBeGreaterThanOrEqual(0.75 * writeTimeoutMs); // seen late here when this process lags
      // The deadline is swept every quarter of it, by a relay busy encoding 60 pages at once on
      // cores the rest of the suite shares: the slack is for that, the bound is for "never".
      expect(stuckMs).toBeLessThan(2 * writeTimeoutMs + 2000);
    }
    expect(peakRss - baselineRss).toBeLessThan(400);
  });
});

// Silent sockets: connections that never finish TCP-to-first-request (no TLS ClientHello, TLS
// without the HTTP/2 preface, HTTP/1.1 without a request or with half a request) against the relay
// process, from one address flooding them and reopening each one the relay closes. Bounds: every
// such socket is closed within the handshake timeout; an honest peer behind the same address gets
// in while the flood goes on; descriptors return to their baseline.
import type * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RelayService } from "../../src/gen/relay/v1/relay_pb.js";
import { createTestPeer } from "../support/peers.js";
import { descriptorsOf, figure, startRelayProcess, waitFor, type RelayProcess } from "./support.js";

const handshakeTimeoutMs = 2000;
let relay: RelayProcess;

beforeAll(async () => {
  relay = await startRelayProcess(["--handshake-timeout", "2s", "--shutdown-timeout", "3s"]);
});
afterAll(async () => {
  await relay?.kill();
});

type Silent = "tcp" | "tls-h2" | "tls-http1" | "http1-half-request";
const kinds: Silent[] = ["tcp", "tls-h2", "tls-http1", "http1-half-request"];

/** Opens one silent connection of kind from sourceAddress; resolves with its lifetime, ms, once the relay closes it. */
function silent(kind: Silent, sourceAddress: string): { closed: Promise<number>; socket: net.Socket } {
  const opened = performance.now();
  const socket =
    kind === "tcp"
      ? net.connect({ host: "127.0.0.1", port: relay.port, localAddress: sourceAddress })
      : tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, servername: "localhost", localAddress: sourceAddress, ALPNProtocols: [kind === "tls-h2" ? "h2" : "http/1.1"] } as tls.ConnectionOptions);
  if (kind === "http1-half-request") socket.once("secureConnect", () => socket.write("POST /relay.v1.RelayService/List HTTP/1.1\r\nHost: localhost\r\n"));
  socket.on("error", () => {});
  // Read and drop, so the relay's closing is seen.
  socket.resume();
  return { socket, closed: new Promise((resolve) => socket.once("close", () => resolve(performance.now() - opened))) };
}

describe("silent sockets", () => {
  it("should close each kind of silent socket within the handshake timeout (--handshake-timeout)", async () => {
    const lifetimes = await Promise.all(kinds.map((kind) => silent(kind, "127.0.0.10").closed));
    figure(`silent sockets closed after ${lifetimes.map((ms) => (ms / 1000).toFixed(2)).join(", ")} s (${kinds.join(", ")}) with --handshake-timeout 2s`);
    for (const ms of lifetimes) {
      expect(ms).toBeGreaterThanOrEqual(handshakeTimeoutMs - 100);
      expect(ms).toBeLessThan(handshakeTimeoutMs + 1500);
    }
  });

  it("should let an honest peer behind a flooding address in at once, close the flood's sockets in time, and return to its descriptor baseline", async () => {
    const peer = await createTestPeer(`honest-${process.pid}@example.com`);
    const client = (source: string) => createClient(RelayService, createGrpcTransport({ baseUrl: relay.url, nodeOptions: { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, localAddress: source } as http2.SecureClientSessionOptions }));
    // Warm up (TLS and crypto open what they keep), then the baseline.
    await client("127.0.0.11").register({ email: peer.email, certificatePem: peer.certificatePem });
    await waitFor(() => false, 300);
    const baseline = descriptorsOf(relay.pid);

    const concurrency = 120;
    const lifetimes: number[] = [];
    const open = new Set<net.Socket>();
    let flooding = true;
    let opened = 0;
    const keepOne = (i: number) => {
      if (!flooding) return;
      const { socket, closed } = silent(kinds[i % kinds.length]!, "127.0.0.9");
      opened++;
      open.add(socket);
      void closed.then((ms) => {
        open.delete(socket);
        if (flooding) lifetimes.push(ms);
        keepOne(i + 1);
      });
    };
    for (let i = 0; i < concurrency; i++) keepOne(i);
    await waitFor(() => false, 1000);
    const peakDescriptors = descriptorsOf(relay.pid);

    // The honest peer, from the flooding address, while the flood goes on.
    const started = performance.now();
    const honest = client("127.0.0.9");
    await honest.register({ email: peer.email, certificatePem: peer.certificatePem });
    const ready = await honest.ready({ port: 4242 });
    const honestMs = performance.now() - started;
    expect(ready.broadcastId).not.toBe("");

    // Keep flooding for two handshake timeouts, so sockets live out the timeout.
    await waitFor(() => false, 2 * handshakeTimeoutMs);
    flooding = false;
    const sorted = [...lifetimes].sort((a, b) => a - b);
    for (const socket of open) socket.destroy();
    const backAfterMs = await waitFor(() => descriptorsOf(relay.pid) <= baseline + 1, 10_000);

    figure(`silent flood from one address: ${opened} sockets opened (${concurrency} at a time, each reopened when closed); relay descriptors ${baseline} -> ${peakDescriptors}`);
    figure(`flood sockets closed after at most ${((sorted.at(-1) ?? 0) / 1000).toFixed(2)} s (median ${((sorted[Math.floor(sorted.length / 2)] ?? 0) / 1000).toFixed(2)} s) with --handshake-timeout 2s`);
    figure(`honest peer behind the flooding address: Register + Ready in ${honestMs.toFixed(0)} ms`);
    figure(`descriptors back to baseline ${baseline} (+1 for the honest connection) ${backAfterMs === undefined ? "NOT within 10 s" : `within ${(backAfterMs / 1000).toFixed(2)} s`}`);
    expect(sorted.length).toBeGreaterThan(concurrency);
    // Lifetimes are seen from this process, which floods too: the slack covers its own lag.
    expect(sorted.at(-1)!).toBeLessThan(2 * handshakeTimeoutMs + 1000);
    expect(honestMs).toBeLessThan(2 * handshakeTimeoutMs);
    expect(backAfterMs).toBeDefined();
  });

  it("should stop within the shutdown timeout on SIGTERM afterwards (--shutdown-timeout)", async () => {
    const { code, ms } = await relay.terminate();
    figure(`SIGTERM to exit: ${ms.toFixed(0)} ms with --shutdown-timeout 3s`);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(3000 + 1500);
  });
});

/**
 * Dialer strategies compared on loopback: time to reach a peer (or to give up) when some of its
 * candidate addresses are dead. Run: `npx tsx bench/dialer.ts [iterations]`.
 *
 * Loopback only: a refused candidate is a closed port on 127.0.0.2 / 127.0.0.5, a
 * blackholed one a server on 127.0.0.3 that accepts and never answers, the peer's real server
 * listens on 127.0.0.1. All share the peer's one port number, as a real peer's addresses do.
 * The peer's server speaks peer TLS with its own certificate, and each dial checks it.
 */
import { create } from "@bufbuild/protobuf";
import { performance } from "node:perf_hooks";
import { PeerSchema } from "../src/gen/relay/v1/relay_pb.js";
import { createDialer, type DialStrategy } from "../src/client/dialer.js";
import { createTestPeer } from "../test/support/peers.js";
import { startPeerHttpServer, startSilentServer } from "../test/client/loopback.js";

const iterations = Number(process.argv[2] ?? 10);
const strategies: DialStrategy[] = ["sequential", "staggered"];

const silent = await startSilentServer("127.0.0.3");
const port = silent.port;
const [peerIdentity, visitor] = await Promise.all([createTestPeer("bench@example.com"), createTestPeer("visitor@example.com")]);
const real = await startPeerHttpServer({ certificate: peerIdentity, host: "127.0.0.1", port });

const scenarios: Array<{ name: string; addresses: string[] }> = [
  { name: "healthy first", addresses: ["127.0.0.1"] },
  { name: "refused, then healthy", addresses: ["127.0.0.2", "127.0.0.1"] },
  { name: "blackholed, then healthy", addresses: ["127.0.0.3", "127.0.0.1"] },
  { name: "refused, blackholed, refused, healthy", addresses: ["127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.1"] },
  { name: "all dead (refused, blackholed)", addresses: ["127.0.0.2", "127.0.0.3"] },
];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const rows: string[] = [];
rows.push(`iterations per cell: ${iterations}; attemptTimeoutMs 1500, staggerMs 250 (defaults); node ${process.version}`);
rows.push("| scenario | strategy | median ms | p90 ms | max ms | outcome |");
rows.push("|---|---|---|---|---|---|");
for (const scenario of scenarios) {
  for (const strategy of strategies) {
    const times: number[] = [];
    let outcome = "";
    for (let i = 0; i < iterations; i += 1) {
      // A fresh dialer each time: nothing remembered from the previous iteration.
      const dialer = createDialer({ identity: visitor, strategy });
      const peer = create(PeerSchema, { email: "bench@example.com", port, addresses: scenario.addresses, fingerprint: peerIdentity.fingerprint });
      const started = performance.now();
      const result = await dialer.dial(peer);
      times.push(performance.now() - started);
      outcome = result.state === "online" ? `online via ${result.address}` : result.state;
    }
    times.sort((a, b) => a - b);
    rows.push(`| ${scenario.name} | ${strategy} | ${quantile(times, 0.5).toFixed(1)} | ${quantile(times, 0.9).toFixed(1)} | ${times.at(-1)!.toFixed(1)} | ${outcome} |`);
  }
}
process.stdout.write(rows.join("\n") + "\n");

await real.close();
await silent.close();

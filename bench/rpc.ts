/**
 * Unary RPC throughput and latency of the relay, beside the stack's own ceiling.
 *
 *   npx tsx bench/rpc.ts [--seconds 10] [--clients 32]
 *
 * Each client is a registered peer on its own HTTP/2 connection calling Lookup in a loop (one
 * call in flight per client). Scenarios, each for the same duration and concurrency:
 *   - ceiling: a bare connect-node server on the same TLS and HTTP/2 settings whose Lookup
 *     answers a fixed peer (no identity, validation, store or interceptors);
 *   - relay with the in-memory store;
 *   - relay on FerretDB (SQLite), with the registration cache (the default);
 *   - relay on FerretDB with the registration cache off (1 ms): one extra database round trip
 *     per call, the cost the cache saves.
 * Rate limits are off: this measures the work, not the limits. Loopback only. The server runs
 * in its own process; the load generator shares the machine's other core, and is usually what
 * saturates first, so "server CPU per call" is the figure to compare between scenarios.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { startFerretDB } from "../test/support/ferretdb.js";
import { createTestPeer, registeredClient, type TestPeer } from "../test/support/peers.js";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "10" }, clients: { type: "string", default: "32" } } });
const seconds = Math.min(Number(values.seconds), 300);
const clients = Math.min(Number(values.clients), 256);

interface Result {
  calls: number;
  errors: number;
  latencies: number[];
  /** CPU time the server process spent during the run. */
  serverCpuMicros: number;
}

async function drive(server: { url: string; caPem: string }, peers: TestPeer[], lookupEmail: string, serverCpu: () => Promise<number>): Promise<Result> {
  const callers = await Promise.all(peers.map((peer) => registeredClient(server, peer)));
  // Warm-up: open every connection and fill caches.
  await Promise.all(callers.map((client) => client.lookup({ email: lookupEmail })));
  const result: Result = { calls: 0, errors: 0, latencies: [], serverCpuMicros: 0 };
  const cpuBefore = await serverCpu();
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    callers.map(async (client) => {
      while (performance.now() < deadline) {
        const start = performance.now();
        try {
          await client.lookup({ email: lookupEmail });
          result.calls++;
        } catch {
          result.errors++;
        }
        result.latencies.push(performance.now() - start);
      }
    }),
  );
  result.serverCpuMicros = (await serverCpu()) - cpuBefore;
  return result;
}

function report(name: string, result: Result): void {
  const sorted = result.latencies.sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2);
  const cpuPerCall = Math.round(result.serverCpuMicros / Math.max(1, result.calls));
  const cpuShare = Math.round((result.serverCpuMicros / (seconds * 1e6)) * 100);
  process.stdout.write(
    `${name.padEnd(48)} ${String(Math.round(result.calls / seconds)).padStart(6)} calls/s  p50 ${at(0.5).padStart(6)} ms  p99 ${at(0.99).padStart(6)} ms  server CPU ${String(cpuPerCall).padStart(4)} µs/call (${cpuShare}% of a core)  errors ${result.errors}\n`,
  );
}

/** Starts bench/rpc-server.ts in a child process; resolves with where it listens. */
async function startServer(mode: "ceiling" | "relay", env: Record<string, string> = {}): Promise<{ url: string; caPem: string; child: ChildProcess }> {
  const child = fork(new URL("./rpc-server.ts", import.meta.url), [mode], { execArgv: ["--import", "tsx"], env: { ...process.env, ...env } });
  const [message] = (await once(child, "message")) as [{ url: string; caPem: string }];
  return { ...message, child };
}

async function cpuMicros(child: ChildProcess): Promise<number> {
  child.send("cpu");
  const [message] = (await once(child, "message")) as [{ cpuMicros: number }];
  return message.cpuMicros;
}

async function scenario(name: string, mode: "ceiling" | "relay", env?: Record<string, string>): Promise<void> {
  const server = await startServer(mode, env);
  await (await registeredClient(server, target)).ready({ port: 8080, addresses: ["127.0.0.2"] });
  const result = await drive(server, peers, target.email, () => cpuMicros(server.child));
  report(name, result);
  server.child.kill();
  await once(server.child, "exit");
}

const peers = await Promise.all(Array.from({ length: clients }, (_, i) => createTestPeer(`bench-${i}@example.com`)));
const target = await createTestPeer("target@example.com");
process.stdout.write(`relay unary Lookup: ${clients} clients (one HTTP/2 connection and one call in flight each), ${seconds} s per scenario, node ${process.version}\n\n`);

await scenario("ceiling: bare connect-node Lookup", "ceiling");
await scenario("relay, in-memory store", "relay");
const ferret = await startFerretDB({ name: "bench" });
await scenario("relay, FerretDB, registration cache on", "relay", { RPC_BENCH_MONGODB_URI: ferret.uri });
await scenario("relay, FerretDB, registration cache off (1 ms)", "relay", { RPC_BENCH_MONGODB_URI: ferret.uri, RPC_BENCH_CACHE_MS: "1" });
await ferret.stop();
process.exit(0);

/**
 * How long a presence change takes to reach 1,000 watchers, beside the stack's own ceiling.
 *
 *   npx tsx bench/watch.ts [--watchers 1000] [--changes 20] [--gap-ms 700]
 *
 * 1,000 Watch streams (25 per HTTP/2 connection, 40 registered peers) all watch one peer, which
 * then changes --changes times (a Ready on a new port, --gap-ms apart). The delay of a change is
 * from just before its Ready call to a watcher's receipt of the event, one sample per watcher
 * per change. Scenarios:
 *   - ceiling: a bare connect-node server on the same TLS whose Ready pushes straight to every
 *     open Watch stream (no identity, store or change feed);
 *   - relay, in-memory store, change and watchers on the same instance;
 *   - relay on FerretDB (SQLite), same instance;
 *   - relay on FerretDB, the change on one instance and the watchers on another: the event
 *     crosses through the database, by the relay's poll (FerretDB has no change streams).
 * Rate and stream limits are off: this measures delay, not limits. Loopback only. Servers run in
 * their own processes; the watchers share the load generator's process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once, setMaxListeners } from "node:events";
import { parseArgs } from "node:util";
import type { Client } from "@connectrpc/connect";
import type { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { startFerretDB } from "../test/support/ferretdb.js";
import { createTestPeer, registeredClient, type TestPeer } from "../test/support/peers.js";

const { values } = parseArgs({ options: { watchers: { type: "string", default: "1000" }, changes: { type: "string", default: "20" }, "gap-ms": { type: "string", default: "700" } } });
const watcherCount = Math.min(Number(values.watchers), 5000);
const changes = Math.min(Number(values.changes), 200);
const gapMs = Math.max(100, Number(values["gap-ms"]));
const streamsPerConnection = 25;

type Server = { url: string; caPem: string; child: ChildProcess };

async function startServer(mode: "ceiling" | "relay", env: Record<string, string> = {}): Promise<Server> {
  const child = fork(new URL("./watch-server.ts", import.meta.url), [mode], { execArgv: ["--import", "tsx"], env: { ...process.env, ...env } });
  const [message] = (await once(child, "message")) as [{ url: string; caPem: string }];
  return { ...message, child };
}

/** Opens the watchers on watchServer, changes the peer on changeServer; records the delays, ms. */
async function run(name: string, changeServer: Server, watchServer: Server, peers: TestPeer[], subject: TestPeer): Promise<void> {
  const connections = Math.ceil(watcherCount / streamsPerConnection);
  const clients: Array<Client<typeof RelayService>> = [];
  for (let i = 0; i < connections; i++) clients.push(await registeredClient(watchServer, peers[i % peers.length]!));
  const changer = await registeredClient(changeServer, subject);
  const abort = new AbortController();
  setMaxListeners(0, abort.signal); // one listener per watcher: not a leak
  const startedAt = new Map<number, number>();
  const delays: number[] = [];
  let received = 0;
  let opened = 0;
  const streams = Array.from({ length: watcherCount }, (_, i) =>
    (async () => {
      const stream = clients[Math.floor(i / streamsPerConnection)]!.watch({ emails: [subject.email] }, { signal: abort.signal });
      try {
        for await (const message of stream) {
          if (message.initial) {
            opened++;
            continue;
          }
          const at = performance.now();
          const started = message.online ? startedAt.get(message.peer!.port) : undefined;
          if (started !== undefined) {
            delays.push(at - started);
            received++;
          }
        }
      } catch {
        // aborted at the end
      }
    })(),
  );
  while (opened < watcherCount) await new Promise((resolve) => setTimeout(resolve, 50));
  for (let change = 1; change <= changes; change++) {
    const port = 20_000 + change;
    startedAt.set(port, performance.now());
    await changer.ready({ port, addresses: ["127.0.0.2"] });
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  const deadline = performance.now() + 10_000;
  while (received < watcherCount * changes && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  abort.abort();
  await Promise.all(streams);
  delays.sort((a, b) => a - b);
  const at = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))]!;
  results.push({ name, p50: at(0.5), p99: at(0.99), max: delays[delays.length - 1]!, samples: delays.length, expected: watcherCount * changes });
}

const results: Array<{ name: string; p50: number; p99: number; max: number; samples: number; expected: number }> = [];
const peers = await Promise.all(Array.from({ length: 40 }, (_, i) => createTestPeer(`bench-watcher-${i}@example.com`)));
const subject = await createTestPeer("bench-subject@example.com");

const ceiling = await startServer("ceiling");
await run("ceiling: bare connect-node fan-out", ceiling, ceiling, peers, subject);
ceiling.child.kill();

const memory = await startServer("relay");
await run("relay, in-memory store, same instance", memory, memory, peers, subject);
memory.child.kill();

const ferret = await startFerretDB({ name: "bench-watch" });
try {
  const [a, b] = await Promise.all([startServer("relay", { WATCH_BENCH_MONGODB_URI: ferret.uri }), startServer("relay", { WATCH_BENCH_MONGODB_URI: ferret.uri })]);
  await run("relay, FerretDB, same instance", a, a, peers, subject);
  await run("relay, FerretDB, across two instances (poll)", a, b, peers, subject);
  a.child.kill();
  b.child.kill();
} finally {
  await ferret.stop();
}

const base = results[0]!;
process.stdout.write(`\n${watcherCount} watchers, ${changes} changes ${gapMs} ms apart\n\n| server | p50 | p99 | max | p50 / ceiling | events received |\n|---|---|---|---|---|---|\n`);
for (const r of results) {
  process.stdout.write(`| ${r.name} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.max.toFixed(1)} ms | ${(r.p50 / base.p50).toFixed(1)} | ${r.samples} of ${r.expected} |\n`);
}
process.exit(0);

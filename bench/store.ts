/**
 * The store's own cost per call, MongoStore on FerretDB beside MemoryStore, with N broadcasts
 * held by one instance: the reads and writes behind Lookup, List, a heartbeat and the presence
 * refresh, without TLS, HTTP/2 or the relay around them.
 *
 *   npm run bench:store -- [--broadcasts 3000]
 *
 * FerretDB 1.24 (SQLite) is started for the run (test/support/ferretdb.ts); loopback only.
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { MongoStore } from "../src/server/store/mongo-store.js";
import type { RelayStore } from "../src/server/store/store.js";
import { startFerretDB } from "../test/support/ferretdb.js";

const { values } = parseArgs({ options: { broadcasts: { type: "string", default: "3000" } } });
const count = Math.min(Math.max(Number(values.broadcasts), 1), 20_000);

const ferret = await startFerretDB({ name: "bench_store" });
const mongo = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }) });
const memory = new MemoryStore();
const now = new Date();
const later = new Date(now.getTime() + 3_600_000);
const emailOf = (n: number) => `peer${String(n).padStart(6, "0")}@bench.example`;

for (const store of [mongo, memory]) {
  // Ten writes in flight: enough to fill FerretDB quickly without timing out on a busy machine.
  for (let i = 0; i < count; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, count - i) }, (_, j) =>
        store.putBroadcast({ broadcastId: `b${i + j}`, fingerprint: `fp${i + j}`, email: emailOf(i + j), port: 1, addresses: ["127.0.0.2"], capabilities: {}, observedAddress: "127.0.0.1", lastSeen: now, expiresAt: later, holder: "bench", streamId: `s${i + j}`, presenceUntil: later }),
      ),
    );
  }
}

/** Mean time of one call, ms, after one call to warm up. */
async function timed(call: () => Promise<unknown>, times: number): Promise<number> {
  await call();
  const started = performance.now();
  for (let i = 0; i < times; i++) await call();
  return (performance.now() - started) / times;
}

const middle = Math.floor(count / 2);
const operations: Array<[string, (store: RelayStore) => Promise<unknown>, number]> = [
  ["findBroadcast (Lookup)", (store) => store.findBroadcast(emailOf(middle), new Date()), 50],
  ["listBroadcasts, 101 rows (a List page)", (store) => store.listBroadcasts(emailOf(middle), 101, new Date()), 10],
  ["extendBroadcast (a heartbeat)", (store) => store.extendBroadcast(`fp${middle}`, undefined, new Date(), later), 10],
  ["refreshPresence (every 5 s)", (store) => store.refreshPresence("bench", new Date(), later), 3],
];
console.log(`store calls with ${count} broadcasts, one call in flight, node ${process.version}`);
for (const [name, call, times] of operations) {
  const onFerret = await timed(() => call(mongo), times);
  const inMemory = await timed(() => call(memory), times);
  console.log(`${name.padEnd(40)} FerretDB ${onFerret.toFixed(2).padStart(8)} ms   in-memory ${inMemory.toFixed(3).padStart(7)} ms`);
}
await mongo.close();
await ferret.stop();

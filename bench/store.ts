/**
 * The store's own cost per call, MongoStore on FerretDB beside MemoryStore, with N broadcasts
 * held by one instance: the reads and writes behind Lookup, List, a heartbeat and the presence
 * refresh, without TLS, HTTP/2 or the relay around them.
 *
 *   npm run bench:store -- [--broadcasts 3000] [--backend sqlite|postgresql]
 *
 * Then Lookup's read with 8 and with 64 in flight, as the relay makes it under load, one read per
 * Lookup (the default) and batched (--lookup-batch-size 256): calls per second, Lookups per query,
 * this process's CPU per call (the driver) and FerretDB's (read from /proc, Linux only).
 *
 * FerretDB 1.24 is started for the run, loopback only: on SQLite by default
 * (test/support/ferretdb.ts), or with --backend postgresql on its PostgreSQL backend with a
 * throwaway PostgreSQL cluster (bench/ferretdb-postgres.ts; needs PostgreSQL installed). FerretDB's
 * CPU per call then includes PostgreSQL's (the postmaster and its backends).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { changesCollection, MongoStore } from "../src/server/store/mongo-store.js";
import type { RelayStore } from "../src/server/store/store.js";
import { startFerretDB, withDatabase } from "../test/support/ferretdb.js";
import { startFerretDBOnPostgres } from "./ferretdb-postgres.js";

const { values } = parseArgs({ options: { broadcasts: { type: "string", default: "3000" }, backend: { type: "string", default: "sqlite" } } });
const count = Math.min(Math.max(Number(values.broadcasts), 1), 20_000);
if (values.backend !== "sqlite" && values.backend !== "postgresql") throw new Error("--backend must be sqlite or postgresql");

/** The FerretDB for the run: its URI, the CPU time of the database side (µs), and stop. */
async function startDatabase(): Promise<{ uri: string; cpuMicros: () => number; stop: () => Promise<void> }> {
  if (values.backend === "postgresql") {
    const server = await startFerretDBOnPostgres();
    return { uri: withDatabase(server.uri, "bench_store"), cpuMicros: server.cpuMicros, stop: server.stop };
  }
  const server = await startFerretDB({ name: "bench_store" });
  return { uri: server.uri, cpuMicros: () => processCpuMicros(server.pid!), stop: server.stop };
}
const ferret = await startDatabase();
const mongo = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }) });
const admin = new MongoClient(ferret.uri);
// The same database with Lookups read together (--lookup-batch-size 256), for the reads in flight below.
const batched = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }), lookupBatchSize: 256 });
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
  // A presenceUntil later than the last one each time, as the relay writes it: a document left
  // unchanged is not written again, which would hide the cost of the write.
  ["refreshPresence (every 5 s)", (store) => store.refreshPresence("bench", new Date(), new Date(Date.now() + 3_600_000)), 3],
];
console.log(`store calls with ${count} broadcasts, FerretDB on ${values.backend}, one call in flight, node ${process.version}`);
for (const [name, call, times] of operations) {
  const onFerret = await timed(() => call(mongo), times);
  const inMemory = await timed(() => call(memory), times);
  console.log(`${name.padEnd(40)} FerretDB ${onFerret.toFixed(2).padStart(8)} ms   in-memory ${inMemory.toFixed(3).padStart(7)} ms`);
}
// The change feed's poll, every 500 ms while a Watch or the Lookup cache follows the feed on a
// server without change streams: what one poll of the change log costs FerretDB, within the log's
// retention of the puts above (it holds one entry per broadcast) and once they are swept.
const feedPoll = () =>
  admin
    .db()
    .collection(changesCollection)
    .find({ at: { $gte: new Date(Date.now() - 5_500) } }, { projection: { _id: 1, email: 1, at: 1 } })
    .sort({ at: 1 })
    .limit(1000)
    .toArray();
for (const moment of ["just after the puts", "once the log is swept"]) {
  if (moment !== "just after the puts") await admin.db().collection(changesCollection).deleteMany({});
  const polls = 10;
  const ferretBefore = ferret.cpuMicros();
  const pollMs = await timed(feedPoll, polls);
  const ferretMsPerPoll = (ferret.cpuMicros() - ferretBefore) / (polls + 1) / 1000;
  console.log(`${`change feed poll, ${moment}`.padEnd(40)} FerretDB ${pollMs.toFixed(2).padStart(8)} ms, ${ferretMsPerPoll.toFixed(1)} ms of its CPU per poll (${((ferretMsPerPoll / 500) * 100).toFixed(1)} % of a core every 500 ms)`);
}

/** The `find` commands FerretDB has answered, as it counts them (serverStatus). */
async function finds(): Promise<number> {
  const status = await admin.db("admin").command({ serverStatus: 1 });
  return Number((status as { metrics: { commands: Record<string, { total: number }> } }).metrics.commands.find?.total ?? 0);
}

/** CPU time of a process, µs, from /proc/<pid>/stat (utime + stime, in clock ticks of 10 ms). */
function processCpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** findBroadcast of random peers, `inFlight` at a time for `seconds`: rate and CPU per call. */
async function concurrentLookups(store: RelayStore, inFlight: number, seconds: number) {
  const worker = async (until: number) => {
    let calls = 0;
    for (; performance.now() < until; calls++) await store.findBroadcast(emailOf(Math.floor(Math.random() * count)), new Date());
    return calls;
  };
  const warmUp = (await Promise.all(Array.from({ length: inFlight }, () => worker(performance.now() + 500)))).reduce((a, b) => a + b, 0);
  const ferretBefore = ferret.cpuMicros();
  const ownBefore = process.cpuUsage();
  const started = performance.now();
  const calls = (await Promise.all(Array.from({ length: inFlight }, () => worker(started + seconds * 1000)))).reduce((a, b) => a + b, 0);
  const own = process.cpuUsage(ownBefore);
  return { allCalls: warmUp + calls, perSecond: calls / ((performance.now() - started) / 1000), ownUs: (own.user + own.system) / calls, ferretUs: (ferret.cpuMicros() - ferretBefore) / calls };
}

// 8 in flight: batches of fewer emails than lookupInMinimum, read by `_id` one each even when
// batched. 64 in flight: the load of bench:scale's Lookup window, where batched reads go out as `$in`.
for (const inFlight of [8, 64]) {
  console.log(`\nfindBroadcast of random peers, ${inFlight} in flight for 3 s: calls/s, Lookups per query, CPU per call of this process and of FerretDB${values.backend === "postgresql" ? " with PostgreSQL" : ""}`);
  for (const [name, store] of [["FerretDB", mongo], ["batched", batched]] as const) {
    const findsBefore = await finds();
    const result = await concurrentLookups(store, inFlight, 3);
    const perQuery = result.allCalls / ((await finds()) - findsBefore);
    console.log(`${name.padEnd(9)} ${result.perSecond.toFixed(0).padStart(8)} calls/s ${perQuery.toFixed(1).padStart(6)} per query   ${result.ownUs.toFixed(0).padStart(5)} µs here   ${result.ferretUs.toFixed(0).padStart(6)} µs in FerretDB`);
  }
  const inMemory = await concurrentLookups(memory, inFlight, 3);
  console.log(`in-memory ${inMemory.perSecond.toFixed(0).padStart(8)} calls/s                  ${inMemory.ownUs.toFixed(0).padStart(5)} µs here`);
}
await mongo.close();
await batched.close();
await admin.close();
await ferret.stop();

/**
 * Scale benchmark: N peers, each with its own certificate and TLS connection, against the relay
 * and against the floor (bench/floor-server.ts: the same stack with no-op handlers), in one run.
 *
 *   npm run bench:scale -- --peers 1000
 *
 * Builds the Go load generator (bench/loadgen), makes a server certificate, starts the load
 * generator, which starts, measures, kills and restarts each server itself, and prints its JSON.
 * Then appends the run to bench/results/<date>.json and regenerates the table in
 * docs/BENCHMARKS.md from the latest run for each number of peers.
 *
 * Options:
 *   --peers N                 simulated peers (default 1000, at most 20000)
 *   --targets relay,floor     which servers, in this order; also relay-mongo (on FerretDB),
 *                             relay-mongo-2 (the same with --workers 2) and floor-raw (the floor
 *                             with a hand-written node:http2 Heartbeat instead of connect-node's),
 *                             relay-mongo-pg (on FerretDB with its PostgreSQL backend: needs a
 *                             PostgreSQL server installed, see bench/ferretdb-postgres.ts) and
 *                             relay-reducer-on (the relay with --memory-reducer on: V8's memory
 *                             reducer, which the relay runs without by default)
 *   --phases storm,memory,heartbeat,lookup,restart
 *   --heartbeat-seconds 30    heartbeat round-trip window
 *   --storm-seconds 150       longest wait for every peer to be online in the storm (a longer
 *                             bound lets a slow storm finish, so the phases after it measure a
 *                             steady state)
 *   --lookup-seconds 10       each Lookup window (gRPC, then Connect)
 *   --profile                 run the servers with --cpu-prof (npx tsx bench/cpu-profile-summary.ts
 *                             reads the profiles); results are not recorded (profiling slows them)
 *   --heap-snapshot           a heap snapshot of each server after the storm and memory phases
 *                             (results are not recorded: the snapshot's GC and allocations move
 *                             the figures of the phases after it)
 *   --relay-args "..."        more relay flags, space-separated (e.g. "--max-handshakes 100000")
 *   --node-args="..."         more Node/V8 flags for every server, space-separated, after an
 *                             equals sign (e.g. --node-args="--trace-gc": each collection's pause goes to the run's log);
 *                             results are not recorded (tracing moves the figures)
 *   --no-record               print only
 *
 * Loopback only: servers listen on 127.0.0.1, peers connect from 127.0.1.x. Every phase is
 * bounded in time (see bench/loadgen/main.go); the whole load generator run by --max-seconds.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createSelfSignedCertificate } from "../src/shared/self-signed-certificate.js";
import { startFerretDB, withDatabase } from "../test/support/ferretdb.js";
import { findPostgresBin, startFerretDBOnPostgres } from "./ferretdb-postgres.js";

const { values } = parseArgs({
  options: {
    peers: { type: "string", default: "1000" },
    targets: { type: "string", default: "relay,floor" },
    phases: { type: "string", default: "storm,memory,heartbeat,lookup,restart" },
    "heartbeat-seconds": { type: "string", default: "30" },
    "storm-seconds": { type: "string", default: "150" },
    "lookup-seconds": { type: "string", default: "10" },
    "max-seconds": { type: "string", default: "540" },
    profile: { type: "boolean", default: false },
    "heap-snapshot": { type: "boolean", default: false },
    "relay-args": { type: "string", default: "" },
    "node-args": { type: "string", default: "" },
    "no-record": { type: "boolean", default: false },
  },
});
const peers = Number(values.peers);
if (!Number.isInteger(peers) || peers < 1 || peers > 20_000) throw new Error("--peers must be 1 to 20000");
const root = fileURLToPath(new URL("..", import.meta.url));
const record = !values.profile && !values["heap-snapshot"] && values["node-args"] === "" && !values["no-record"];
/** Says what is missing and exits 2: the relay-mongo-pg target cannot run on this machine. */
function postgresMissing(err: unknown): never {
  process.stderr.write(`relay-mongo-pg: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
// Before building anything: relay-mongo-pg needs a PostgreSQL server installed.
if (values.targets.split(",").includes("relay-mongo-pg")) {
  try {
    findPostgresBin();
  } catch (err) {
    postgresMissing(err);
  }
}

// --- build: the load generator, the relay (as `npm start` runs it), the floor ------------------
const loadgen = join(root, "bench/loadgen/relay-loadgen");
execFileSync("go", ["build", "-o", loadgen, "."], { cwd: join(root, "bench/loadgen"), stdio: "inherit" });
execFileSync("npm", ["run", "build", "--silent"], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "bench/tsconfig.build.json"], { cwd: root, stdio: "inherit" });

// --- servers ----------------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), "relay-scale-"));
const tls = await createSelfSignedCertificate({ commonName: "relay-scale", ipAddresses: ["127.0.0.1"], keyType: "ecdsa-p256" });
const certFile = join(work, "cert.pem");
const keyFile = join(work, "key.pem");
writeFileSync(certFile, tls.certificatePem);
writeFileSync(keyFile, tls.privateKeyPem, { mode: 0o600 });
const profileDir = join(work, "profiles");
mkdirSync(profileDir);
const node = [
  process.execPath,
  // Writes process.memoryUsage() on the load generator's SIGWINCH: the memory phase's split of RSS.
  "--import",
  join(root, "bench/.build/bench/memory-probe.js"),
  // Writes a file once the server listens: the load generator's "listening" (see the file).
  "--import",
  join(root, "bench/.build/bench/listen-probe.js"),
  ...(values.profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
  ...(values["heap-snapshot"] ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${profileDir}`] : []),
  ...values["node-args"].split(" ").filter((arg) => arg !== ""),
];
const relayArgs = values["relay-args"].split(" ").filter((arg) => arg !== "");
/**
 * The relay as an operator starts it (compiled, as `npm start` runs it), with the in-memory store.
 * Rate limits stay on but out of reach: their cost is part of the figure, their refusals are not.
 * Node gets --no-memory-reducer, as `npm start` gives it, for the relay's default --memory-reducer
 * off: the process the load generator measures is then the one serving (without the flag, the
 * relay would serve from a worker of its own). With the reducer on, node runs without it.
 */
function relayCommand(extra: string[]): string[] {
  const args = [...extra, ...relayArgs];
  const reducerOn = args.some((arg, i) => arg === "--memory-reducer=on" || (arg === "--memory-reducer" && args[i + 1] === "on"));
  return [...node, ...(reducerOn ? [] : ["--no-memory-reducer"]), "dist/server/main.js", "--listen", "127.0.0.1:{port}", "--admin-listen", "off", "--tls-cert", certFile, "--tls-key", keyFile, "--data-dir", join(work, "relay-data"), "--log-level", "warn", "--rate-limit-per-cert", "1000000", "--rate-limit-per-ip", "1000000", "--registrations-per-network", "0", ...args];
}
const commands: Record<string, string[]> = {
  relay: relayCommand([]),
  // The relay with V8's memory reducer, off by default (docs/operating.md, "Pauses").
  "relay-reducer-on": relayCommand(["--memory-reducer", "on"]),
  floor: [...node, "bench/.build/bench/floor-server.js", "--listen", "127.0.0.1:{port}", "--tls-cert", certFile, "--tls-key", keyFile],
};
// The floor with Heartbeat served by a hand-written node:http2 gRPC handler instead of
// connect-node: what the held streams would cost without connect-node's per-call machinery.
commands["floor-raw"] = [...commands.floor!, "--raw-heartbeat"];
// With MongoDB: one FerretDB (SQLite) for the run, a database per target. relay-mongo is one
// process, relay-mongo-2 is `--workers 2` on the same kind of database.
const targets = values.targets.split(",");
// relay-mongo-pg: FerretDB on its PostgreSQL backend, PostgreSQL's own cluster started for the
// run. Started first: if PostgreSQL is not installed, the run stops before anything else starts.
let ferretPostgres: Awaited<ReturnType<typeof startFerretDBOnPostgres>> | undefined;
if (targets.includes("relay-mongo-pg")) {
  try {
    ferretPostgres = await startFerretDBOnPostgres();
  } catch (err) {
    postgresMissing(err);
  }
  commands["relay-mongo-pg"] = [...commands.relay!, "--mongodb-uri", withDatabase(ferretPostgres.uri, "scale_pg")];
}
let ferret: Awaited<ReturnType<typeof startFerretDB>> | undefined;
if (targets.some((target) => target === "relay-mongo" || target === "relay-mongo-2")) {
  ferret = await startFerretDB({ name: "scale" });
  commands["relay-mongo"] = [...commands.relay!, "--mongodb-uri", withDatabase(ferret.uri, "scale_one")];
  commands["relay-mongo-2"] = [...commands.relay!, "--mongodb-uri", withDatabase(ferret.uri, "scale_two"), "--workers", "2"];
}
for (const target of targets) if (!(target in commands)) throw new Error(`unknown target ${target}`);

const args = ["-peers", String(peers), "-ca", certFile, "-phases", values.phases, "-heartbeat-window", `${values["heartbeat-seconds"]}s`, "-storm-timeout", `${values["storm-seconds"]}s`, "-lookup-seconds", `${values["lookup-seconds"]}s`, "-max-seconds", values["max-seconds"]];
if (values["heap-snapshot"]) args.push("-heap-snapshot");
for (const target of targets) args.push("-target", `${target}=${commands[target]!.join(" ")}`);

const output = await new Promise<string>((resolve, reject) => {
  const child = spawn(loadgen, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.once("error", reject);
  child.once("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`load generator exited with ${code}`))));
});
await ferret?.stop();
await ferretPostgres?.stop();
const line = output.trim().split("\n").pop()!;
process.stdout.write(line + "\n");
if (values.profile || values["heap-snapshot"]) {
  process.stdout.write(`profiles in ${profileDir}: ${readdirSync(profileDir).join(", ")}\n`);
} else {
  rmSync(work, { recursive: true, force: true });
}

// --- record -----------------------------------------------------------------------------------
if (record) {
  const run = { command: `npm run bench:scale -- ${process.argv.slice(2).join(" ")}`.trim(), node: process.version, ...JSON.parse(line) };
  const resultsDir = join(root, "bench/results");
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${run.at.slice(0, 10)}.json`);
  let runs: unknown[] = [];
  try {
    runs = JSON.parse(readFileSync(file, "utf8")) as unknown[];
  } catch {
    // first run of the day
  }
  runs.push(run);
  writeFileSync(file, JSON.stringify(runs, null, 2) + "\n");
  const { renderScaleTables } = await import("./scale-table.js");
  const docs = join(root, "docs/BENCHMARKS.md");
  const allRuns = readdirSync(resultsDir)
    .filter((name) => /^\d{4}-\d{2}-\d{2}\.json$/.test(name))
    .sort()
    .flatMap((name) => JSON.parse(readFileSync(join(resultsDir, name), "utf8")) as unknown[]);
  const text = readFileSync(docs, "utf8");
  const begin = "<!-- scale-table:begin -->";
  const end = "<!-- scale-table:end -->";
  const start = text.indexOf(begin);
  const stop = text.indexOf(end);
  if (start < 0 || stop < start) throw new Error(`docs/BENCHMARKS.md has no ${begin} … ${end} block`);
  writeFileSync(docs, text.slice(0, start + begin.length) + "\n" + renderScaleTables(allRuns as never) + text.slice(stop));
  process.stdout.write(`recorded in ${file} and docs/BENCHMARKS.md\n`);
}

/**
 * FerretDB 1.24 on its PostgreSQL backend, for benchmarks: a throwaway PostgreSQL cluster in a
 * temp dir (loopback and its own socket dir only, trust authentication, removed at stop) and a
 * FerretDB with `--handler=postgresql` in front of it, both on free loopback ports.
 *
 * PostgreSQL is not installed by the benchmark: its server binaries are looked up in
 * $POSTGRESQL_BIN (a directory), then /usr/lib/postgresql/<version>/bin (Debian's
 * `apt-get install postgresql`), and a clear error names what is missing. PostgreSQL refuses to
 * run as root: as root, the cluster runs as the `postgres` user the Debian package creates.
 *
 * Every step is bounded: initdb and pg_ctl by their own timeouts, FerretDB by 30 s to answer ping.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import { freePort, isExecutable } from "../test/support/ferretdb.js";

export interface FerretDBOnPostgres {
  /** mongodb://127.0.0.1:PORT/ (no database: callers add one with withDatabase). */
  readonly uri: string;
  /** The FerretDB process id. */
  readonly ferretPid: number;
  /** The PostgreSQL postmaster's process id (its backends are its children). */
  readonly postgresPid: number;
  /** CPU time so far, µs, of FerretDB plus PostgreSQL's postmaster and every process under it. */
  cpuMicros(): number;
  /** Stops FerretDB, then PostgreSQL (fast shutdown), and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** The directory of PostgreSQL's server binaries (initdb, pg_ctl, postgres), or a clear error. */
export function findPostgresBin(): string {
  const explicit = process.env.POSTGRESQL_BIN;
  const candidates = explicit
    ? [explicit]
    : (existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql") : [])
        .filter((version) => /^\d+$/.test(version))
        .sort((a, b) => Number(b) - Number(a))
        .map((version) => `/usr/lib/postgresql/${version}/bin`);
  for (const dir of candidates) if (isExecutable(join(dir, "initdb")) && isExecutable(join(dir, "pg_ctl"))) return dir;
  throw new Error(
    `PostgreSQL server binaries not found (looked at ${explicit ? `$POSTGRESQL_BIN=${explicit}` : "/usr/lib/postgresql/*/bin; set POSTGRESQL_BIN to another directory"}). ` +
      "This target needs a PostgreSQL server installed, e.g. on Debian: apt-get install postgresql. The benchmark does not install it.",
  );
}

export async function startFerretDBOnPostgres(): Promise<FerretDBOnPostgres> {
  const bin = findPostgresBin();
  const ferretBin = process.env.FERRETDB_BIN || join(process.env.RELAY_TOOLS_DIR || join(homedir(), ".cache", "relay-tools"), "bin", "ferretdb");
  if (!isExecutable(ferretBin)) throw new Error(`FerretDB binary not found at ${ferretBin}: run \`bash scripts/install-ferretdb.sh\` or set FERRETDB_BIN`);

  const dir = mkdtempSync(join(tmpdir(), "relay-ferretdb-pg-"));
  // PostgreSQL refuses root: as root, run it as the package's `postgres` user, which must own the dir.
  const asUser = process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--"] : [];
  const run = (command: string, args: string[], timeout: number) => {
    const [file, ...rest] = [...asUser, join(bin, command), ...args];
    return execFileSync(file!, rest, { cwd: dir, timeout, stdio: ["ignore", "pipe", "pipe"] }).toString();
  };
  if (asUser.length > 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, "data");
  const pgPort = await freePort();
  let postgresStarted = false;
  let ferret: ChildProcess | undefined;
  let ferretOutput = "";
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.off("exit", stopSync);
    if (ferret && ferret.exitCode === null && ferret.signalCode === null) {
      const exited = new Promise((resolve) => ferret!.once("exit", resolve));
      ferret.kill("SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]))) ferret.kill("SIGKILL");
    }
    if (postgresStarted) {
      try {
        run("pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", String(STOP_TIMEOUT_MS / 1000), "stop"], STOP_TIMEOUT_MS + 5_000);
      } catch {
        run("pg_ctl", ["-D", data, "-m", "immediate", "stop"], STOP_TIMEOUT_MS);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // If the benchmark exits without stop() (an error), leave no server behind.
  const stopSync = () => {
    try {
      ferret?.kill("SIGKILL");
    } catch {}
    try {
      if (postgresStarted) run("pg_ctl", ["-D", data, "-m", "immediate", "stop"], STOP_TIMEOUT_MS);
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", stopSync);

  try {
    run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], 60_000);
    // Loopback TCP only, and the Unix socket in the temp dir (not the system's /var/run/postgresql).
    // Otherwise PostgreSQL's defaults (fsync on), as a production server would run.
    const options = `-c listen_addresses=127.0.0.1 -p ${pgPort} -k ${dir}`;
    run("pg_ctl", ["-D", data, "-l", join(dir, "postgres.log"), "-o", options, "-w", "-t", String(START_TIMEOUT_MS / 1000), "start"], START_TIMEOUT_MS + 5_000);
    postgresStarted = true;
    run("createdb", ["-h", "127.0.0.1", "-p", String(pgPort), "-U", "postgres", "ferretdb"], START_TIMEOUT_MS);
    const postgresPid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);

    const port = await freePort();
    ferret = spawn(
      ferretBin,
      [
        "--handler=postgresql",
        `--postgresql-url=postgres://postgres@127.0.0.1:${pgPort}/ferretdb`,
        `--listen-addr=127.0.0.1:${port}`,
        `--state-dir=${dir}`,
        "--telemetry=disable",
        "--debug-addr=-", // no HTTP debug/metrics listener (default is a fixed port, 8088)
        "--log-level=warn",
      ],
      { cwd: dir, env: { ...process.env, DO_NOT_TRACK: "1" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const append = (chunk: Buffer) => (ferretOutput = (ferretOutput + chunk.toString()).slice(-64 * 1024));
    ferret.stdout!.on("data", append);
    ferret.stderr!.on("data", append);
    const uri = `mongodb://127.0.0.1:${port}/`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (ferret.exitCode !== null) throw new Error(`FerretDB (PostgreSQL) exited with ${ferret.exitCode}:\n${ferretOutput}`);
      const client = new MongoClient(uri, { serverSelectionTimeoutMS: 1_000, connectTimeoutMS: 1_000, directConnection: true });
      try {
        await client.db("admin").command({ ping: 1 });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`FerretDB (PostgreSQL) did not answer ping within ${START_TIMEOUT_MS} ms (${String(err)}):\n${ferretOutput}`);
      } finally {
        await client.close().catch(() => {});
      }
      await sleep(100);
    }
    const ferretPid = ferret.pid!;
    return { uri, ferretPid, postgresPid, cpuMicros: () => processCpuMicros(ferretPid) + treeCpuMicros(postgresPid), stop };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** CPU time of a process, µs, from /proc/<pid>/stat (utime + stime, in clock ticks of 10 ms). */
function processCpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return 0; // exited meanwhile
  }
}

/**
 * A process's CPU time plus that of its live children (PostgreSQL's backends: one per client
 * connection) and of its children that have exited and been waited for (cutime + cstime).
 */
function treeCpuMicros(pid: number): number {
  let total = 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 10_000;
  } catch {
    return 0;
  }
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[1]) === pid) total += processCpuMicros(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

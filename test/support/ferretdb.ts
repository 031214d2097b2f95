// Test harness: a real MongoDB wire-protocol server for integration tests.
//
// startFerretDB() runs FerretDB 1.24.2 (SQLite backend) in a fresh temp dir on a free loopback
// port and resolves once it answers `ping`. With MONGODB_URI set it starts nothing and hands out
// a unique database on that server instead (stop/kill/restart then throw).
//
// Binary lookup: $FERRETDB_BIN, else $RELAY_TOOLS_DIR/bin/ferretdb (default
// ~/.cache/relay-tools), else `ferretdb` on PATH. Install it with scripts/install-ferretdb.sh.

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { homedir, tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";

export interface FerretDB {
  /** mongodb://127.0.0.1:PORT/<unique db name> */
  readonly uri: string;
  /** Database name in `uri`, unique per startFerretDB() call. */
  readonly dbName: string;
  /** The running server's process id (benchmarks read its CPU time); undefined with MONGODB_URI or while down. */
  readonly pid: number | undefined;
  /** SIGTERM, wait for exit, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), wait for exit. Data stays for restart(). */
  kill(): Promise<void>;
  /** Start again on the same port and SQLite data dir; resolves when it answers ping. */
  restart(): Promise<void>;
}

export interface StartFerretDBOptions {
  /** Readable part of the database name (sanitized), e.g. the test file's name. */
  name?: string;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const OUTPUT_LIMIT = 64 * 1024;

export async function startFerretDB(options: StartFerretDBOptions = {}): Promise<FerretDB> {
  const dbName = uniqueDbName(options.name);
  const external = process.env.MONGODB_URI;
  if (external) return externalServer(external, dbName);

  const bin = findBinary();
  const dir = mkdtempSync(join(tmpdir(), "relay-ferretdb-"));
  mkdirSync(join(dir, "data"));
  const instance = new Instance(bin, dir);
  live.add(instance);
  try {
    // A free port can be taken between probing and FerretDB binding it: retry with a new one.
    for (let attempt = 1; ; attempt++) {
      instance.port = await freePort();
      try {
        await instance.start();
        break;
      } catch (err) {
        if (attempt < 3 && /address already in use/i.test(instance.output)) continue;
        throw err;
      }
    }
  } catch (err) {
    await instance.stop();
    throw err;
  }
  const uri = `mongodb://127.0.0.1:${instance.port}/${dbName}`;
  return {
    uri,
    dbName,
    get pid() {
      return instance.pid;
    },
    stop: () => instance.stop(),
    kill: () => instance.kill(),
    restart: () => instance.restart(),
  };
}

// ---------------------------------------------------------------------------------------------

/** Instances not yet stopped; killed (and their dirs removed) if the test process exits. */
const live = new Set<Instance>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const instance of live) instance.killSync();
  });
}

class Instance {
  port = 0;
  output = "";
  private child: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopped = false;

  get pid(): number | undefined {
    return this.child?.pid;
  }

  constructor(
    private readonly bin: string,
    private readonly dir: string,
  ) {}

  async start(): Promise<void> {
    if (this.stopped) throw new Error("FerretDB: stop() was called; the data dir is gone, start a new one");
    if (this.child) throw new Error("FerretDB: already running");
    installExitHook();
    this.output = "";
    const args = [
      "--handler=sqlite",
      `--sqlite-url=file:${this.dir}/data/`,
      `--listen-addr=127.0.0.1:${this.port}`,
      `--state-dir=${this.dir}`,
      "--telemetry=disable",
      "--debug-addr=-", // no HTTP debug/metrics listener (default is a fixed port, 8088)
      "--log-level=info",
    ];
    const child = spawn(this.bin, args, {
      cwd: this.dir,
      env: { ...process.env, DO_NOT_TRACK: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const append = (chunk: Buffer) => {
      this.output += chunk.toString("utf8");
      if (this.output.length > OUTPUT_LIMIT) this.output = this.output.slice(-OUTPUT_LIMIT);
    };
    child.stdout!.on("data", append);
    child.stderr!.on("data", append);

    let exitInfo: string | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        if (this.child === child) this.child = undefined;
        this.watchdog?.kill("SIGKILL");
        this.watchdog = undefined;
        resolve();
      });
      child.once("error", (err) => {
        exitInfo = err.message;
        append(Buffer.from(`spawn error: ${err.message}\n`));
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    if (child.pid !== undefined) this.watchdog = startWatchdog(child.pid, this.dir);

    const deadline = Date.now() + START_TIMEOUT_MS;
    const fail = (why: string) =>
      new Error(
        `FerretDB (${this.bin}) did not start on 127.0.0.1:${this.port}: ${why}\n` +
          `--- FerretDB output ---\n${this.output.trimEnd()}\n-----------------------`,
      );
    // 1. The port accepts TCP.
    while (!(await canConnect(this.port))) {
      if (exitInfo) throw fail(`it exited (${exitInfo})`);
      if (Date.now() > deadline) {
        await this.killQuietly();
        throw fail(`no TCP listener after ${START_TIMEOUT_MS} ms`);
      }
      await sleep(50);
    }
    // 2. It answers ping.
    let lastError: unknown;
    while (true) {
      if (exitInfo) throw fail(`it exited (${exitInfo})`);
      const client = new MongoClient(`mongodb://127.0.0.1:${this.port}/`, {
        serverSelectionTimeoutMS: 2_000,
        connectTimeoutMS: 2_000,
        directConnection: true,
      });
      try {
        await client.db("admin").command({ ping: 1 });
        return;
      } catch (err) {
        lastError = err;
      } finally {
        await client.close().catch(() => {});
      }
      if (Date.now() > deadline) {
        await this.killQuietly();
        throw fail(`no ping answer after ${START_TIMEOUT_MS} ms (${String(lastError)})`);
      }
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    if (this.child) {
      this.child.kill("SIGTERM");
      const exited = await Promise.race([this.exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
      if (!exited) {
        this.child?.kill("SIGKILL");
        await this.exited;
      }
    }
    this.stopped = true;
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async kill(): Promise<void> {
    if (!this.child) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error("FerretDB: restart() after stop(): the data dir is gone");
    if (this.child) {
      this.child.kill("SIGTERM");
      await this.exited;
    }
    await this.start();
  }

  /** For the process 'exit' hook: synchronous only. */
  killSync(): void {
    try {
      this.child?.kill("SIGKILL");
    } catch {}
    try {
      this.watchdog?.kill("SIGKILL");
    } catch {}
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async killQuietly(): Promise<void> {
    await this.kill().catch(() => {});
  }
}

/**
 * The 'exit' hook does not run if the test process is SIGKILLed (e.g. a vitest worker torn down
 * hard). A tiny shell holds the read end of a pipe from us; when we die the pipe closes and it
 * SIGKILLs FerretDB and removes its temp dir. It is killed as soon as FerretDB exits, so it
 * never outlives its target.
 */
function startWatchdog(pid: number, dir: string): ChildProcess | undefined {
  try {
    const script = 'while read -r _; do :; done; kill -9 "$1" 2>/dev/null; rm -rf "$2"';
    const watchdog = spawn("sh", ["-c", script, "relay-ferretdb-watchdog", String(pid), dir], {
      stdio: ["pipe", "ignore", "ignore"],
    });
    watchdog.on("error", () => {});
    watchdog.stdin!.on("error", () => {});
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    return watchdog;
  } catch {
    return undefined;
  }
}

function findBinary(): string {
  const candidates: string[] = [];
  if (process.env.FERRETDB_BIN) {
    if (isExecutable(process.env.FERRETDB_BIN)) return process.env.FERRETDB_BIN;
    throw new Error(
      `FERRETDB_BIN=${process.env.FERRETDB_BIN} is not an executable file. ` +
        "Run `bash scripts/install-ferretdb.sh` (installs FerretDB 1.24.2 into $RELAY_TOOLS_DIR/bin) " +
        "or set MONGODB_URI to use a running MongoDB.",
    );
  }
  const toolsDir = process.env.RELAY_TOOLS_DIR || join(homedir(), ".cache", "relay-tools");
  candidates.push(join(toolsDir, "bin", "ferretdb"));
  for (const dir of (process.env.PATH ?? "").split(delimiter)) if (dir) candidates.push(join(dir, "ferretdb"));
  const found = candidates.find(isExecutable);
  if (found) return found;
  throw new Error(
    `FerretDB binary not found (looked at $FERRETDB_BIN, ${candidates[0]}, and PATH). ` +
      "Run `bash scripts/install-ferretdb.sh` (installs FerretDB 1.24.2 into $RELAY_TOOLS_DIR/bin, " +
      "default ~/.cache/relay-tools), or set FERRETDB_BIN, or set MONGODB_URI to use a running MongoDB.",
  );
}

/** Whether path is a file this process may execute. */
export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let counter = 0;

/** e.g. relay_ferretdb_test_4242_3_9f2c1a: unique per call and per process, FerretDB-safe. */
function uniqueDbName(name = "test"): string {
  const readable = name.replace(/[^A-Za-z0-9_]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 24) || "test";
  return `relay_${readable}_${process.pid}_${++counter}_${randomBytes(3).toString("hex")}`;
}

/** A free TCP port on 127.0.0.1, for a server a test or benchmark starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("could not get a free port"))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** MONGODB_URI mode: same server, a fresh database per call; nothing to start or stop. */
function externalServer(baseUri: string, dbName: string): FerretDB {
  const unsupported = (op: string) => () =>
    Promise.reject(
      new Error(
        `FerretDB.${op}() is not supported with MONGODB_URI (tests use an external server they do not control); ` +
          "unset MONGODB_URI to run this test against a FerretDB the harness starts",
      ),
    );
  return {
    uri: withDatabase(baseUri, dbName),
    dbName,
    pid: undefined,
    // Nothing was started; the unique database is left for the server's owner to drop.
    stop: () => Promise.resolve(),
    kill: unsupported("kill"),
    restart: unsupported("restart"),
  };
}

/** Replaces the database path of a mongodb:// or mongodb+srv:// URI, keeping hosts and options. */
export function withDatabase(uri: string, dbName: string): string {
  const m = /^(mongodb(?:\+srv)?:\/\/[^/?]+)(?:\/[^?]*)?(\?.*)?$/.exec(uri);
  if (!m) throw new Error(`MONGODB_URI is not a mongodb:// URI: ${uri.replace(/\/\/[^@/]*@/, "//***@")}`);
  return `${m[1]}/${dbName}${m[2] ?? ""}`;
}

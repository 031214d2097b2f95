/**
 * What the hostile suite needs: the relay as its own process (`node bin/relay.js` on the
 * build, one process, so /proc/<pid> is the relay's), its descriptor count and
 * resident memory read from /proc, and a way to wait for a condition with a deadline.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { once } from "node:events";
import { relayCommand } from "../support/commands.js";

/** A relay process started with flags, on a free loopback port. */
export interface RelayProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly port: number;
  /** The generated relay certificate, to trust as CA. */
  readonly caPem: string;
  /** Every log line so far, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** Sends SIGTERM and resolves with the exit code and how long the exit took, ms. */
  terminate(): Promise<{ code: number | null; ms: number }>;
  /** SIGKILL if still running, and the data directory removed. */
  kill(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  return port;
}

/**
 * Starts the relay command with args (the in-memory store, no admin listener). Every client
 * connects from loopback, so the limit on new registrations per network is lifted unless args
 * set it.
 */
export async function startRelayProcess(args: string[]): Promise<RelayProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "relay-hostile-"));
  const port = await freePort();
  const child = spawn(relayCommand[0], [...relayCommand.slice(1), "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--admin-listen", "off", "--log-level", "debug", "--registrations-per-network", "0", ...args], {
    env: { ...process.env, MONGODB_URI: "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const logs: Array<Record<string, unknown>> = [];
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === "relay listening") resolve();
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => reject(new Error(`relay exited with ${code} before listening`)));
  });
  let exited = false;
  child.once("exit", () => (exited = true));
  return {
    child,
    pid: child.pid!,
    url: `https://127.0.0.1:${port}`,
    port,
    caPem: readFileSync(join(dataDir, "relay-cert.pem"), "utf8"),
    logs,
    async terminate() {
      const started = performance.now();
      const exit = once(child, "exit") as Promise<[number | null]>;
      child.kill("SIGTERM");
      const [code] = await exit;
      return { code, ms: performance.now() - started };
    },
    async kill() {
      if (!exited) {
        const exit = once(child, "exit");
        child.kill("SIGKILL");
        await exit;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Open file descriptors of a process (sockets, files, pipes). */
export function descriptorsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What a process's descriptors are, counted by kind ("socket", "pipe", a path…): for a failure message. */
export function describeDescriptors(pid: number): string {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, "");
    } catch {
      continue;
    }
    kinds.set(target, (kinds.get(target) ?? 0) + 1);
  }
  return [...kinds].map(([kind, count]) => `${count} ${kind}`).join(", ");
}

/** Resident memory of a process, MiB. */
export function rssMiBOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) / 1024;
}

/** Polls check every intervalMs until it returns true or timeoutMs passes; returns the elapsed ms, or undefined on timeout. */
export async function waitFor(check: () => boolean, timeoutMs: number, intervalMs = 50): Promise<number | undefined> {
  const started = performance.now();
  for (;;) {
    if (check()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) return undefined;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Prints a figure of the suite: one line, prefixed so it is easy to find in CI output. */
export function figure(text: string): void {
  process.stdout.write(`[hostile] ${text}\n`);
}

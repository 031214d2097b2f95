/**
 * `relay-peer` as real processes, for end-to-end tests: run a command to completion, or start a
 * long-running one (share, online, house) and follow its JSON lines.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { relayPeerCommand } from "../support/commands.js";

// The bin on the build (test/support/commands.ts); test/package.test.ts runs it from an installed
// tarball.
const [node, ...cliArgs] = relayPeerCommand;
const maxRssModule = new URL("../support/max-rss.mjs", import.meta.url).href;

/** A finished command. */
export interface CliRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** Peak resident set size in KiB, when `peakRssFile` was given. */
  peakRssKiB?: number;
}

/** Runs `relay-peer args…` to completion, as a user's shell would. */
export function runCli(args: string[], options: { peakRssFile?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliArgs, ...args], { env: envWith(options.peakRssFile), timeout: options.timeoutMs ?? 60_000, encoding: "buffer", maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      const done = { code, stdout, stderr: stderr.toString("utf8") };
      if (!options.peakRssFile) return resolve(done);
      readFile(options.peakRssFile, "utf8").then(
        (text) => resolve({ ...done, peakRssKiB: Number(text) }),
        () => resolve(done),
      );
    });
  });
}

/** A running `relay-peer` command printing JSON lines (--json). */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  /** Everything it wrote to stderr so far (its logs). */
  stderr(): string;
  /** Resolves with the first line (past or future) matching; rejects if the process exits first. */
  waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Peak resident set size so far, from /proc, in KiB. */
  peakRssKiB(): Promise<number>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `relay-peer args…` (which should include --json) and follows its output lines. */
export function startCli(args: string[]): CliProcess {
  const child = spawn(process.execPath, [...cliArgs, ...args], { stdio: ["ignore", "pipe", "pipe"], env: process.env });
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-200_000)));
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ text: line });
    }
    for (const waiter of waiters) waiter();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    lines,
    stderr: () => stderr,
    waitForLine(match, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(match);
          if (!found) return;
          cleanup();
          resolve(found);
        };
        const timer = setTimeout(() => (cleanup(), reject(new Error(`no matching line within ${timeoutMs} ms; lines: ${JSON.stringify(lines)}; stderr: ${stderr.slice(-2000)}`))), timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exited.then((code) => {
          if (!waiters.has(check)) return;
          cleanup();
          reject(new Error(`exited with ${code} before a matching line; lines: ${JSON.stringify(lines)}; stderr: ${stderr.slice(-2000)}`));
        });
        check();
      });
    },
    async peakRssKiB() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

function envWith(peakRssFile: string | undefined): NodeJS.ProcessEnv {
  if (!peakRssFile) return process.env;
  return { ...process.env, RELAY_MAX_RSS_FILE: peakRssFile, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${maxRssModule}`.trim() };
}

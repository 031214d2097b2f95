// The relay as a server process: it stops when asked, and its logging never holds it. Each case
// runs the real command (the bin on the build) the way an operator does, in a shell
// pipeline where that is the point, and bounds the time it takes to exit.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { freePort } from "./support/relay-process.js";
import { relayCommand } from "./support/commands.js";

/** Bound on a shutdown with nothing to drain: far above the ~0.1 s it takes, far below a hang. */
const exitBoundMs = 10_000;

const dirs: string[] = [];
const started = new Set<number>();
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
afterEach(() => {
  // A relay a failed case left running is stopped here, by its own PID.
  for (const pid of started) if (isRunning(pid)) process.kill(pid, "SIGKILL");
  started.clear();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "relay-process-"));
  dirs.push(dir);
  return dir;
}


function quote(arg: string): string {
  return `'${arg.replaceAll("'", "'\\''")}'`;
}

/** True while pid is a live process (a zombie awaiting its parent counts as exited). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Resolves with the ms pid took to exit, or rejects after boundMs. */
async function exitOf(pid: number, boundMs: number): Promise<number> {
  const startedAt = Date.now();
  while (isRunning(pid)) {
    if (Date.now() - startedAt > boundMs) throw new Error(`relay ${pid} still running ${boundMs} ms after the signal`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return Date.now() - startedAt;
}

/** Polls the admin listener until it answers. */
async function untilServing(adminPort: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("relay did not start");
}

/** Waits for a line of the log file holding the relay's pid. */
async function pidFromLog(path: string): Promise<number> {
  for (let i = 0; i < 400; i++) {
    let text = "";
    try {
      text = readFileSync(path, "utf8");
    } catch {
      // not created yet
    }
    const line = text.split("\n").find((l) => l.startsWith("{"));
    if (line !== undefined) return (JSON.parse(line) as { pid: number }).pid;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no log line in ${path}`);
}

async function relayArgs(): Promise<{ args: string[]; adminPort: number }> {
  const adminPort = await freePort();
  return { args: ["--listen", `127.0.0.1:${await freePort()}`, "--admin-listen", `127.0.0.1:${adminPort}`, "--data-dir", tempDir()], adminPort };
}

/** Runs a shell pipeline in a process group of its own, as a terminal runs a job. */
function shell(script: string): ChildProcess {
  return spawn("sh", ["-c", script], { detached: true, stdio: "ignore", env: { ...process.env, MONGODB_URI: "" } });
}

describe("the relay process", () => {
  it.each([1, 2, 3])("should exit on SIGTERM after `relay | head -1` closed its stdout (run %i)", async () => {
    const { args, adminPort } = await relayArgs();
    const dir = tempDir();
    const job = shell(`${[...relayCommand, ...args, "--log-level", "debug"].map(quote).join(" ")} | head -1 > ${quote(join(dir, "first"))}`);
    const jobExit = once(job, "exit");
    const pid = await pidFromLog(join(dir, "first"));
    started.add(pid);
    await untilServing(adminPort);
    // head has exited: every line the relay writes now meets a broken pipe.
    expect((await fetch(`http://127.0.0.1:${adminPort}/metrics`)).ok).toBe(true);
    // Still serving after its stdout broke (an unhandled EPIPE would have killed it).
    expect(isRunning(pid)).toBe(true);
    process.kill(pid, "SIGTERM");
    const ms = await exitOf(pid, exitBoundMs);
    console.log(`relay | head -1: exited ${ms} ms after SIGTERM`);
    await jobExit;
  });

  it.each([1, 2, 3])("should exit on Ctrl-C in `relay 2>&1 | tee relay.log` (run %i)", async () => {
    const { args, adminPort } = await relayArgs();
    const log = join(tempDir(), "relay.log");
    const job = shell(`${[...relayCommand, ...args].map(quote).join(" ")} 2>&1 | tee ${quote(log)} > /dev/null`);
    const pid = await pidFromLog(log);
    started.add(pid);
    await untilServing(adminPort);
    // Ctrl-C: SIGINT to every process of the foreground job, tee included.
    process.kill(-job.pid!, "SIGINT");
    const ms = await exitOf(pid, exitBoundMs);
    console.log(`relay 2>&1 | tee: exited ${ms} ms after Ctrl-C`);
  });

  it("should start, serve and exit on SIGTERM with stdout on a full disk (/dev/full)", async () => {
    const { args, adminPort } = await relayArgs();
    const full = openSync("/dev/full", "w");
    const child = spawn(relayCommand[0]!, [...relayCommand.slice(1), ...args], { stdio: ["ignore", full, "pipe"], env: { ...process.env, MONGODB_URI: "" } });
    closeSync(full);
    started.add(child.pid!);
    await untilServing(adminPort);
    child.kill("SIGTERM");
    const [code] = (await Promise.race([once(child, "exit"), new Promise((_, reject) => setTimeout(() => reject(new Error("no exit")), exitBoundMs))])) as [number];
    expect(code).toBe(0);
  });

  it("should force the exit on a second signal while the first one's shutdown drains", async () => {
    const { args, adminPort } = await relayArgs();
    const child = spawn(relayCommand[0]!, [...relayCommand.slice(1), ...args, "--drain-delay", "60s"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MONGODB_URI: "" } });
    started.add(child.pid!);
    let output = "";
    child.stdout!.on("data", (chunk) => (output += chunk));
    // Serving, not only its admin listener (which answers /healthz before the relay's port is
    // open): a signal before that stops the start at once, with no drain to force.
    await untilServing(adminPort);
    for (let i = 0; i < 400 && !output.includes('"relay listening"'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(output).toContain('"relay listening"');
    child.kill("SIGTERM");
    // Draining: /readyz answers 503 for the 60 s drain delay.
    for (let i = 0; i < 100 && (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status !== 503; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill("SIGTERM");
    const [code] = (await Promise.race([once(child, "exit"), new Promise((_, reject) => setTimeout(() => reject(new Error("no exit")), exitBoundMs))])) as [number];
    expect(code).toBe(1);
    expect(output).toContain("second signal");
  });
});

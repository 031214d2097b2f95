// V8's memory reducer in the relay process (docs/operating.md, "Pauses"): off by default, on with
// --memory-reducer on, whichever way node was started. V8 takes the setting from node's command
// line only, so a relay started without the one it asked for serves from a worker started with it.
//
// What the reducer does is observed, not assumed: a relay's heap grows while it starts, and an
// idle V8 with the reducer on runs "Mark-Compact (reduce)" collections about 8 s later, which
// node's --trace-gc writes to stdout as `[pid:isolate] … Mark-Compact (reduce) …`. V8 writes
// through C's stdout, which holds its output in a buffer on a pipe: the relays run under
// coreutils' `stdbuf -oL` (workers inherit it), which makes it write each line as it ends. (Set at run
// time with v8.setFlagsFromString, --no-memory-reducer leaves those collections in place.)
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { relayBin } from "./support/commands.js";

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
afterEach(() => {
  // A relay a failed case left running is stopped here; its worker leaves with its primary.
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

interface StartedRelay {
  child: ChildProcess;
  /** Every stdout line so far: JSON logs and --trace-gc lines. */
  lines: string[];
  /** The pid that logged "relay listening", and the memoryReducer it logged. */
  serving: { pid: number; memoryReducer: string };
}

/** `node <nodeArgs> bin/relay.js <relayArgs>` on free ports; resolves once it logs "relay listening". */
async function startRelay(nodeArgs: string[], relayArgs: string[] = []): Promise<StartedRelay> {
  const dataDir = mkdtempSync(join(tmpdir(), "relay-reducer-"));
  dirs.push(dataDir);
  const child = spawn("stdbuf", ["-oL", process.execPath, ...nodeArgs, relayBin, "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", dataDir, ...relayArgs], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MONGODB_URI: "", RELAY_LOG_LEVEL: "info" },
  });
  children.push(child);
  const lines: string[] = [];
  const serving = await new Promise<StartedRelay["serving"]>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      if (line.includes('"relay listening"')) resolve(JSON.parse(line) as StartedRelay["serving"]);
    });
    child.stderr!.on("data", (chunk: Buffer) => lines.push(chunk.toString()));
    child.once("exit", (code) => reject(new Error(`relay exited with ${code}: ${lines.join("\n")}`)));
  });
  return { child, lines, serving };
}

/** The node arguments a process runs with, from /proc. */
function nodeArgsOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
}

/** --trace-gc lines of one process: V8 starts each with `[pid:`. */
function gcLinesOf(relay: StartedRelay, pid: number): string[] {
  return relay.lines.filter((line) => line.startsWith(`[${pid}:`));
}

/** Resolves once check() holds, polling; rejects with why() after boundMs. */
async function until(check: () => boolean, boundMs: number, why: () => string): Promise<void> {
  const startedAt = Date.now();
  while (!check()) {
    if (Date.now() - startedAt > boundMs) throw new Error(why());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("V8's memory reducer in the relay process", () => {
  it("should run no reduce collection in the default relay, where one with --memory-reducer on runs them", async () => {
    // Both serve from a worker: the default one started as `node dist/server/main.js` is run by
    // hand (node without the flag), the other with --memory-reducer on and node's flag, which its
    // worker is started without. The two workers differ in that flag only.
    const [off, on] = await Promise.all([startRelay(["--trace-gc"]), startRelay(["--trace-gc", "--no-memory-reducer"], ["--memory-reducer", "on"])]);
    expect(off.serving.pid).not.toBe(off.child.pid);
    expect(nodeArgsOf(off.serving.pid)).toContain("--no-memory-reducer");
    expect(off.serving.memoryReducer).toBe("off");
    expect(on.serving.pid).not.toBe(on.child.pid);
    expect(nodeArgsOf(on.serving.pid)).not.toContain("--no-memory-reducer");
    expect(on.serving.memoryReducer).toBe("on");

    // An idle worker with the reducer runs its reduce collections about 8 s after it starts (on a
    // busy machine, where V8 sees no low allocation rate, later: 27 s was seen).
    const reduced = (relay: StartedRelay) => gcLinesOf(relay, relay.serving.pid).filter((line) => line.includes("Mark-Compact (reduce)")).length;
    await until(() => reduced(on) > 0, 120_000, () => `no reduce collection with --memory-reducer on: ${gcLinesOf(on, on.serving.pid).join("\n")}`);
    // The default relay's worker, started at the same time, traced its collections, and none
    // was the reducer's, nor is over the reducer's next 8 s interval.
    await new Promise((resolve) => setTimeout(resolve, 9_000));
    expect(gcLinesOf(off, off.serving.pid).length).toBeGreaterThan(0);
    expect(reduced(off)).toBe(0);

    // SIGTERM to the process started stops its worker too.
    for (const relay of [off, on]) {
      const exited = once(relay.child, "exit");
      relay.child.kill("SIGTERM");
      const [code] = (await exited) as [number];
      expect(code).toBe(0);
      expect(isRunning(relay.serving.pid)).toBe(false);
    }
  }, 180_000);

  it.each([
    ["node's --no-memory-reducer", ["--no-memory-reducer"], [], "off"],
    ["--memory-reducer on without it", [], ["--memory-reducer", "on"], "on"],
  ])("should serve from the process started when it has the setting asked for (%s)", async (_name, nodeArgs, relayArgs, memoryReducer) => {
    const relay = await startRelay(nodeArgs, relayArgs);
    expect(relay.serving.pid).toBe(relay.child.pid);
    expect(relay.serving.memoryReducer).toBe(memoryReducer);
  });

  it("should serve --memory-reducer on from a worker without node's --no-memory-reducer when node had it", async () => {
    const relay = await startRelay(["--no-memory-reducer"], ["--memory-reducer", "on"]);
    expect(relay.serving.pid).not.toBe(relay.child.pid);
    expect(nodeArgsOf(relay.serving.pid)).not.toContain("--no-memory-reducer");
    expect(relay.serving.memoryReducer).toBe("on");
  });
});

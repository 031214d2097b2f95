// `relay-peer online` as a real process, the way a user runs it, for presence tests.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { relayPeerCommand } from "./commands.js";

// The bin on the build (./commands.ts).
const [node, ...cliArgs] = relayPeerCommand;

/** A running `relay-peer online`. */
export interface OnlinePeer {
  readonly email: string;
  readonly process: ChildProcess;
  /** Its --json status lines so far. */
  readonly lines: Array<Record<string, unknown>>;
  /** Sends signal and resolves with the exit code (null when killed by the signal). */
  stop(signal: NodeJS.Signals): Promise<number | null>;
}

/** A directory with the relay's CA file and the peers' identities; remove() when done. */
export async function peerWorkspace(relay: { caPem: string }): Promise<{ directory: string; caFile: string; remove(): Promise<void> }> {
  const directory = await mkdtemp(join(tmpdir(), "relay-presence-"));
  const caFile = join(directory, "relay-ca.pem");
  await writeFile(caFile, relay.caPem);
  return { directory, caFile, remove: () => rm(directory, { recursive: true, force: true }) };
}

/** Starts `relay-peer online --json` and resolves once it reports online. */
export async function startOnlinePeer(options: { relayUrl: string; caFile: string; directory: string; email: string; port: number; args?: string[] }): Promise<OnlinePeer> {
  const child = spawn(node, [...cliArgs, "online", "--port", String(options.port), "--address", "127.0.0.2", "--json", "--relay", options.relayUrl, "--relay-ca", options.caFile, "--identity", join(options.directory, options.email), "--email", options.email, ...(options.args ?? [])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    void exited.then((code) => reject(new Error(`relay-peer online exited early with ${code}: ${stderr}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      lines.push(event);
      if (event.status === "online") resolve();
    });
  });
  return {
    email: options.email,
    process: child,
    lines,
    async stop(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

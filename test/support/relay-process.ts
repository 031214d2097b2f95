import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { relayCommand } from "./commands.js";

/** A free TCP port on 127.0.0.1 (closed again, so a process started next can take it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts the relay command (the bin on the build, ./commands.ts) with args, the admin listener off;
 * resolves once it logs "relay listening", rejects with its output if it exits first.
 */
export async function startRelayProcess(args: string[]): Promise<ChildProcess> {
  const child = spawn(relayCommand[0], [...relayCommand.slice(1), ...args], {
    env: { ...process.env, RELAY_ADMIN_LISTEN: "off", RELAY_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"relay listening"')) resolve();
    });
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => reject(new Error(`relay exited with ${code}: ${output}`)));
  });
  return child;
}

/** Kills child with SIGKILL (a crash, not a shutdown) and waits for it to exit. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

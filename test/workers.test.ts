// `relay --workers 2`: two relay processes on one port and one database (FerretDB), started and
// stopped as one command. Connections are spread over both, both see the same peers, each serves
// its own admin listener, and SIGTERM stops them all.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestPeer, registeredClient, relayClient } from "./support/peers.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { freePort } from "./support/relay-process.js";
import { relayCommand } from "./support/commands.js";

let ferret: FerretDB;
let dataDir: string;
beforeAll(async () => {
  ferret = await startFerretDB({ name: "workers" });
  dataDir = mkdtempSync(join(tmpdir(), "relay-workers-"));
}, 120_000);
afterAll(async () => {
  await ferret?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});


/** Starts the relay command; resolves once `count` "relay listening" lines were logged. */
async function start(args: string[], count: number): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(relayCommand[0], [...relayCommand.slice(1), ...args], { env: { ...process.env, MONGODB_URI: "" } });
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      if (lines.filter((entry) => entry.includes('"relay listening"')).length === count) resolve();
    });
    child.stderr!.on("data", (chunk: Buffer) => lines.push(chunk.toString()));
    child.once("exit", (code) => reject(new Error(`relay exited with ${code}: ${lines.join("\n")}`)));
  });
  return { child, lines };
}

async function lookupsServed(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split("\n").find((entry) => entry.startsWith('relay_rpc_requests_total{rpc="relay.v1.RelayService/Lookup",code="ok"}'));
  return Number(line?.split(" ")[1] ?? NaN);
}

describe("relay --workers", () => {
  it("should refuse more than one worker on the in-memory store", async () => {
    const child = spawn(relayCommand[0], [...relayCommand.slice(1), "--workers", "2"], { env: { ...process.env, MONGODB_URI: "" } });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(2);
    expect(stderr).toMatch(/--workers above 1 needs --mongodb-uri/);
  });

  it("should serve one port and one database from two processes, and stop both on SIGTERM", async () => {
    const port = await freePort();
    const adminPort = await freePort();
    const { child, lines } = await start(["--workers", "2", "--listen", `127.0.0.1:${port}`, "--admin-listen", `127.0.0.1:${adminPort}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir, "--registrations-per-network", "0"], 2);
    const workerPids = new Set(lines.filter((line) => line.includes('"relay listening"')).map((line) => (JSON.parse(line) as { pid: number }).pid));
    expect(workerPids.size).toBe(2);
    expect(workerPids.has(child.pid!)).toBe(false);

    const relay = { url: `https://127.0.0.1:${port}`, caPem: readFileSync(join(dataDir, "relay-cert.pem"), "utf8") };
    const target = await createTestPeer(`target-${process.pid}@example.com`);
    await (await registeredClient(relay, target)).ready({ port: 7000, addresses: ["127.0.0.2"] });
    // Each client is a connection of its own; the primary hands connections to the workers in turn.
    const callers = await Promise.all(Array.from({ length: 6 }, (_, i) => createTestPeer(`caller-${i}-${process.pid}@example.com`)));
    for (const caller of callers) {
      const found = await (await registeredClient(relay, caller)).lookup({ email: target.email });
      expect(found.peer?.fingerprint).toBe(target.fingerprint);
    }
    expect(await lookupsServed(adminPort)).toBeGreaterThan(0);
    expect(await lookupsServed(adminPort + 1)).toBeGreaterThan(0);

    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(0);
    for (const pid of workerPids) expect(() => process.kill(pid, 0)).toThrow();
    await expect(relayClient(relay, target).lookup({ email: target.email })).rejects.toThrow();
  }, 60_000);
});

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateIdentity } from "../../src/client/identity.js";
import { Code } from "@connectrpc/connect";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { createTestPeer, registeredClient } from "../support/peers.js";
import { codeOf } from "../support/codes.js";
import { peerFiles, startPeerHttpServer, type PeerHttpServer } from "./loopback.js";
import { relayPeerCommand } from "../support/commands.js";

// The bin on the build (test/support/commands.ts); test/package.test.ts runs it from an installed
// tarball.
const [node, ...cliArgs] = relayPeerCommand;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the command in its own process, as a user's shell would. */
function relayPeer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(node, [...cliArgs, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

// The CLI end to end over loopback: `online` runs as a real process announcing 127.0.0.x
// addresses given with --address; the other commands run as a second peer.
describe("relay-peer CLI", () => {
  let relay: TestRelay;
  let directory: string;
  let caFile: string;
  let server: PeerHttpServer;
  let online: ChildProcess;
  const onlineLines: Array<Record<string, unknown>> = [];
  let relayFlags: string[];

  beforeAll(async () => {
    relay = await startTestRelay();
    directory = await mkdtemp(join(tmpdir(), "relay-peer-cli-"));
    caFile = join(directory, "relay-ca.pem");
    await writeFile(caFile, relay.caPem);
    relayFlags = ["--relay", relay.url, "--relay-ca", caFile];
    // alice's server speaks peer TLS with alice's own certificate: her identity exists before `online` loads it.
    const alice = await loadOrCreateIdentity({ directory: join(directory, "alice"), email: "alice@example.com" });
    server = await startPeerHttpServer({ certificate: alice });

    online = spawn(node, [...cliArgs, "online", "--port", String(server.port), "--address", "127.0.0.2", "--address", "127.0.0.1", "--json", ...relayFlags, "--identity", join(directory, "alice"), "--email", "alice@example.com"], { stdio: ["ignore", "pipe", "pipe"] });
    const lines = createInterface({ input: online.stdout! });
    await new Promise<void>((resolve, reject) => {
      online.once("exit", (code) => reject(new Error(`online exited early with ${code}`)));
      lines.on("line", (line) => {
        const event = JSON.parse(line) as Record<string, unknown>;
        onlineLines.push(event);
        if (event.status === "online") resolve();
      });
    });
  });

  afterAll(async () => {
    if (online.exitCode === null) online.kill("SIGKILL");
    await server?.close();
    await relay?.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const bob = () => [...relayFlags, "--identity", join(directory, "bob"), "--email", "bob@example.com"];

  it("should announce with `online`: registering, then online with the relay's answer", () => {
    expect(onlineLines.map((line) => line.status)).toEqual(["registering", "online"]);
    expect(onlineLines[1]).toMatchObject({ observedAddress: "127.0.0.1", broadcastId: expect.any(String), heartbeatIntervalMs: expect.any(Number) });
  });

  it("should list online peers, registering first", async () => {
    const run = await relayPeer(["list", "--json", ...bob()]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    const { peers } = JSON.parse(run.stdout) as { peers: Array<Record<string, unknown>> };
    expect(peers).toContainEqual(expect.objectContaining({ email: "alice@example.com", port: server.port, addresses: ["127.0.0.2", "127.0.0.1"] }));
  });

  it("should look a peer up, in human form without --json", async () => {
    const run = await relayPeer(["lookup", "alice@example.com", ...bob()]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`alice@example.com  port ${server.port}  addresses 127.0.0.2, 127.0.0.1`);
  });

  it("should visit a peer past its closed first address and print its files", async () => {
    const run = await relayPeer(["visit", "alice@example.com", "--path", "/api/files", "--json", ...bob()]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", status: 200, url: `https://127.0.0.1:${server.port}/api/files` });
    expect(JSON.parse(result.body as string)).toEqual({ files: peerFiles });
  });

  it.each([
    { name: "a peer that is not online", args: () => ["lookup", "nobody@example.com", ...bob()], code: 1, message: "nobody@example.com is not online" },
    {
      name: "an email taken by another certificate",
      args: () => ["list", ...relayFlags, "--identity", join(directory, "alice-elsewhere"), "--email", "alice@example.com"],
      code: 1,
      message: "alice@example.com is taken by another certificate",
    },
    { name: "an identity of another email", args: () => ["list", ...relayFlags, "--identity", join(directory, "bob"), "--email", "carol@example.com"], code: 1, message: "belongs to bob@example.com" },
    { name: "a relay certificate not trusted", args: () => ["list", "--relay", relay.url, "--identity", join(directory, "bob")], code: 1, message: "--relay-ca" },
    { name: "a missing --port", args: () => ["online", ...bob()], code: 2, message: "online needs --port" },
    { name: "an address that is not an IP literal", args: () => ["online", "--port", "8080", "--address", "peer.example", ...bob()], code: 2, message: "not an IP literal" },
    { name: "an unknown option", args: () => ["list", "--frobnicate", ...bob()], code: 2, message: "Unknown option '--frobnicate'" },
  ])("should fail with one line and exit $code on $name", async ({ args, code, message }) => {
    const run = await relayPeer(args());
    expect(run.code).toBe(code);
    expect(run.stderr).toMatch(/^relay-peer: [^\n]+\n$/);
    expect(run.stderr).toContain(message);
  });

  it("should stop `online` on SIGINT, announce offline to the relay and exit 0", async () => {
    const observer = await registeredClient(relay, await createTestPeer(`observer-${process.pid}@example.com`));
    expect((await observer.lookup({ email: "alice@example.com" })).peer?.port).toBe(server.port);
    const exited = new Promise<number | null>((resolve) => online.once("exit", (code) => resolve(code)));
    online.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(onlineLines.at(-1)).toMatchObject({ status: "offline" });
    // The relay has withdrawn the broadcast: the process told it, it did not just stop.
    expect(await codeOf(observer.lookup({ email: "alice@example.com" }))).toBe(Code.NotFound);
  });
});

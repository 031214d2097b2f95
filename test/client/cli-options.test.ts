// relay-peer's options and environment variables, each seen doing what --help says, against a
// real relay over loopback. The commands run in this process through the CLI's main() with their
// own stdout, stderr and environment (test/client/cli.test.ts runs the command as a process).
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/client/cli/relay-peer.js";
import { createTestPeer, registeredClient, type TestPeer } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { startPeerHttpServer, startSilentServer, type PeerHttpServer } from "./loopback.js";
import { relayPeerCommand } from "../support/commands.js";

/** One in-process run of relay-peer. */
async function relayPeer(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io = {
    stdout: { write: (chunk: string | Uint8Array) => (stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString()) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

describe("relay-peer options", () => {
  let relay: TestRelay;
  let directory: string;
  let caFile: string;
  // carol serves on one port at two addresses: silent on 127.0.0.3, answering on 127.0.0.1.
  let carol: TestPeer;
  let carolServer: PeerHttpServer;
  let silent: Awaited<ReturnType<typeof startSilentServer>>;
  let dave: TestPeer;
  let flags: string[];

  beforeAll(async () => {
    relay = await startTestRelay();
    directory = await mkdtemp(join(tmpdir(), "relay-peer-options-"));
    caFile = join(directory, "relay-ca.pem");
    await writeFile(caFile, relay.caPem);
    flags = ["--relay", relay.url, "--relay-ca", caFile, "--identity", join(directory, "bob"), "--email", "bob@example.com"];
    carol = await createTestPeer(`carol-${process.pid}@example.com`);
    silent = await startSilentServer("127.0.0.3");
    carolServer = await startPeerHttpServer({ certificate: carol, host: "127.0.0.1", port: silent.port });
    await (await registeredClient(relay, carol)).ready({ port: silent.port, addresses: ["127.0.0.3", "127.0.0.1"] });
    dave = await createTestPeer(`dave-${process.pid}@example.com`);
    await (await registeredClient(relay, dave)).ready({ port: 9, addresses: ["127.0.0.2"] });
  });

  afterAll(async () => {
    await carolServer?.close();
    await silent?.close();
    await relay?.stop();
    await rm(directory, { recursive: true, force: true });
  });

  it("--help: exits 0 and names every command, option, env var and default the docs promise", async () => {
    // As a process: the bin's exit code and stdout.
    const [node, ...cliArgs] = relayPeerCommand;
    const run = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(node, [...cliArgs, "--help"], { timeout: 30_000 }, (error, stdout) => resolve({ code: error ? 1 : 0, stdout }));
    });
    expect(run.code).toBe(0);
    for (const command of ["share DIR", "online --port P", "lookup EMAIL", "list", "visit EMAIL"]) expect(run.stdout).toContain(`relay-peer ${command}`);
    const options = ["relay", "relay-ca", "identity", "email", "json", "timeout-ms", "port", "address", "bind", "allow", "log-level", "path", "output", "health-path", "strategy", "page-size", "help"];
    for (const option of options) expect(run.stdout).toMatch(new RegExp(`^  --${option} `, "m"));
    for (const env of ["env RELAY_URL; default https://127.0.0.1:8443", "env RELAY_CA", "env RELAY_IDENTITY", "env RELAY_EMAIL", "env RELAY_TIMEOUT_MS; default 10000", "env RELAY_PEER_LOG_LEVEL; default info"]) expect(run.stdout).toContain(env);
    for (const fallback of ["default /health", "default staggered", "default 100", "default /api/files"]) expect(run.stdout).toContain(fallback);
  });

  it("RELAY_URL, RELAY_CA, RELAY_IDENTITY and RELAY_EMAIL stand in for the flags", async () => {
    const run = await relayPeer(["lookup", carol.email, "--json"], { RELAY_URL: relay.url, RELAY_CA: caFile, RELAY_IDENTITY: join(directory, "erin"), RELAY_EMAIL: "erin@example.com" });
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(run.stdout)).toMatchObject({ email: carol.email, port: silent.port });
    // Without them (and no flags) the same command has no relay to trust.
    const bare = await relayPeer(["lookup", carol.email], { RELAY_IDENTITY: join(directory, "erin") });
    expect(bare.code).toBe(1);
  });

  it.each([
    ["sequential", "timeout"],
    ["staggered", "cancelled"],
  ])("--strategy %s: the silent first address ends as %s", async (strategy, outcome) => {
    const run = await relayPeer(["visit", carol.email, "--strategy", strategy, "--json", ...flags]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    const result = JSON.parse(run.stdout) as { attempts: Array<{ address: string; outcome: string }> };
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", status: 200 });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.3", outcome],
      ["127.0.0.1", "ok"],
    ]);
  });

  it("--strategy: anything else is a usage error", async () => {
    const run = await relayPeer(["visit", carol.email, "--strategy", "random", ...flags]);
    expect(run).toMatchObject({ code: 2, stderr: 'relay-peer: --strategy "random" is not sequential or staggered (see relay-peer --help)\n' });
  });

  it("--health-path: the health check goes to that path, and a failing one is reported", async () => {
    carolServer.requests.length = 0;
    const run = await relayPeer(["visit", carol.email, "--health-path", "/missing", "--json", ...flags]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("HTTP 404");
    expect(carolServer.requests).toEqual(["GET /missing"]);
  });

  it("--page-size: list pages through the relay that many peers at a time", async () => {
    const listCalls = async () => (await relay.server.metrics.requests.get()).values.filter((value) => value.labels.rpc === "relay.v1.RelayService/List").reduce((total, value) => total + value.value, 0);
    const before = await listCalls();
    const whole = await relayPeer(["list", "--json", ...flags]);
    const afterWhole = await listCalls();
    const paged = await relayPeer(["list", "--json", "--page-size", "1", ...flags]);
    const afterPaged = await listCalls();
    expect(whole.code).toBe(0);
    expect(paged.stdout).toBe(whole.stdout);
    const { peers } = JSON.parse(paged.stdout) as { peers: unknown[] };
    expect(peers).toHaveLength(2);
    expect(afterWhole - before).toBe(1);
    // One page per peer, and the call that finds no next page token is the last.
    expect(afterPaged - afterWhole).toBe(2);
  });

  it("--timeout-ms and RELAY_TIMEOUT_MS: a relay that never answers fails the command within a bound on the deadline", async () => {
    const deaf = await startSilentServer("127.0.0.1");
    try {
      for (const [extra, env] of [[["--timeout-ms", "500"], {}], [[], { RELAY_TIMEOUT_MS: "500" }]] as const) {
        const started = performance.now();
        const run = await relayPeer(["list", "--relay", `https://127.0.0.1:${deaf.port}`, "--relay-ca", caFile, "--identity", join(directory, "bob"), ...extra], env);
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(/^relay-peer: .+\n$/);
        // The default deadline is 10 s: well past this bound.
        expect(performance.now() - started).toBeLessThan(5_000);
      }
    } finally {
      await deaf.close();
    }
  });
});

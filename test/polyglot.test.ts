// Go and Python peers, generated from proto/ by buf with local plugins, against a real relay on
// FerretDB: each registers its own Ed25519 certificate, announces, heartbeats on the bidi stream
// and looks up a TypeScript peer; the TypeScript peer then finds both.
// scripts/build-polyglot-examples.sh installs the plugins and packages (cached) and builds them.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { OfflineReason } from "../src/gen/relay/v1/relay_pb.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { codeOf } from "./support/codes.js";
import { createTestPeer, registeredClient } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";

const run = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;
const toolsDir = process.env.RELAY_TOOLS_DIR ?? join(homedir(), ".cache", "relay-tools");
const python = join(toolsDir, "python", "bin", "python");
const goPeer = join(root, "examples", "go", "relay-go-peer");

describe("Go and Python peers", () => {
  let ferret: FerretDB;
  let relay: TestRelay;
  let dir: string;
  let caFile: string;
  const tsPeerEmail = `ts-peer-${process.pid}@example.com`;

  beforeAll(async () => {
    // First run on a fresh machine: go install + pip install, ~30 s; cached afterwards: ~5 s.
    await run("bash", [join(root, "scripts", "build-polyglot-examples.sh")], { cwd: root, timeout: 300_000 });
    ferret = await startFerretDB({ name: "polyglot" });
    relay = await startTestRelay({ mongodbUri: ferret.uri });
    dir = mkdtempSync(join(tmpdir(), "relay-polyglot-"));
    caFile = join(dir, "relay-ca.pem");
    writeFileSync(caFile, relay.caPem);
    const tsPeer = await createTestPeer(tsPeerEmail);
    const client = await registeredClient(relay, tsPeer);
    await client.ready({ port: 7000, addresses: ["127.0.0.1"], capabilities: { lang: "typescript" } });
  }, 360_000);
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The program and arguments of one peer run: this peer's email, its identity dir, whom it looks up. */
  type PeerCommand = (email: string, identity: string, lookup: string) => [string, string[]];
  const peers: Array<[string, string, PeerCommand]> = [
    ["Go (connect-go, gRPC)", "go-peer", (email, identity, lookup) => [goPeer, ["-relay", relay.url, "-ca", caFile, "-email", email, "-lookup", lookup, "-identity", identity, "-port", "7001"]]],
    ["Go (connect-go, Connect protocol)", "go-connect-peer", (email, identity, lookup) => [goPeer, ["-relay", relay.url, "-ca", caFile, "-email", email, "-lookup", lookup, "-identity", identity, "-protocol", "connect", "-port", "7003"]]],
    ["Python (grpcio)", "py-peer", (email, identity, lookup) => [python, [join(root, "examples", "python", "relay_peer.py"), "--relay", relay.url, "--ca", caFile, "--email", email, "--lookup", lookup, "--identity", identity, "--port", "7002"]]],
  ];

  it.each(peers)("the %s peer should register, announce, heartbeat, find the TypeScript peer and withdraw when its stream ends", async (_, name, command) => {
    const email = `${name}-${process.pid}@example.com`;
    const identity = join(dir, name);
    const [file, args] = command(email, identity, tsPeerEmail);
    // A TypeScript watcher sees the peer's broadcast while it runs, then its withdrawal: the peer
    // half-closes its heartbeat stream on exit, which takes it offline at once.
    const watcher = await registeredClient(relay, await createTestPeer(`ts-watcher-${name}-${process.pid}@example.com`));
    const watch = new AbortController();
    const events = watcher.watch({ emails: [email] }, { signal: watch.signal })[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ email, online: false, initial: true });

    const { stdout } = await run(file, args, { timeout: 60_000 });
    expect(stdout).toContain(`registered ${email}`);
    expect(stdout).toMatch(/ready: broadcast \S+ until .* relay sees us at 127\.0\.0\.1/);
    expect(stdout.match(/^heartbeat \d: expires in/gm)).toHaveLength(3);
    expect(stdout).toContain(`found ${tsPeerEmail} on port 7000`);

    const online = (await events.next()).value;
    expect(online).toMatchObject({ email, online: true, initial: false });
    expect(online.peer?.addresses).toEqual(["127.0.0.1", "::1"]);
    expect(online.peer?.capabilities.lang).toBe(name.startsWith("py") ? "python" : "go");
    expect((await events.next()).value).toMatchObject({ email, online: false, reason: OfflineReason.WITHDRAWN });
    watch.abort();
    expect(await codeOf(watcher.lookup({ email }))).toBe(Code.NotFound);

    // A second start with the kept certificate registers again (idempotent) and announces anew.
    const again = await run(file, args, { timeout: 60_000 });
    expect(again.stdout).toMatch(/already registered: (true|True)/);
  });

  it.each(peers)("the %s peer should exit non-zero when the peer it looks up is not online", async (_, name, command) => {
    const [file, args] = command(`${name}-missing-${process.pid}@example.com`, join(dir, `${name}-missing`), "nobody@example.com");
    const error = await run(file, args, { timeout: 60_000 }).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(error?.code).toBe(1);
    expect(error?.stderr).toMatch(/not_found|NOT_FOUND/);
    expect(error?.stderr).toContain("nobody@example.com");
  });
});

// The Offline and Watch sessions of docs/PROTOCOL.md, run as written there: buf curl (from the
// npm package) against a real relay over mutual TLS, through server reflection.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestPeer, type TestPeer } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { until } from "../faults/support.js";

const run = promisify(execFile);
const buf = new URL("../../node_modules/.bin/buf", import.meta.url).pathname;

describe("Offline and Watch with buf curl", () => {
  let relay: TestRelay;
  let dir: string;
  let alice: TestPeer;
  let bob: TestPeer;

  /** `buf curl` as peer; resolves with stdout, or with stdout and the exit error when it fails. */
  async function bufCurl(peer: TestPeer, name: string, args: string[]): Promise<{ stdout: string; failed: boolean }> {
    try {
      const { stdout } = await run(buf, ["curl", "--cert", join(dir, `${name}.pem`), "--key", join(dir, `${name}-key.pem`), "--cacert", join(dir, "relay-ca.pem"), ...args], { timeout: 60_000 });
      return { stdout, failed: false };
    } catch (error) {
      return { stdout: (error as { stdout: string }).stdout, failed: true };
    }
  }
  const url = (rpc: string) => `${relay.url}/relay.v1.RelayService/${rpc}`;
  /** buf curl prints one pretty JSON object per message: split them. */
  const messages = (stdout: string) => stdout.replace(/}\s*{/g, "}\u0000{").split("\u0000").filter((part) => part.trim() !== "").map((part) => JSON.parse(part) as Record<string, unknown>);

  beforeAll(async () => {
    relay = await startTestRelay();
    dir = mkdtempSync(join(tmpdir(), "relay-buf-curl-"));
    alice = await createTestPeer(`alice-curl-${process.pid}@example.com`);
    bob = await createTestPeer(`bob-curl-${process.pid}@example.com`);
    for (const [name, peer] of [["alice", alice], ["bob", bob]] as const) {
      writeFileSync(join(dir, `${name}.pem`), peer.certificatePem);
      writeFileSync(join(dir, `${name}-key.pem`), peer.privateKeyPem, { mode: 0o600 });
    }
    writeFileSync(join(dir, "relay-ca.pem"), relay.caPem);
    for (const [name, peer] of [["alice", alice], ["bob", bob]] as const) {
      await bufCurl(peer, name, ["--data", JSON.stringify({ email: peer.email, certificatePem: peer.certificatePem }), url("Register")]);
    }
  });
  afterAll(async () => {
    await relay?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("should stream a watcher's snapshot and alice leaving, coming back and leaving again; Offline idempotent", async () => {
    await bufCurl(alice, "alice", ["--data", '{"port": 8080, "addresses": ["192.0.2.10", "::1"]}', url("Ready")]);
    // The watch runs until the changes below have reached it, then buf curl is stopped.
    const watch = spawn(buf, ["curl", "--cert", join(dir, "bob.pem"), "--key", join(dir, "bob-key.pem"), "--cacert", join(dir, "relay-ca.pem"), "--data", JSON.stringify({ emails: [alice.email, "carol@example.com"] }), url("Watch")], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    watch.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise((resolve) => watch.once("exit", resolve));
    // The changes start once the relay counts the watch as open (buf curl takes a moment to start).
    await until(async () => (await relay.server.metrics.watchStreamsOpen.get()).values[0]?.value === 1, "the watch is open", 30_000);
    expect(messages((await bufCurl(alice, "alice", ["--data", "{}", url("Offline")])).stdout)).toEqual([{ wasOnline: true }]);
    expect(messages((await bufCurl(alice, "alice", ["--data", "{}", url("Offline")])).stdout)).toEqual([{}]);
    await bufCurl(alice, "alice", ["--data", '{"port": 8080, "addresses": ["192.0.2.10", "::1"]}', url("Ready")]);
    expect(messages((await bufCurl(alice, "alice", ["--data", "{}", url("Offline")])).stdout)).toEqual([{ wasOnline: true }]);
    const changes = () => {
      try {
        return messages(stdout).filter((message) => message.initial !== true).length;
      } catch {
        return 0; // a message half written
      }
    };
    await until(() => changes() >= 3, "the watch has the three changes", 30_000);
    watch.kill("SIGTERM");
    await exited;
    const seen = messages(stdout);
    const initial = seen.filter((message) => message.initial === true);
    expect(initial.map((message) => message.email).sort()).toEqual([alice.email, "carol@example.com"].sort());
    expect(initial.find((message) => message.email === "carol@example.com")).toMatchObject({ reason: "OFFLINE_REASON_NOT_ONLINE" });
    expect(seen.filter((message) => message.initial !== true).map((message) => (message.online ? "online" : message.reason))).toEqual(["OFFLINE_REASON_WITHDRAWN", "online", "OFFLINE_REASON_WITHDRAWN"]);
  });
});

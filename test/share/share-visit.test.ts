import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateIdentity } from "../../src/client/identity.js";
import { peerRequest, readPeerBody } from "../../src/client/share/peer-request.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { startPeerHttpServer, type PeerHttpServer } from "../client/loopback.js";
import { runCli, startCli, type CliProcess } from "./cli-process.js";

/** The large file's size: big enough that buffering it whole would show in a process's peak memory. */
export const largeFileBytes = 200 * 1024 * 1024;

/** Writes `bytes` of random data in 1 MiB blocks, each block different. */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
  async function* blocks() {
    for (let written = 0; written < bytes; written += 1 << 20) yield randomBytes(Math.min(1 << 20, bytes - written));
  }
  await pipeline(blocks(), createWriteStream(path));
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

// Two people share files with two commands, as real processes on loopback: alice runs
// `relay-peer share DIR`, bob runs `relay-peer visit`. The relay runs in the test process.
describe("relay-peer share and visit, end to end", () => {
  let base: string;
  let relay: TestRelay;
  let relayFlags: string[];
  let alice: CliProcess;
  let alicePort: number;
  const processes: CliProcess[] = [];
  const servers: PeerHttpServer[] = [];
  let largeSha256: string;
  const secret = "NEVER-LEAVES-THE-HOST";

  const as = (name: string) => [...relayFlags, "--identity", join(base, "identities", name), "--email", `${name}@example.com`];

  async function startShare(name: string, args: string[]): Promise<{ process: CliProcess; port: number }> {
    const started = startCli(["share", ...args, "--json", "--log-level", "info", ...as(name)]);
    processes.push(started);
    const sharing = await started.waitForLine((line) => line.status === "sharing");
    await started.waitForLine((line) => line.status === "online");
    return { process: started, port: sharing.port as number };
  }

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "share-visit-"));
    relay = await startTestRelay();
    const caFile = join(base, "relay-ca.pem");
    await writeFile(caFile, relay.caPem);
    relayFlags = ["--relay", relay.url, "--relay-ca", caFile];
    const directory = join(base, "alice-files");
    await mkdir(join(directory, "docs"), { recursive: true });
    await writeFile(join(directory, "notes.txt"), "notes from alice\n");
    await writeFile(join(directory, "docs", "plan.md"), "# plan\n");
    await writeRandomFile(join(directory, "small.bin"), 1 << 20);
    await writeRandomFile(join(directory, "large.bin"), largeFileBytes);
    largeSha256 = await sha256File(join(directory, "large.bin"));
    await writeFile(join(base, "secret.txt"), secret);
    // alice shares on 127.0.0.1 only, and announces 127.0.0.2 first: another machine's address.
    ({ process: alice, port: alicePort } = await startShare("alice", [directory, "--port", "0", "--bind", "127.0.0.1", "--address", "127.0.0.2", "--address", "127.0.0.1"]));
  }, 180_000);

  afterAll(async () => {
    await Promise.all(processes.map((started) => started.stop()));
    await Promise.all(servers.map((server) => server.close()));
    await relay?.stop();
    await rm(base, { recursive: true, force: true });
  });

  it("should list alice's files with visit, over peer TLS", async () => {
    const run = await runCli(["visit", "alice@example.com", "--path", "/api/files", "--json", ...as("bob")]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout.toString()) as { state: string; address: string; url: string; body: string };
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", url: `https://127.0.0.1:${alicePort}/api/files` });
    expect((JSON.parse(result.body) as { entries: Array<{ name: string }> }).entries.map((entry) => entry.name)).toEqual(["docs", "large.bin", "notes.txt", "small.bin"]);
  });

  it("should print a file's bytes to stdout, and the dial to stderr", async () => {
    const run = await runCli(["visit", "alice@example.com", "--path", "/content/docs/plan.md", ...as("bob")]);
    expect(run.code).toBe(0);
    expect(run.stdout.toString()).toBe("# plan\n");
    expect(run.stderr).toContain(`alice@example.com answered at https://127.0.0.1:${alicePort}`);
  });

  it("should stream a 200 MiB file to --output byte for byte, with the same peak memory as a 1 MiB one", async () => {
    const small = await runCli(["visit", "alice@example.com", "--path", "/content/small.bin", "--output", join(base, "small.out"), ...as("bob")], { peakRssFile: join(base, "small.rss") });
    expect(small.code).toBe(0);
    const sharePeakBefore = await alice.peakRssKiB();
    const large = await runCli(["visit", "alice@example.com", "--path", "/download/large.bin", "--output", join(base, "large.out"), "--json", ...as("bob")], { peakRssFile: join(base, "large.rss"), timeoutMs: 120_000 });
    expect(large.stderr).toBe("");
    expect(large.code).toBe(0);
    expect(JSON.parse(large.stdout.toString())).toMatchObject({ status: 200, bytes: largeFileBytes, output: join(base, "large.out") });
    expect((await stat(join(base, "large.out"))).size).toBe(largeFileBytes);
    expect(await sha256File(join(base, "large.out"))).toBe(largeSha256);
    // Streaming keeps both ends' peak memory flat: a 200 MiB transfer may not add more than
    // 64 MiB over a 1 MiB one (buffering the file would add at least 200 MiB).
    expect(large.peakRssKiB! - small.peakRssKiB!).toBeLessThan(64 * 1024);
    expect((await alice.peakRssKiB()) - sharePeakBefore).toBeLessThan(64 * 1024);
    await rm(join(base, "large.out"));
  }, 180_000);

  it("should skip the address another machine answers as wrong_peer", async () => {
    // mallory, registered and sharing too, holds alice's port on 127.0.0.2: alice's first address.
    await startShare("mallory", [join(base, "alice-files"), "--port", String(alicePort), "--bind", "127.0.0.2", "--address", "127.0.0.2"]);
    const run = await runCli(["visit", "alice@example.com", "--path", "/content/notes.txt", "--strategy", "sequential", "--json", ...as("bob")]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout.toString()) as { attempts: Array<{ address: string; outcome: string }>; body: string };
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.2", "wrong_peer"],
      ["127.0.0.1", "ok"],
    ]);
    expect(result.body).toBe("notes from alice\n");
  });

  it.each(["/content/../secret.txt", "/content/%2e%2e/secret.txt", "/content/..%2fsecret.txt", "/content//etc/passwd", "/content/notes.txt%00", "/api/files?path=.."])("should refuse %s with a 400 and no byte from outside", async (path) => {
    const run = await runCli(["visit", "alice@example.com", "--path", path, ...as("bob")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^relay-peer: alice@example.com answered GET .* with HTTP 400: /m);
    expect(run.stdout.toString()).not.toContain(secret);
    expect(run.stderr).not.toContain(secret);
  });

  it("should log each refused path on alice's side", () => {
    const refusals = alice
      .stderr()
      .split("\n")
      .filter((line) => line.includes('"refused: '))
      .map((line) => JSON.parse(line) as { error: string; visitor: string });
    expect(refusals.map((line) => line.error)).toEqual(expect.arrayContaining(["dot_segment", "encoded_slash", "absolute", "nul"]));
    expect(refusals.every((line) => line.visitor === "bob@example.com")).toBe(true);
  });

  it("should refuse a visitor whose certificate is not registered", async () => {
    const stranger = await loadOrCreateIdentity({ directory: join(base, "identities", "stranger"), email: "stranger@example.com" });
    const aliceIdentity = await loadOrCreateIdentity({ directory: join(base, "identities", "alice") });
    const response = await peerRequest({ address: "127.0.0.1", port: alicePort, fingerprint: aliceIdentity.fingerprint, identity: stranger, path: "/content/notes.txt", timeoutMs: 5_000 });
    expect(response.status).toBe(403);
    expect(JSON.parse((await readPeerBody(response, 4096)).toString())).toMatchObject({ error: "not_registered" });
  });

  it("should let only --allow emails read a share", async () => {
    await runCli(["list", ...as("carol")]); // registers carol
    const share = await startShare("dana", [join(base, "alice-files"), "--port", "0", "--bind", "127.0.0.1", "--address", "127.0.0.1", "--allow", "carol@example.com"]);
    expect(share.port).toBeGreaterThan(0);
    const bob = await runCli(["visit", "dana@example.com", "--path", "/content/notes.txt", ...as("bob")]);
    expect(bob.code).toBe(1);
    expect(bob.stderr).toContain("bob@example.com is not allowed to read this share");
    const carol = await runCli(["visit", "dana@example.com", "--path", "/content/notes.txt", ...as("carol")]);
    expect(carol.code).toBe(0);
    expect(carol.stdout.toString()).toBe("notes from alice\n");
  });

  it("should follow redirects that stay on the peer", async () => {
    // rita announces with `online` a server of her own that redirects twice before answering.
    const rita = await loadOrCreateIdentity({ directory: join(base, "identities", "rita"), email: "rita@example.com" });
    const server = await startPeerHttpServer({
      certificate: rita,
      routes: (req, res) => {
        const location = { "/files": "/files/", "/files/": `https://127.0.0.1:${server.port}/api/files` }[req.url ?? ""];
        if (!location) return false;
        res.writeHead(301, { location }).end();
        return true;
      },
    });
    servers.push(server);
    const online = startCli(["online", "--port", String(server.port), "--address", "127.0.0.1", "--json", ...as("rita")]);
    processes.push(online);
    await online.waitForLine((line) => line.status === "online");
    const run = await runCli(["visit", "rita@example.com", "--path", "/files", "--json", ...as("bob")]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout.toString())).toMatchObject({ status: 200, url: `https://127.0.0.1:${server.port}/api/files`, redirects: [`https://127.0.0.1:${server.port}/files/`, `https://127.0.0.1:${server.port}/api/files`] });
    expect(server.requests).toEqual(["GET /health", "GET /files", "GET /files/", "GET /api/files"]);
  });

  it("should stop sharing on SIGTERM: announce offline and exit 0", async () => {
    expect(await alice.stop()).toBe(0);
    expect(alice.lines.at(-1)).toMatchObject({ status: "offline" });
    // Her broadcast may outlive her (until its ttl), but no address answers as her any more.
    const run = await runCli(["visit", "alice@example.com", "--path", "/api/files", ...as("bob")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/alice@example.com is (offline|not online)/);
  });
});

import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateIdentity } from "../../src/client/identity.js";
import { peerRequest, readPeerBody } from "../../src/client/share/peer-request.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { startPeerHttpServer, type PeerHttpServer } from "../client/loopback.js";
import { largeFileBytes, readRange, sha256File, writeRandomFile } from "../support/files.js";
import { runCli, startCli, type CliProcess } from "./cli-process.js";

// Two people share files with two commands, as real processes on loopback: alice runs
// `relay-peer share DIR`, bob runs `relay-peer visit` and `relay-peer house`. The relay runs in
// the test process.
describe("relay-peer share, visit and house, end to end", () => {
  let base: string;
  let relay: TestRelay;
  let relayFlags: string[];
  let alice: CliProcess;
  let alicePort: number;
  let house: CliProcess;
  let houseUrl: string;
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
    house = startCli(["house", "--refresh-ms", "500", "--json", ...as("bob")]);
    processes.push(house);
    houseUrl = (await house.waitForLine((line) => line.status === "house")).url as string;
  }, 180_000);

  /** GET through bob's house, as the page does. */
  async function fromHouse(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, houseUrl), init);
  }

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

  describe("through the house", () => {
    it("should refuse every request without the token, the page included", async () => {
      const origin = new URL(houseUrl).origin;
      for (const path of ["/", "/house.js", "/api/peers", `/${"x".repeat(43)}/`, `${new URL(houseUrl).pathname.slice(0, -2)}/`]) {
        const response = await fetch(origin + path);
        expect(response.status, path).toBe(403);
        expect(await response.text()).not.toContain("alice");
      }
      const page = await fromHouse("");
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    });

    it("should refuse a request whose Host is not the loopback address (DNS rebinding)", async () => {
      const { request } = await import("node:http");
      const url = new URL(houseUrl);
      const status = await new Promise<number>((resolve, reject) => {
        request({ host: url.hostname, port: url.port, path: url.pathname + "api/peers", headers: { host: "attacker.example" } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
          .on("error", reject)
          .end();
      });
      expect(status).toBe(403);
    });

    it("should show alice online with the address that answered and when the relay last saw her", async () => {
      await expect
        .poll(async () => ((await (await fromHouse("api/peers")).json()) as { peers: Array<Record<string, unknown>> }).peers.find((peer) => peer.email === "alice@example.com"), { timeout: 20_000 })
        .toMatchObject({ state: "online", address: "127.0.0.1", lastSeen: expect.any(String) });
    });

    it("should list alice's files as her share does", async () => {
      const listing = (await (await fromHouse("api/peers/alice%40example.com/files?path=docs")).json()) as { path: string; entries: Array<{ name: string }> };
      expect(listing).toMatchObject({ path: "docs", entries: [{ name: "plan.md", type: "file", size: 7, mediaType: "text/markdown" }] });
    });

    it("should download the 200 MiB file byte for byte, with flat memory in the house", async () => {
      const housePeakBefore = await house.peakRssKiB();
      const response = await fromHouse("api/peers/alice%40example.com/download/large.bin");
      expect(response.status).toBe(200);
      expect(response.headers.get("content-disposition")).toBe('attachment; filename="large.bin"');
      expect(response.headers.get("content-length")).toBe(String(largeFileBytes));
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      expect(bytes).toBe(largeFileBytes);
      expect(hash.digest("hex")).toBe(largeSha256);
      expect((await house.peakRssKiB()) - housePeakBefore).toBeLessThan(64 * 1024);
    }, 120_000);

    it("should pass a Range through and answer exactly that range", async () => {
      const expected = await readRange(join(base, "alice-files", "large.bin"), 150_000_000, 150_000_999);
      const response = await fromHouse("api/peers/alice%40example.com/content/large.bin", { headers: { range: "bytes=150000000-150000999" } });
      expect(response.status).toBe(206);
      expect(response.headers.get("content-range")).toBe(`bytes 150000000-150000999/${largeFileBytes}`);
      expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true);
    });

    it("should sandbox peer content, so a shared page cannot run script in the house", async () => {
      const response = await fromHouse("api/peers/alice%40example.com/content/notes.txt");
      expect(response.headers.get("content-security-policy")).toBe("sandbox");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(await response.text()).toBe("notes from alice\n");
    });

    it.each(["content/..%2f..%2fsecret.txt", "content/%2e%2e/secret.txt", "content/../../secret.txt", "download/..%5csecret.txt", "files?path=..%2F.."])("should pass alice's refusal of %s through, with nothing from outside", async (path) => {
      // Sent as written: fetch() would resolve the dot segments before sending.
      const { request } = await import("node:http");
      const url = new URL(houseUrl);
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        request({ host: url.hostname, port: url.port, path: `${url.pathname}api/peers/alice%40example.com/${path}` }, (res) => {
          let body = "";
          res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        })
          .on("error", reject)
          .end();
      });
      expect(answer.status).toBe(400);
      expect(answer.body).not.toContain(secret);
    });

    it("should answer 404 for a peer that is not on the board", async () => {
      const response = await fromHouse("api/peers/nobody%40example.com/files");
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: "unknown_peer" });
    });
  });

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
    // (bob's house checks rita's /health too, on its own schedule.)
    expect(server.requests.filter((request) => request !== "GET /health")).toEqual(["GET /files", "GET /files/", "GET /api/files"]);
  });

  it("should stop sharing on SIGTERM: announce offline and exit 0", async () => {
    expect(await alice.stop()).toBe(0);
    expect(alice.lines.at(-1)).toMatchObject({ status: "offline" });
    // Her broadcast may outlive her (until its ttl), but no address answers as her any more.
    const run = await runCli(["visit", "alice@example.com", "--path", "/api/files", ...as("bob")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/alice@example.com is (offline|not online)/);
    // bob's house turns her badge offline without anyone asking.
    await expect
      .poll(async () => ((await (await fromHouse("api/peers")).json()) as { peers: Array<Record<string, unknown>> }).peers.find((peer) => peer.email === "alice@example.com")?.state, { timeout: 20_000 })
      .toBe("offline");
  });
});

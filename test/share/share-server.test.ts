import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateIdentity, type PeerIdentity } from "../../src/client/identity.js";
import { createRelayClient, type RelayClient } from "../../src/client/relay-client.js";
import { peerRequest, readPeerBody } from "../../src/client/share/peer-request.js";
import { createShareServer, type ShareListing, type ShareServer } from "../../src/client/share/share-server.js";
import { createVisitorCheck } from "../../src/client/share/visitor-check.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";

// A share server on loopback over real peer TLS, checking visitors with a real relay's
// GetRegistration. Requests are made with the same peer TLS code visitors use, so the raw paths
// below reach the server exactly as written (nothing normalises them on the way).
describe("share server", () => {
  let base: string;
  let relay: TestRelay;
  let share: ShareServer;
  let restricted: ShareServer;
  const identities: Record<string, PeerIdentity> = {};
  const clients: RelayClient[] = [];
  const logLines: Array<{ level: number; msg: string; error?: string; visitor?: string }> = [];
  const secret = "TOP-SECRET-OUTSIDE-THE-SHARE";
  const binary = randomBytes(256 * 1024 + 17);

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "share-server-"));
    relay = await startTestRelay();
    // alice shares; bob and carol are registered visitors; mallory never registers; dave
    // registers but first visits when the relay is down.
    for (const name of ["alice", "bob", "carol", "mallory", "dave"]) {
      identities[name] = await loadOrCreateIdentity({ directory: join(base, "identities", name), email: `${name}@example.com` });
      const client = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity: identities[name]!, timeoutMs: 2_000 });
      clients.push(client);
      if (name !== "mallory") await client.register();
    }
    const directory = join(base, "share");
    await mkdir(join(directory, "sub"), { recursive: true });
    await writeFile(join(directory, "notes.txt"), "hello from alice's share\n");
    await writeFile(join(directory, "sub", "inside.txt"), "inside");
    await writeFile(join(directory, "blob.bin"), binary);
    await writeFile(join(directory, 'odd "name".txt'), "odd");
    await writeFile(join(base, "secret.txt"), secret);
    await symlink(join(base, "secret.txt"), join(directory, "out-link"));
    await symlink(base, join(directory, "out-dir"));
    await symlink("sub/inside.txt", join(directory, "in-link.txt"));
    execFileSync("mkfifo", [join(directory, "pipe")]);

    const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
    const lookup = clients[0]!;
    const visitors = () => ({ lookup: (fingerprint: string) => lookup.getRegistration({ fingerprint }) });
    share = await createShareServer({ directory, identity: identities.alice!, visitors: createVisitorCheck(visitors()), binds: ["127.0.0.1", "::1"], logger });
    restricted = await createShareServer({ directory, identity: identities.alice!, visitors: createVisitorCheck({ ...visitors(), allow: ["Carol@example.com"] }), binds: ["127.0.0.1"] });
  });

  afterAll(async () => {
    await share?.close();
    await restricted?.close();
    for (const client of clients) client.close();
    await relay?.store.close();
    await rm(base, { recursive: true, force: true });
  });

  async function get(path: string, options: { visitor?: string; headers?: Record<string, string>; server?: ShareServer; address?: string; method?: "GET" | "HEAD" } = {}) {
    const response = await peerRequest({
      address: options.address ?? "127.0.0.1",
      port: (options.server ?? share).port,
      fingerprint: identities.alice!.fingerprint,
      identity: identities[options.visitor ?? "bob"]!,
      path,
      timeoutMs: 5_000,
      maxRedirects: 0,
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.method ? { method: options.method } : {}),
    });
    const body = await readPeerBody(response, 64 << 20);
    return { status: response.status, headers: response.headers, body, json: () => JSON.parse(body.toString()) as Record<string, unknown> };
  }

  it("should answer /health with its email, on every bind address and one port", async () => {
    for (const address of ["127.0.0.1", "::1"]) {
      const health = await get("/health", { address });
      expect(health.status).toBe(200);
      expect(health.json()).toEqual({ status: "serving", email: "alice@example.com" });
    }
    expect(share.addresses.map((address) => [address.address, address.port])).toEqual([
      ["127.0.0.1", share.port],
      ["::1", share.port],
    ]);
  });

  it("should listen on 0.0.0.0 and :: by default, one port for both", async () => {
    const everywhere = await createShareServer({ directory: share.root, identity: identities.alice!, visitors: createVisitorCheck({ lookup: (fingerprint) => clients[0]!.getRegistration({ fingerprint }) }) });
    try {
      expect(everywhere.addresses.map((address) => [address.address, address.port])).toEqual([
        ["0.0.0.0", everywhere.port],
        ["::", everywhere.port],
      ]);
      // Reached here through loopback only, on both families.
      for (const address of ["127.0.0.1", "::1"]) expect((await get("/health", { address, server: everywhere })).status).toBe(200);
    } finally {
      await everywhere.close();
    }
  });

  it("should list the share: folders first, sizes, times, media types, no symlink that leads out, no FIFO", async () => {
    const listing = (await get("/api/files")).json() as unknown as ShareListing;
    expect(listing.path).toBe("");
    expect(listing.truncated).toBe(false);
    expect(listing.entries.map((entry) => [entry.name, entry.type, entry.size, entry.mediaType])).toEqual([
      ["sub", "directory", 0, "inode/directory"],
      ["blob.bin", "file", binary.length, "application/octet-stream"],
      ["in-link.txt", "file", 6, "text/plain"],
      ["notes.txt", "file", 25, "text/plain"],
      ['odd "name".txt', "file", 3, "text/plain"],
    ]);
    expect(Date.parse(listing.entries[0]!.modified)).toBeGreaterThan(Date.now() - 60_000);
    const sub = (await get("/api/files?path=sub")).json() as unknown as ShareListing;
    expect(sub).toMatchObject({ path: "sub", entries: [{ name: "inside.txt", type: "file", size: 6 }] });
  });

  it("should serve a file inline with Content-Type, ETag, Last-Modified and Accept-Ranges", async () => {
    const file = await get("/content/notes.txt");
    expect(file.status).toBe(200);
    expect(file.body.toString()).toBe("hello from alice's share\n");
    expect(file.headers).toMatchObject({ "content-type": "text/plain; charset=utf-8", "accept-ranges": "bytes", "content-length": "25", "x-content-type-options": "nosniff" });
    expect(file.headers["content-disposition"]).toMatch(/^inline; filename="notes.txt"$/);
    expect(file.headers.etag).toMatch(/^W\/".+"$/);
    expect(new Date(file.headers["last-modified"]!).getTime()).toBeGreaterThan(0);
    const again = await get("/content/notes.txt", { headers: { "if-none-match": file.headers.etag! } });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
  });

  it.each([
    { range: "bytes=0-0", start: 0, end: 0 },
    { range: "bytes=1000-65535", start: 1000, end: 65535 },
    { range: "bytes=-17", start: 256 * 1024, end: 256 * 1024 + 16 },
    { range: "bytes=262100-", start: 262100, end: 256 * 1024 + 16 },
  ])("should answer Range $range with exactly those bytes", async ({ range, start, end }) => {
    const part = await get("/content/blob.bin", { headers: { range } });
    expect(part.status).toBe(206);
    expect(part.headers["content-range"]).toBe(`bytes ${start}-${end}/${binary.length}`);
    expect(part.body.equals(binary.subarray(start, end + 1))).toBe(true);
  });

  it("should answer 416 to a range past the end", async () => {
    const part = await get("/content/blob.bin", { headers: { range: `bytes=${binary.length}-` } });
    expect(part.status).toBe(416);
    expect(part.headers["content-range"]).toBe(`bytes */${binary.length}`);
  });

  it("should serve the same bytes as an attachment with a safe file name", async () => {
    const file = await get("/download/blob.bin");
    expect(file.status).toBe(200);
    expect(file.body.equals(binary)).toBe(true);
    expect(file.headers["content-disposition"]).toBe('attachment; filename="blob.bin"');
    const odd = await get(`/download/${encodeURIComponent('odd "name".txt')}`);
    expect(odd.headers["content-disposition"]).toBe('attachment; filename="odd _name_.txt"');
    const head = await get("/download/blob.bin", { method: "HEAD" });
    expect(head).toMatchObject({ status: 200, body: Buffer.alloc(0) });
    expect(head.headers["content-length"]).toBe(String(binary.length));
  });

  it.each([
    { path: "/content/../secret.txt", status: 400, error: "dot_segment" },
    { path: "/content/sub/../../secret.txt", status: 400, error: "dot_segment" },
    { path: "/content/%2e%2e/secret.txt", status: 400, error: "dot_segment" },
    { path: "/content/%2E%2E/%2E%2E/etc/passwd", status: 400, error: "dot_segment" },
    { path: "/download/../secret.txt", status: 400, error: "dot_segment" },
    { path: "/content/..%2fsecret.txt", status: 400, error: "encoded_slash" },
    { path: "/content/..%2Fsecret.txt", status: 400, error: "encoded_slash" },
    { path: "/content/..%5csecret.txt", status: 400, error: "encoded_slash" },
    { path: "/content/..\\secret.txt", status: 400, error: "backslash" },
    { path: "/content//etc/passwd", status: 400, error: "absolute" },
    { path: `/content/${encodeURIComponent(join(tmpdir(), "x"))}`, status: 400, error: "encoded_slash" },
    { path: "/content/notes.txt%00.jpg", status: 400, error: "nul" },
    { path: "/content/%c0%ae%c0%ae/secret.txt", status: 400, error: "malformed" },
    { path: "/content/out-link", status: 403, error: "outside" },
    { path: "/content/out-dir/secret.txt", status: 403, error: "outside" },
    { path: "/download/out-dir/secret.txt", status: 403, error: "outside" },
    { path: "/api/files?path=..", status: 400, error: "dot_segment" },
    { path: "/api/files?path=sub%2F..%2F..", status: 400, error: "dot_segment" },
    { path: "/api/files?path=/etc", status: 400, error: "absolute" },
    { path: "/api/files?path=%00", status: 400, error: "nul" },
    { path: "/api/files?path=out-dir", status: 403, error: "outside" },
    { path: "/content/pipe", status: 403, error: "not_a_file" },
    { path: "/content/sub", status: 400, error: "is_directory" },
    { path: "/content/missing.txt", status: 404, error: "not_found" },
    { path: "/etc/passwd", status: 404, error: "not_found" },
  ])("should refuse $path with $status $error, and log it", async ({ path, status, error }) => {
    const before = logLines.length;
    const answer = await get(path);
    expect(answer.status).toBe(status);
    expect(answer.json()).toMatchObject({ error, message: expect.any(String) });
    expect(answer.body.toString()).not.toContain(secret);
    expect(logLines.slice(before)).toContainEqual(expect.objectContaining({ error, visitor: "bob@example.com", msg: expect.stringMatching(/^refused: /) }));
    if (status !== 404) expect(logLines.slice(before).find((line) => line.error === error)?.level).toBeGreaterThanOrEqual(30);
  });

  it("should refuse methods other than GET and HEAD", async () => {
    const answer = await rawRequest(share.port, "/content/notes.txt", { method: "DELETE", certificate: identities.bob! });
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe("GET, HEAD");
  });

  it("should refuse a visitor without a certificate (401) and one the relay does not know (403)", async () => {
    const anonymous = await rawRequest(share.port, "/health", {});
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ error: "no_certificate" });
    const stranger = await get("/content/notes.txt", { visitor: "mallory" });
    expect(stranger.status).toBe(403);
    expect(stranger.json()).toMatchObject({ error: "not_registered" });
    expect(stranger.body.toString()).not.toContain("hello");
  });

  it("should let in only the --allow list when one is given", async () => {
    const bob = await get("/content/notes.txt", { server: restricted });
    expect(bob.status).toBe(403);
    expect(bob.json()).toMatchObject({ error: "not_allowed", message: "bob@example.com is not allowed to read this share" });
    const carol = await get("/content/notes.txt", { server: restricted, visitor: "carol" });
    expect(carol.status).toBe(200);
    expect(carol.body.toString()).toBe("hello from alice's share\n");
  });

  it("should answer 503 with retry-after, not 403, while the relay cannot be asked", async () => {
    // The last test: the relay stays down.
    await relay.server.close();
    const dave = await get("/health", { visitor: "dave" });
    expect(dave.status).toBe(503);
    expect(dave.headers["retry-after"]).toBe("5");
    expect(dave.json()).toMatchObject({ error: "relay_unavailable" });
    // bob was checked before the outage: his answer is remembered.
    expect((await get("/health")).status).toBe(200);
  });
});

/** An HTTPS request without the peer TLS client code: another method, or no client certificate. */
function rawRequest(port: number, path: string, options: { method?: string; certificate?: PeerIdentity }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: options.method ?? "GET", rejectUnauthorized: false, agent: false, ...(options.certificate ? { cert: options.certificate.certificatePem, key: options.certificate.privateKeyPem } : {}) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

import { create } from "@bufbuild/protobuf";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { PeerSchema, type Peer } from "../../src/gen/relay/v1/relay_pb.js";
import { createDialer, type DialerOptions, type PeerState } from "../../src/client/dialer.js";
import { PeerConnectionError } from "../../src/client/share/peer-error.js";
import { readPeerBody } from "../../src/client/share/peer-request.js";
import { ManualClock } from "../../src/shared/manual-clock.js";
import { createTestPeer, type TestPeer } from "../support/peers.js";
import { closedPort, startPeerHttpServer, startSilentServer, type PeerHttpServer, type PeerHttpServerOptions } from "./loopback.js";

// Every candidate here is on loopback: closed ports on 127.0.0.x stand for unreachable addresses,
// a silent server on 127.0.0.3 for a blackholed one, and a server with mallory's certificate for
// another machine that happens to have the peer's address.
describe("Dialer on loopback", () => {
  let alice: TestPeer;
  let mallory: TestPeer;
  let bob: TestPeer;
  const cleanups: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    [alice, mallory, bob] = await Promise.all([createTestPeer("alice@example.com"), createTestPeer("mallory@example.com"), createTestPeer("bob@example.com")]);
  });
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  async function peerServer(options: Partial<PeerHttpServerOptions> = {}): Promise<PeerHttpServer> {
    const server = await startPeerHttpServer({ certificate: alice, ...options });
    cleanups.push(() => server.close());
    return server;
  }

  function peer(port: number, addresses: string[], observedAddress = "", fingerprint = alice.fingerprint): Peer {
    return create(PeerSchema, { email: "alice@example.com", port, addresses, observedAddress, fingerprint });
  }

  function dialer(options: Omit<DialerOptions, "identity"> = {}) {
    return createDialer({ identity: bob, ...options });
  }

  it.each(["sequential", "staggered"] as const)("should, %s, skip a refused candidate and reach the next", async (strategy) => {
    // 127.0.0.2 has nothing on the server's port: the peer's one port, refused on that address.
    const server = await peerServer();
    const result = await dialer({ strategy, attemptTimeoutMs: 1_000 }).dial(peer(server.port, ["127.0.0.2", "127.0.0.1"]));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", baseUrl: `https://127.0.0.1:${server.port}` });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.2", "refused"],
      ["127.0.0.1", "ok"],
    ]);
  });

  it("should present the visitor's certificate to the peer", async () => {
    const server = await peerServer();
    await dialer().dial(peer(server.port, ["127.0.0.1"]));
    expect(server.visitors).toEqual([bob.fingerprint]);
  });

  it.each(["sequential", "staggered"] as const)("should, %s, skip an address served by another certificate as wrong_peer", async (strategy) => {
    const impostor = await peerServer({ certificate: mallory, host: "127.0.0.2" });
    await peerServer({ host: "127.0.0.1", port: impostor.port });
    const result = await dialer({ strategy }).dial(peer(impostor.port, ["127.0.0.2", "127.0.0.1"]));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1" });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.2", "wrong_peer"],
      ["127.0.0.1", "ok"],
    ]);
    // Not even the request line reached the impostor: the certificate is checked first.
    expect(impostor.requests).toEqual([]);
  });

  it("should report offline with wrong_peer named when only other machines answer", async () => {
    const impostor = await peerServer({ certificate: mallory });
    const result = await dialer().dial(peer(impostor.port, ["127.0.0.1"]));
    expect(result).toMatchObject({ state: "offline", message: expect.stringContaining("wrong_peer") });
  });

  it("should refuse to dial a peer the relay gave no fingerprint for", async () => {
    const server = await peerServer();
    const result = await dialer().dial(peer(server.port, ["127.0.0.1"], "", ""));
    expect(result).toMatchObject({ state: "error", attempts: [], message: expect.stringContaining("fingerprint") });
    expect(server.requests).toEqual([]);
  });

  it("should try the observed address after the announced ones", async () => {
    const server = await peerServer({ host: "127.0.0.4" });
    const result = await dialer({ strategy: "sequential" }).dial(peer(server.port, ["127.0.0.2"], "127.0.0.4"));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.4" });
  });

  it("should dial an IPv6 candidate", async () => {
    const server = await peerServer({ host: "::1" });
    const result = await dialer().dial(peer(server.port, ["127.0.0.2", "::1"]));
    expect(result).toMatchObject({ state: "online", address: "::1", baseUrl: `https://[::1]:${server.port}` });
  });

  it("should remember the address that answered and try it first next time", async () => {
    const server = await peerServer();
    const candidates = peer(server.port, ["127.0.0.2", "127.0.0.5", "127.0.0.1"]);
    const sequential = dialer({ strategy: "sequential" });
    await sequential.dial(candidates);
    expect(sequential.rememberedAddress("alice@example.com")).toBe("127.0.0.1");
    const again = await sequential.dial(candidates);
    expect(again.attempts.map((attempt) => attempt.address)).toEqual(["127.0.0.1"]);
  });

  // On a manual clock: the next candidate may start at the stagger delay (staggered) or at the
  // silent one's timeout (sequential), and not a millisecond earlier.
  it.each([
    ["staggered", "cancelled", 250],
    ["sequential", "timeout", 1_000],
  ] as const)("should, %s, start the next candidate only when the silent one is %s, at %i ms", async (strategy, outcome, atMs) => {
    const silent = await startSilentServer("127.0.0.3");
    cleanups.push(() => silent.close());
    // A peer has one port: the silent server holds it on 127.0.0.3, the real one on 127.0.0.1.
    const server = await peerServer({ port: silent.port });
    const clock = new ManualClock();
    const dialing = dialer({ strategy, staggerMs: 250, attemptTimeoutMs: 1_000, clock }).dial(peer(silent.port, ["127.0.0.3", "127.0.0.1"]));
    await until(() => silent.connections() > 0, "the first candidate is dialled");
    await clock.advance(atMs - 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.requests).toEqual([]);
    await clock.advance(1);
    const result = await dialing;
    expect(server.requests).toEqual(["GET /health"]);
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", elapsedMs: atMs });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome, attempt.elapsedMs])).toEqual([
      ["127.0.0.3", outcome, atMs],
      ["127.0.0.1", "ok", atMs],
    ]);
  });

  it("should time a silent candidate out after attemptTimeoutMs, bounded", async () => {
    const silent = await startSilentServer("127.0.0.3");
    cleanups.push(() => silent.close());
    const started = Date.now();
    const result = await dialer({ attemptTimeoutMs: 300 }).dial(peer(silent.port, ["127.0.0.3"]));
    expect(result.attempts.map((attempt) => attempt.outcome)).toEqual(["timeout"]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("should report offline, with checking first, when no candidate answers", async () => {
    const port = await closedPort("127.0.0.2");
    const states: PeerState[] = [];
    const under = dialer();
    under.on("state", (_email, state) => states.push(state));
    const result = await under.dial(peer(port, ["127.0.0.2", "127.0.0.6"]));
    expect(result.state).toBe("offline");
    expect(states).toEqual(["checking", "offline"]);
    expect(under.stateOf("Alice@example.com")).toBe("offline");
  });

  it("should report error when the peer answers its health check with a failure", async () => {
    const server = await peerServer();
    const result = await dialer({ healthPath: "/missing" }).dial(peer(server.port, ["127.0.0.1"]));
    expect(result).toMatchObject({ state: "error", message: expect.stringContaining("HTTP 404") });
  });

  it("should fetch a path from the address that answered", async () => {
    const server = await peerServer();
    const { result, response } = await dialer().fetch(peer(server.port, ["127.0.0.2", "127.0.0.1"]), "/api/files");
    expect(result.address).toBe("127.0.0.1");
    expect(response?.status).toBe(200);
    expect(JSON.parse(response!.body.toString())).toMatchObject({ files: [{ name: "notes.txt" }, { name: "photos/cat.jpg" }] });
  });

  it("should open the remembered address directly, and dial again when it stops answering as the peer", async () => {
    const server = await peerServer();
    const under = dialer();
    const target = peer(server.port, ["127.0.0.1"]);
    await under.dial(target);
    server.requests.length = 0;
    const { response } = await under.open(target, "/api/files");
    await readPeerBody(response!, 1 << 20);
    expect(server.requests).toEqual(["GET /api/files"]); // no health check first
    await server.close();
    // The same port on the peer's other address, as after a move between networks.
    await peerServer({ host: "127.0.0.4", port: server.port });
    const again = await under.open(peer(server.port, ["127.0.0.1", "127.0.0.4"]), "/api/files");
    expect(again.result).toMatchObject({ state: "online", address: "127.0.0.4" });
  });

  describe("redirects", () => {
    function redirecting(locations: Record<string, string>) {
      return (req: { url?: string }, res: { writeHead(status: number, headers: Record<string, string>): { end(): void } }) => {
        const location = locations[req.url ?? ""];
        if (location === undefined) return false;
        res.writeHead(302, { location }).end();
        return true;
      };
    }

    it("should follow a relative redirect and one to another address of the peer", async () => {
      const second = await peerServer({ host: "127.0.0.4" });
      const first = await peerServer({ routes: redirecting({ "/files": "/moved", "/moved": `https://127.0.0.4:${second.port}/api/files` }) });
      const target = peer(first.port, ["127.0.0.1", "127.0.0.4"]);
      const { response } = await dialer().open(target, "/files");
      expect(response).toMatchObject({ status: 200, address: "127.0.0.4", path: "/api/files", redirects: [`https://127.0.0.1:${first.port}/moved`, `https://127.0.0.4:${second.port}/api/files`] });
      expect(JSON.parse((await readPeerBody(response!, 1 << 20)).toString())).toMatchObject({ files: expect.any(Array) });
    });

    it.each([
      { name: "more than 5 redirects", locations: { "/loop": "/loop" }, failure: "too_many_redirects" },
      { name: "a redirect to an address that is not the peer's", locations: { "/loop": "https://127.0.0.9:1/api/files" }, failure: "redirect_refused" },
      { name: "a redirect to plain http", locations: { "/loop": "http://127.0.0.1:1/api/files" }, failure: "redirect_refused" },
      { name: "a redirect to a host name", locations: { "/loop": "https://localhost/api/files" }, failure: "redirect_refused" },
    ])("should refuse $name", async ({ locations, failure }) => {
      const server = await peerServer({ routes: redirecting(locations) });
      const error = await dialer()
        .open(peer(server.port, ["127.0.0.1"]), "/loop")
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(PeerConnectionError);
      expect((error as PeerConnectionError).failure).toBe(failure);
    });

    it("should refuse a redirect to an address of the peer that serves another certificate", async () => {
      const impostor = await peerServer({ certificate: mallory, host: "127.0.0.4" });
      const server = await peerServer({ routes: redirecting({ "/files": `https://127.0.0.4:${impostor.port}/api/files` }) });
      const error = await dialer()
        .open(peer(server.port, ["127.0.0.1", "127.0.0.4"]), "/files")
        .catch((caught: unknown) => caught);
      expect((error as PeerConnectionError).failure).toBe("wrong_peer");
      expect(impostor.requests).toEqual([]);
    });
  });
});

/** Resolves once predicate() holds; fails after 10 s. */
async function until(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

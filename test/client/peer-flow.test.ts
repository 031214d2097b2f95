import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  createDialer,
  createPresence,
  createRelayClient,
  EmailTakenError,
  loadOrCreateIdentity,
  type Peer,
  type PresenceStatus,
  type RelayClient,
} from "../../src/client/index.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { TestClock } from "../support/clock.js";
import { peerFiles, startPeerHttpServer } from "./loopback.js";

// A peer's whole life (register, announce, be found, be dialled, go offline) against a
// real relay over real mutual TLS. Everything is on loopback: peers announce 127.0.0.x through
// the address override, never this machine's interface addresses; the unreachable candidate is
// a closed port on 127.0.0.2.
describe("peer client end to end", () => {
  let directory: string;
  const cleanups: Array<() => Promise<void> | void> = [];

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), "relay-peer-e2e-"));
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await rm(directory, { recursive: true, force: true });
  });

  async function relay(options: Parameters<typeof startTestRelay>[0] = {}): Promise<TestRelay> {
    const started = await startTestRelay(options);
    cleanups.push(() => started.stop());
    return started;
  }

  async function client(relayUnderTest: TestRelay, email: string, identityName = email): Promise<RelayClient> {
    const identity = await loadOrCreateIdentity({ directory: join(directory, identityName), email });
    const created = createRelayClient({ relayUrl: relayUnderTest.url, relayCaPem: relayUnderTest.caPem, identity, timeoutMs: 5_000 });
    cleanups.push(() => created.close());
    return created;
  }

  async function listAll(relayClient: RelayClient): Promise<Peer[]> {
    const peers: Peer[] = [];
    for await (const peer of relayClient.list({ pageSize: 1 })) peers.push(peer);
    return peers;
  }

  it("should let B find A, visit A past a dead first address, and see A go offline", async () => {
    const ttlSeconds = 2;
    const relayUnderTest = await relay({ broadcastTtlSeconds: ttlSeconds });

    // Peer A: a server with A's own certificate on 127.0.0.1, announced after a closed candidate on 127.0.0.2.
    const alice = await client(relayUnderTest, "alice@example.com");
    const server = await startPeerHttpServer({ certificate: alice.identity });
    cleanups.push(() => server.close());
    const presence = createPresence({ client: alice, announcement: { port: server.port, addresses: ["127.0.0.2", "127.0.0.1"] } });
    const statuses: PresenceStatus[] = [];
    presence.on("status", (event) => statuses.push(event.status));
    let heartbeats = 0;
    presence.on("heartbeat", () => (heartbeats += 1));
    cleanups.push(() => presence.stop());
    const broadcast = await presence.start();
    expect(broadcast.broadcastId).not.toBe("");
    expect(broadcast.observedAddress).toBe("127.0.0.1");
    expect(presence.status).toBe("online");

    // Peer B: registers, sees A in the list (paged one by one).
    const bob = await client(relayUnderTest, "bob@example.com");
    expect((await bob.register()).alreadyRegistered).toBe(false);
    const listed = await listAll(bob);
    const seen = listed.find((peer) => peer.email === "alice@example.com");
    expect(seen).toMatchObject({ port: server.port, addresses: ["127.0.0.2", "127.0.0.1"], observedAddress: "127.0.0.1", fingerprint: alice.identity.fingerprint });

    // B visits A: the closed port is refused, A's server answers with A's certificate, B gets A's files.
    const dialer = createDialer({ identity: bob.identity, strategy: "sequential" });
    const { result, response } = await dialer.fetch(seen!, "/api/files");
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1" });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.2", "refused"],
      ["127.0.0.1", "ok"],
    ]);
    expect(JSON.parse(response!.body.toString())).toEqual({ files: peerFiles });
    expect(server.requests).toEqual(["GET /health", "GET /api/files"]);

    // Heartbeats keep A listed past its ttl.
    await vi.waitFor(() => expect(heartbeats).toBeGreaterThanOrEqual(4), { timeout: 10_000, interval: 50 });
    expect(await bob.lookup("alice@example.com")).toMatchObject({ email: "alice@example.com" });

    // A stops: B's dial finds nothing, then the relay lets A's broadcast expire.
    await presence.stop();
    await server.close();
    expect(statuses).toEqual(["registering", "online", "offline"]);
    const again = await dialer.dial(seen!);
    expect(again.state).toBe("offline");
    expect(dialer.stateOf("alice@example.com")).toBe("offline");
    await vi.waitFor(async () => expect(await bob.lookup("alice@example.com")).toBeUndefined(), { timeout: (ttlSeconds + 3) * 1000, interval: 100 });
    expect((await listAll(bob)).map((peer) => peer.email)).not.toContain("alice@example.com");
  });

  it("should keep heartbeating through a relay restart and reappear without being restarted", async () => {
    const relayUnderTest = await relay({ broadcastTtlSeconds: 30 });
    const alice = await client(relayUnderTest, "alice@example.com");
    const presence = createPresence({ client: alice, announcement: { port: 8080, addresses: ["127.0.0.1"] }, backoff: { initialMs: 50, maxMs: 500 } });
    const statuses: PresenceStatus[] = [];
    presence.on("status", (event) => statuses.push(event.status));
    cleanups.push(() => presence.stop());
    const first = await presence.start();

    // The in-memory relay forgets every registration and broadcast when it restarts.
    await relayUnderTest.restart();
    await vi.waitFor(() => expect(statuses.filter((status) => status === "online")).toHaveLength(2), { timeout: 15_000, interval: 50 });
    expect(statuses).toContain("reconnecting");
    expect(presence.broadcast?.broadcastId).not.toBe(first.broadcastId);

    const bob = await client(relayUnderTest, "bob@example.com");
    await bob.register();
    expect(await bob.lookup("alice@example.com")).toMatchObject({ email: "alice@example.com", port: 8080, addresses: ["127.0.0.1"] });
  });

  it("should announce again when the relay answers not_found for an expired broadcast", async () => {
    const clock = new TestClock();
    // Moving the relay's clock past the ttl expires A's broadcast between two heartbeats (~1 s apart).
    const relayUnderTest = await relay({ broadcastTtlSeconds: 3, clock });
    const alice = await client(relayUnderTest, "alice@example.com");
    const presence = createPresence({ client: alice, announcement: { port: 8080, addresses: ["127.0.0.1"] }, backoff: { initialMs: 20, maxMs: 100 } });
    const reconnectErrors: unknown[] = [];
    presence.on("status", (event) => event.status === "reconnecting" && reconnectErrors.push(event.error));
    cleanups.push(() => presence.stop());
    const first = await presence.start();
    clock.advance(60_000);
    await vi.waitFor(() => expect(presence.broadcast?.broadcastId ?? first.broadcastId).not.toBe(first.broadcastId), { timeout: 10_000, interval: 50 });
    expect(reconnectErrors[0]).toMatchObject({ code: Code.NotFound });
  });

  it("should stop with error, not flap, when another process announces with the same identity", async () => {
    const relayUnderTest = await relay({ broadcastTtlSeconds: 3 });
    const first = createPresence({ client: await client(relayUnderTest, "alice@example.com"), announcement: { port: 8080, addresses: ["127.0.0.1"] } });
    const errors: unknown[] = [];
    first.on("status", (event) => event.status === "error" && errors.push(event.error));
    cleanups.push(() => first.stop());
    await first.start();

    // A second run of the same identity (same directory) announces: its Ready replaces the first's broadcast.
    const secondClient = createRelayClient({ relayUrl: relayUnderTest.url, relayCaPem: relayUnderTest.caPem, identity: await loadOrCreateIdentity({ directory: join(directory, "alice@example.com") }) });
    cleanups.push(() => secondClient.close());
    const second = createPresence({ client: secondClient, announcement: { port: 9090, addresses: ["127.0.0.1"] } });
    cleanups.push(() => second.stop());
    await second.start();

    await vi.waitFor(() => expect(first.status).toBe("error"), { timeout: 10_000, interval: 50 });
    expect(errors[0]).toMatchObject({ code: Code.FailedPrecondition });
    expect(second.status).toBe("online");
  });

  it("should reuse a stored identity across runs and refuse another certificate for its email", async () => {
    const relayUnderTest = await relay();
    const firstRun = await client(relayUnderTest, "alice@example.com", "alice");
    const registered = await firstRun.register();
    expect(registered).toMatchObject({ clientId: firstRun.identity.fingerprint, alreadyRegistered: false });
    firstRun.close();

    // A later run loads the same directory, with no email needed: same certificate, same id.
    const identity = await loadOrCreateIdentity({ directory: join(directory, "alice") });
    expect(identity.fingerprint).toBe(firstRun.identity.fingerprint);
    const secondRun = createRelayClient({ relayUrl: relayUnderTest.url, relayCaPem: relayUnderTest.caPem, identity });
    cleanups.push(() => secondRun.close());
    expect(await secondRun.register()).toMatchObject({ clientId: registered.clientId, alreadyRegistered: true });

    // A fresh identity elsewhere for the same email is another certificate: the email is taken.
    const impostor = await client(relayUnderTest, "alice@example.com", "alice-elsewhere");
    const error = await impostor.register().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EmailTakenError);
    expect((error as Error).message).toContain("alice@example.com is taken by another certificate");
  });
});

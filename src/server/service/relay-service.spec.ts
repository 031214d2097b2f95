import { X509Certificate } from "node:crypto";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport, type Client, type Interceptor } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { fingerprintOf } from "../../shared/fingerprint.js";
import { ManualClock } from "../../shared/manual-clock.js";
import { createSelfSignedCertificate } from "../../shared/self-signed-certificate.js";
import { certificateFacts } from "../identity/certificate-checks.js";
import { kCaller, type CallerContext } from "../identity/caller-identity.js";
import { MemoryStore } from "../store/memory-store.js";
import { storeOperations } from "../store/store.js";
import { createPresenceKeeper, type PresenceKeeper } from "./presence-keeper.js";
import { defaultLimits } from "./request-limits.js";
import { relayRoutes, toPeer } from "./relay-service.js";
import { createWatchHub, type WatchHub } from "./watch-hub.js";

// The relay service's handlers in process: Connect's router transport instead of HTTP/2, the
// memory store, and a manual clock, so expiry happens on fake time with no real wait.
// The caller's certificate reaches the handlers through the same context value the TLS transport
// sets (kCaller), here set by a router interceptor from a test header naming the caller.
// test/relay.test.ts covers the same behaviour over real mutual TLS.

const ttlSeconds = 60;
const logger = pino({ level: "silent" });

interface Peer {
  email: string;
  certificatePem: string;
  caller: CallerContext;
}

async function makePeer(email: string): Promise<Peer> {
  const { certificatePem } = await createSelfSignedCertificate({ commonName: email });
  const certificate = new X509Certificate(certificatePem);
  return { email, certificatePem, caller: { identity: { fingerprint: fingerprintOf(certificate), facts: certificateFacts(certificate) }, observedAddress: "127.0.0.1" } };
}

const callers = new Map<string, CallerContext>([["nobody", { identity: undefined, observedAddress: "127.0.0.1" }]]);

/** Call options that present a peer's certificate (or none, for "nobody"). */
function as(peer: Peer | "nobody") {
  const name = peer === "nobody" ? peer : peer.email;
  if (peer !== "nobody") callers.set(name, peer.caller);
  return { headers: { "x-test-caller": name } };
}

/** Sets the caller from the test header, where the TLS transport would read the socket. */
const presentCaller: Interceptor = (next) => (request) => {
  const caller = callers.get(request.header.get("x-test-caller") ?? "");
  if (caller) request.contextValues.set(kCaller, caller);
  return next(request);
};

async function codeOf(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe("relay service in process", () => {
  let alice: Peer;
  let bob: Peer;
  let clock: ManualClock;
  let store: MemoryStore;
  let client: Client<typeof RelayService>;
  let presence: PresenceKeeper;
  let watchHub: WatchHub;

  beforeAll(async () => {
    [alice, bob] = await Promise.all([makePeer("alice@example.com"), makePeer("bob@example.com")]);
  });

  beforeEach(() => {
    clock = new ManualClock(Date.parse("2030-01-01T00:00:00Z"));
    store = new MemoryStore();
    presence = createPresenceKeeper({ store, clock, logger, presenceGraceMs: 30_000 });
    watchHub = createWatchHub({ store, clock, logger, toPeer, presenceGraceMs: presence.presenceGraceMs });
    const routes = relayRoutes({ store, clock, logger, presence, watchHub, limits: defaultLimits, broadcastTtlSeconds: ttlSeconds, registrationCacheTtlMs: 60_000, registrationCacheSize: 100, shutdownSignal: new AbortController().signal, random: () => 0.5 });
    client = createClient(RelayService, createRouterTransport(routes, { router: { interceptors: [presentCaller] } }));
  });

  afterEach(async () => {
    presence.stop();
    await watchHub.stop();
  });

  /** One Heartbeat stream carrying one message; resolves with the answers. */
  async function heartbeatOnce(peer: Peer, broadcastId: string) {
    async function* beats() {
      yield { broadcastId };
    }
    const answers = [];
    for await (const answer of client.heartbeat(beats(), as(peer))) answers.push(answer);
    return answers;
  }

  /** An open Heartbeat stream: one answer per beat(); end() half-closes it, as a peer leaving. */
  function openHeartbeat(peer: Peer) {
    const queue: Array<{ broadcastId: string }> = [];
    let wake: (() => void) | undefined;
    let ended = false;
    async function* requests() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    }
    const answers = client.heartbeat(requests(), as(peer))[Symbol.asyncIterator]();
    return {
      async beat(broadcastId: string) {
        queue.push({ broadcastId });
        wake?.();
        const { value, done } = await answers.next();
        if (done) throw new Error("the heartbeat stream ended");
        return value;
      },
      async end() {
        ended = true;
        wake?.();
        while (!(await answers.next()).done);
      },
    };
  }

  async function online(peer: Peer, port = 8080) {
    await client.register({ email: peer.email, certificatePem: peer.certificatePem }, as(peer));
    return client.ready({ port, addresses: ["127.0.0.2"] }, as(peer));
  }

  it("should register, announce and be found, with expires_at one ttl after Ready", async () => {
    const ready = await online(alice);
    expect(timestampDate(ready.expiresAt!).getTime()).toBe(clock.now() + ttlSeconds * 1000);
    const { peer } = await client.lookup({ email: "alice@example.com" }, as(alice));
    expect(peer).toMatchObject({ email: "alice@example.com", port: 8080, addresses: ["127.0.0.2"], observedAddress: "127.0.0.1", fingerprint: alice.caller.identity!.fingerprint });
  });

  it("should answer a registered caller's Lookup with one store read, the broadcast's (one database round trip)", async () => {
    await online(alice);
    await online(bob, 9090);
    const calls = storeOperations.map((operation) => vi.spyOn(store, operation));
    const callsOf = () => calls.flatMap((spy) => spy.mock.calls.map(() => spy.getMockName()));
    expect((await client.lookup({ email: "bob@example.com" }, as(alice))).peer?.port).toBe(9090);
    expect(await codeOf(client.lookup({ email: "nobody@example.com" }, as(alice)))).toBe(Code.NotFound);
    expect(callsOf()).toEqual(["findBroadcast", "findBroadcast"]);
  });

  it("should stop returning a broadcast once its ttl has passed without a heartbeat", async () => {
    await online(alice);
    await online(bob, 9090);
    await clock.advance(ttlSeconds * 1000 - 1);
    expect((await client.lookup({ email: "alice@example.com" }, as(bob))).peer?.email).toBe("alice@example.com");
    await clock.advance(1);
    expect(await codeOf(client.lookup({ email: "alice@example.com" }, as(bob)))).toBe(Code.NotFound);
    expect((await client.list({ pageSize: 10 }, as(bob))).peers).toEqual([]);
  });

  it("should extend a broadcast by one ttl from each heartbeat, and withdraw it when the stream ends cleanly", async () => {
    const ready = await online(alice);
    await clock.advance(50_000);
    const stream = openHeartbeat(alice);
    const answer = await stream.beat(ready.broadcastId);
    expect(timestampDate(answer.expiresAt!).getTime()).toBe(clock.now() + ttlSeconds * 1000);
    await clock.advance(50_000); // 100 s after Ready, 50 s after the heartbeat
    expect((await client.lookup({ email: "alice@example.com" }, as(alice))).peer?.email).toBe("alice@example.com");
    await stream.end();
    expect(await codeOf(client.lookup({ email: "alice@example.com" }, as(alice)))).toBe(Code.NotFound);
  });

  it("should answer a heartbeat after expiry with not_found, so the peer announces again", async () => {
    const ready = await online(alice);
    await clock.advance(ttlSeconds * 1000);
    expect(await codeOf(heartbeatOnce(alice, ready.broadcastId))).toBe(Code.NotFound);
  });

  it("should refuse a caller without a certificate, and an unregistered one, as unauthenticated", async () => {
    expect(await codeOf(client.lookup({ email: "alice@example.com" }, as("nobody")))).toBe(Code.Unauthenticated);
    expect(await codeOf(client.ready({ port: 8080, addresses: [] }, as(bob)))).toBe(Code.Unauthenticated);
  });

  it("should refuse to register a certificate other than the connection's", async () => {
    expect(await codeOf(client.register({ email: bob.email, certificatePem: bob.certificatePem }, as(alice)))).toBe(Code.PermissionDenied);
  });
});

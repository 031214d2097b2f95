// Presence on fake time: the relay's routes over an in-process router transport, a MemoryStore
// and a ManualClock, so grace, refresh, expiry and sweeps are checked without waiting.
import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { OfflineReason, RelayService, type WatchResponse } from "../../gen/relay/v1/relay_pb.js";
import { ManualClock, settle } from "../../shared/manual-clock.js";
import { createSelfSignedCertificate } from "../../shared/self-signed-certificate.js";
import { fingerprintOf } from "../../shared/fingerprint.js";
import { certificateFacts } from "../identity/certificate-checks.js";
import { kCaller } from "../identity/caller-identity.js";
import { MemoryStore } from "../store/memory-store.js";
import { at, broadcast } from "../store/store-contract.js";
import type { BroadcastChange, ChangeFeed } from "../store/store.js";
import { defaultLimits } from "./request-limits.js";
import { relayRoutes, toPeer } from "./relay-service.js";
import { createWatchHub } from "./watch-hub.js";
import { createPresenceKeeper, type PresenceKeeper } from "./presence-keeper.js";

const graceMs = 30_000;
const ttlSeconds = 3600;

/** One relay instance's routes on a shared store and clock. */
function instance(store: MemoryStore, clock: ManualClock, watch: { maxPendingMessages?: number } = {}) {
  const shutdown = new AbortController();
  const logger = pino({ level: "silent" });
  const presence = createPresenceKeeper({ store, clock, logger, presenceGraceMs: graceMs });
  const watchHub = createWatchHub({ store, clock, logger, toPeer, presenceGraceMs: graceMs, ...watch });
  const routes = relayRoutes({ store, clock, logger, limits: defaultLimits, broadcastTtlSeconds: ttlSeconds, registrationCacheTtlMs: 60_000, registrationCacheSize: 100, shutdownSignal: shutdown.signal, presence, watchHub });
  return { routes, presence, shutdown, watchHub };
}

/** A client of routes calling as the peer with certificate certificatePem. */
function clientOf(routes: ReturnType<typeof relayRoutes>, certificatePem: string): Client<typeof RelayService> {
  const certificate = new X509Certificate(certificatePem);
  const identity = { certificate, fingerprint: fingerprintOf(certificate), facts: certificateFacts(certificate) };
  const transport = createRouterTransport(routes, {
    router: {
      interceptors: [
        (next) => (request) => {
          request.contextValues.set(kCaller, { identity, observedAddress: "127.0.0.1" });
          return next(request);
        },
      ],
    },
  });
  return createClient(RelayService, transport);
}

async function peer(routes: ReturnType<typeof relayRoutes>, email: string) {
  const { certificatePem } = await createSelfSignedCertificate({ commonName: email, emails: [email] });
  const client = clientOf(routes, certificatePem);
  await client.register({ email, certificatePem });
  return { email, certificatePem, client };
}

/**
 * Opens a Heartbeat stream and beats once; end() half-closes; lose() fails the request stream,
 * as a reset HTTP/2 stream or a dropped connection does on a real server.
 */
async function openStream(client: Client<typeof RelayService>, broadcastId: string) {
  const requests = createWritableIterable<{ broadcastId: string }>();
  let fail: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_resolve, reject) => (fail = reject));
  failed.catch(() => undefined);
  async function* lossy() {
    const iterator = requests[Symbol.asyncIterator]();
    for (;;) {
      const next = await Promise.race([iterator.next(), failed]);
      if (next.done) return;
      yield next.value;
    }
  }
  const responses = client.heartbeat(lossy())[Symbol.asyncIterator]();
  requests.write({ broadcastId }).catch(() => undefined);
  await responses.next();
  return {
    async end() {
      requests.close();
      expect((await responses.next()).done).toBe(true);
    },
    async lose() {
      fail(new Error("connection reset"));
      await responses.next().catch(() => undefined);
      await settle();
    },
  };
}

async function isOnline(client: Client<typeof RelayService>, email: string): Promise<boolean> {
  try {
    await client.lookup({ email });
    return true;
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) return false;
    throw error;
  }
}

describe("presence follows the Heartbeat stream", () => {
  function setup() {
    const clock = new ManualClock();
    const store = new MemoryStore();
    return { clock, store, a: instance(store, clock), b: instance(store, clock) };
  }

  it("should withdraw at once when the peer half-closes its stream", async () => {
    const { a } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const { broadcastId } = await alice.client.ready({ port: 8080 });
    const stream = await openStream(alice.client, broadcastId);
    expect(await isOnline(alice.client, alice.email)).toBe(true);
    await stream.end();
    expect(await isOnline(alice.client, alice.email)).toBe(false);
  });

  it("should keep a lost stream's peer online for the grace, then not", async () => {
    const { a, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const stream = await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    await stream.lose();
    await clock.advance(graceMs - 1);
    expect(await isOnline(alice.client, alice.email)).toBe(true);
    await clock.advance(1);
    expect(await isOnline(alice.client, alice.email)).toBe(false);
  });

  it("should keep a peer online through a reconnect to another instance within the grace", async () => {
    const { a, b, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const first = await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    await first.lose();
    await clock.advance(graceMs / 2);
    const onB = clientOf(b.routes, alice.certificatePem);
    const second = await openStream(onB, "");
    // Far past the first grace: b refreshes the broadcast it now holds.
    await clock.advance(10 * graceMs);
    expect(await isOnline(onB, alice.email)).toBe(true);
    await second.end();
    expect(await isOnline(onB, alice.email)).toBe(false);
  });

  it("should keep a held stream's peer online by refreshing, with no heartbeat for many graces", async () => {
    const { a, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    await clock.advance(20 * graceMs);
    expect(await isOnline(alice.client, alice.email)).toBe(true);
  });

  it("should let the grace run out for the peers of an instance that died (stopped refreshing)", async () => {
    const { a, b, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    a.presence.stop(); // the process is gone: no release, no refresh
    await clock.advance(graceMs);
    expect(await isOnline(clientOf(b.routes, alice.certificatePem), alice.email)).toBe(false);
  });

  it("should release held peers to their grace at shutdown, not withdraw them", async () => {
    const { a, b, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    await clock.advance(4_000);
    a.presence.stop();
    expect(await a.presence.releaseAll()).toBe(1);
    a.shutdown.abort();
    await settle();
    const onB = clientOf(b.routes, alice.certificatePem);
    await clock.advance(graceMs - 1);
    expect(await isOnline(onB, alice.email)).toBe(true);
    await clock.advance(1);
    expect(await isOnline(onB, alice.email)).toBe(false);
  });

  it("should end an open Heartbeat stream with unavailable when the relay shuts down", async () => {
    const { a } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const { broadcastId } = await alice.client.ready({ port: 8080 });
    const requests = createWritableIterable<{ broadcastId: string }>();
    const responses = alice.client.heartbeat(requests)[Symbol.asyncIterator]();
    void requests.write({ broadcastId });
    await responses.next();
    const next = responses.next();
    a.shutdown.abort();
    const error = await next.then(() => undefined, (caught: unknown) => ConnectError.from(caught));
    expect(error?.code).toBe(Code.Unavailable);
  });

  it("should bound a peer that announced without ever opening a stream by the ttl only", async () => {
    const { a, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    await alice.client.ready({ port: 8080 });
    await clock.advance(ttlSeconds * 1000 - 1);
    expect(await isOnline(alice.client, alice.email)).toBe(true);
    await clock.advance(1);
    expect(await isOnline(alice.client, alice.email)).toBe(false);
  });

  it("should answer Offline idempotently, and refuse a stale broadcast_id", async () => {
    const { a } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const first = await alice.client.ready({ port: 8080 });
    const second = await alice.client.ready({ port: 8081 });
    await expect(alice.client.offline({ broadcastId: first.broadcastId })).rejects.toMatchObject({ code: Code.FailedPrecondition });
    expect((await alice.client.offline({ broadcastId: second.broadcastId })).wasOnline).toBe(true);
    expect(await isOnline(alice.client, alice.email)).toBe(false);
    expect((await alice.client.offline({})).wasOnline).toBe(false);
    expect((await alice.client.offline({ broadcastId: second.broadcastId })).wasOnline).toBe(false);
  });

  it("should refuse a heartbeat after Offline, so the peer announces again", async () => {
    const { a } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const { broadcastId } = await alice.client.ready({ port: 8080 });
    await alice.client.offline({});
    const requests = createWritableIterable<{ broadcastId: string }>();
    requests.write({ broadcastId }).catch(() => undefined);
    await expect(alice.client.heartbeat(requests)[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: Code.NotFound });
  });
});

/** A Watch stream read one message at a time. */
function watcher(client: Client<typeof RelayService>, emails: string[]) {
  const abort = new AbortController();
  const iterator = client.watch({ emails }, { signal: abort.signal })[Symbol.asyncIterator]();
  return {
    async next(): Promise<WatchResponse> {
      const result = await iterator.next();
      if (result.done) throw new Error("the watch ended");
      return result.value;
    },
    /** The next n messages. */
    async take(n: number): Promise<WatchResponse[]> {
      const messages: WatchResponse[] = [];
      for (let i = 0; i < n; i++) messages.push(await this.next());
      return messages;
    },
    close: () => abort.abort(),
  };
}

/** A message in short: "email online 8080" or "email offline lost", with "(initial)". */
function brief(message: WatchResponse): string {
  const state = message.online ? `online ${message.peer?.port}` : `offline ${OfflineReason[message.reason].toLowerCase()}`;
  return `${message.email} ${state}${message.initial ? " (initial)" : ""}`;
}

describe("Watch", () => {
  function setup(watch: { maxPendingMessages?: number } = {}) {
    const clock = new ManualClock();
    const store = new MemoryStore();
    return { clock, store, a: instance(store, clock, watch), b: instance(store, clock, watch) };
  }

  it("should send one initial message per email, then one per change, with its reason", async () => {
    const { a, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const bob = await peer(a.routes, "bob@example.com");
    await alice.client.ready({ port: 8080 });
    const watch = watcher(bob.client, ["Alice@Example.com", "carol@example.com", "alice@example.com"]);
    expect((await watch.take(2)).map(brief).sort()).toEqual(["alice@example.com online 8080 (initial)", "carol@example.com offline not_online (initial)"]);
    // The same announcement again (a reconnect) is no news; a new port is.
    await alice.client.ready({ port: 8080 });
    await alice.client.ready({ port: 8081 });
    expect(brief(await watch.next())).toBe("alice@example.com online 8081");
    const stream = await openStream(alice.client, "");
    await stream.end();
    expect(brief(await watch.next())).toBe("alice@example.com offline withdrawn");
    // Lost: the stream goes away, and the grace runs out on the relay's clock.
    await alice.client.ready({ port: 8082 });
    expect(brief(await watch.next())).toBe("alice@example.com online 8082");
    await (await openStream(alice.client, "")).lose();
    await clock.advance(graceMs + 1_000);
    expect(brief(await watch.next())).toBe("alice@example.com offline lost");
    // Expired: announced without a stream, and the ttl runs out.
    await alice.client.ready({ port: 8083 });
    expect(brief(await watch.next())).toBe("alice@example.com online 8083");
    await clock.advance(ttlSeconds * 1000 + 1_000);
    expect(brief(await watch.next())).toBe("alice@example.com offline expired");
    watch.close();
  });

  it("should tell a watcher on one instance what a peer does on another", async () => {
    const { a, b, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const bob = await peer(b.routes, "bob@example.com");
    const watch = watcher(bob.client, ["alice@example.com"]);
    expect(brief(await watch.next())).toBe("alice@example.com offline not_online (initial)");
    const { broadcastId } = await alice.client.ready({ port: 8080 });
    expect(brief(await watch.next())).toBe("alice@example.com online 8080");
    await openStream(alice.client, broadcastId);
    // a's refreshes keep alice online on b's watch for many graces.
    await clock.advance(5 * graceMs);
    expect((await alice.client.offline({})).wasOnline).toBe(true);
    expect(brief(await watch.next())).toBe("alice@example.com offline withdrawn");
    watch.close();
  });

  it("should see a held peer's grace run out when its instance dies, from another instance", async () => {
    const { a, b, clock } = setup();
    const alice = await peer(a.routes, "alice@example.com");
    const bob = await peer(b.routes, "bob@example.com");
    await openStream(alice.client, (await alice.client.ready({ port: 8080 })).broadcastId);
    const watch = watcher(bob.client, ["alice@example.com"]);
    expect(brief(await watch.next())).toBe("alice@example.com online 8080 (initial)");
    a.presence.stop(); // a is gone
    await clock.advance(graceMs + 1_000);
    expect(brief(await watch.next())).toBe("alice@example.com offline lost");
    watch.close();
  });

  it.each([
    ["no email", []],
    ["257 emails", Array.from({ length: 257 }, (_, i) => `peer${i}@example.com`)],
    ["a malformed email", ["not-an-email"]],
  ])("should refuse %s with invalid_argument", async (_name, emails) => {
    const { a } = setup();
    const bob = await peer(a.routes, "bob@example.com");
    await expect(watcher(bob.client, emails).next()).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("should accept 256 emails", async () => {
    const { a } = setup();
    const bob = await peer(a.routes, "bob@example.com");
    const watch = watcher(bob.client, Array.from({ length: 256 }, (_, i) => `peer${i}@example.com`));
    expect(await watch.take(256)).toHaveLength(256);
    watch.close();
  });

  it("should tell a watcher that fell behind to resync with aborted, holding no more than its bound", async () => {
    const { a } = setup({ maxPendingMessages: 4 });
    const alice = await peer(a.routes, "alice@example.com");
    const bob = await peer(a.routes, "bob@example.com");
    const watch = watcher(bob.client, ["alice@example.com"]);
    await watch.next();
    // Bob reads nothing while alice changes twenty times.
    for (let port = 9000; port < 9020; port++) {
      await alice.client.ready({ port });
      await settle();
    }
    const seen: string[] = [];
    const outcome = await (async () => {
      for (;;) seen.push(brief(await watch.next()));
    })().catch((error: unknown) => ConnectError.from(error));
    expect(outcome.code).toBe(Code.Aborted);
    expect(outcome.rawMessage).toMatch(/fell behind.*watch again/);
    expect(seen.length).toBeLessThanOrEqual(6);
  });
});

export type { PresenceKeeper };

describe("Watch when the change feed may have missed changes", () => {
  /** A store whose feed reports nothing and resyncs when the test says. */
  class QuietFeedStore extends MemoryStore {
    resync: (() => void) | undefined;
    override watchChanges(_onChange: (changes: BroadcastChange[]) => void, onResync?: () => void): ChangeFeed {
      this.resync = onResync;
      return { mode: "quiet", lagMs: 0, stop: async () => {} };
    }
  }

  it("should read every watched peer again on a resync", async () => {
    const clock = new ManualClock(at(0).getTime());
    const store = new QuietFeedStore();
    const hub = createWatchHub({ store, clock, logger: pino({ level: "silent" }), toPeer, presenceGraceMs: graceMs });
    await store.putBroadcast(broadcast(1));
    const abort = new AbortController();
    const messages = hub.watch([broadcast(1).email], abort.signal)[Symbol.asyncIterator]();
    expect((await messages.next()).value).toMatchObject({ online: true, initial: true, peer: { port: 1001 } });
    // Another instance's Ready that the feed did not report.
    await store.putBroadcast(broadcast(1, { broadcastId: "b1-new", port: 9 }));
    store.resync!();
    expect((await messages.next()).value).toMatchObject({ online: true, initial: false, peer: { port: 9 } });
    abort.abort();
    await hub.stop();
  });
});

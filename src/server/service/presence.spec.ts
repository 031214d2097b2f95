// Presence on fake time: the relay's routes over an in-process router transport, a MemoryStore
// and a ManualClock, so grace, refresh, expiry and sweeps are checked without waiting.
import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { ManualClock, settle } from "../../shared/manual-clock.js";
import { createSelfSignedCertificate } from "../../shared/self-signed-certificate.js";
import { fingerprintOf } from "../../shared/fingerprint.js";
import { certificateFacts } from "../identity/certificate-checks.js";
import { kCaller } from "../identity/caller-identity.js";
import { MemoryStore } from "../store/memory-store.js";
import { defaultLimits } from "./request-limits.js";
import { relayRoutes } from "./relay-service.js";
import { createPresenceKeeper, type PresenceKeeper } from "./presence-keeper.js";

const graceMs = 30_000;
const ttlSeconds = 3600;

/** One relay instance's routes on a shared store and clock. */
function instance(store: MemoryStore, clock: ManualClock) {
  const shutdown = new AbortController();
  const presence = createPresenceKeeper({ store, clock, logger: pino({ level: "silent" }), presenceGraceMs: graceMs });
  const routes = relayRoutes({ store, clock, logger: pino({ level: "silent" }), limits: defaultLimits, broadcastTtlSeconds: ttlSeconds, registrationCacheTtlMs: 60_000, registrationCacheSize: 100, shutdownSignal: shutdown.signal, presence });
  return { routes, presence, shutdown };
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

export type { PresenceKeeper };

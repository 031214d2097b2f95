// Watch on a real relay over mutual TLS, what a watcher sees when peers come and go: one suite,
// run on each store by its own test file (watch.test.ts, watch-ferretdb.test.ts) so that the two
// run side by side.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createRelayClient, type PresenceChange, type RelayClient } from "../../src/client/relay-client.js";
import { createPresence, type Presence } from "../../src/client/presence.js";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { createTestPeer, type TestPeer } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { peerWorkspace, startOnlinePeer } from "../support/peer-process.js";
import { until } from "../faults/support.js";

/** A watch through the client library, recording every message with when it arrived. */
export function record(client: RelayClient, emails: string[]) {
  const abort = new AbortController();
  const seen: Array<PresenceChange & { at: number }> = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const change of client.watch(emails, { signal: abort.signal })) seen.push({ ...change, at: Date.now() });
    } catch (error) {
      failure = error;
    }
  })();
  return {
    seen,
    failure: () => failure,
    /** The first message for email matching what, after index from. */
    async next(email: string, what: (change: PresenceChange) => boolean, timeoutMs: number, from = 0): Promise<PresenceChange & { at: number }> {
      let found: (PresenceChange & { at: number }) | undefined;
      await until(() => (found = seen.slice(from).find((change) => change.email === email && what(change))) !== undefined, `a watcher sees ${email} change`, timeoutMs, 10);
      return found!;
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

/** A client of relay for peer, with a generous call deadline. */
export function clientFor(relay: TestRelay, peer: TestPeer): RelayClient {
  // The deadline: 50 peers starting at once on a shared 2-core machine.
  return createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity: { ...peer, directory: "" }, pingIntervalMs: 1_000, timeoutMs: 30_000 });
}

export const graceMs = 3_000;

/** The Watch suite on one store: the in-memory one, or FerretDB. */
export function describeWatch(name: string, useFerret: boolean): void {
  describe(`Watch on ${name}`, () => {
    let ferret: FerretDB | undefined;
    let relay: TestRelay;
    let workspace: Awaited<ReturnType<typeof peerWorkspace>>;
    let observer: RelayClient;
    beforeAll(async () => {
      ferret = useFerret ? await startFerretDB({ name: "presence-watch" }) : undefined;
      relay = await startTestRelay({ presenceGraceMs: graceMs, ...(ferret ? { mongodbUri: ferret.uri } : {}) });
      workspace = await peerWorkspace(relay);
      observer = clientFor(relay, await createTestPeer(`watcher-${process.pid}@example.com`));
      await observer.register();
    });
    afterAll(async () => {
      observer?.close();
      await relay?.stop();
      await ferret?.stop();
      await workspace?.remove();
    });

    it("should see `relay-peer online` come, then leave on Ctrl-C (withdrawn) within 2 s", async () => {
      const email = `watch-sigint-${process.pid}@example.com`;
      const watch = record(observer, [email]);
      expect((await watch.next(email, (change) => change.initial, 5_000)).reason).toBe("not_online");
      const peer = await startOnlinePeer({ relayUrl: relay.url, caFile: workspace.caFile, directory: workspace.directory, email, port: 8090 });
      expect((await watch.next(email, (change) => change.online, 5_000)).peer?.port).toBe(8090);
      const interruptedAt = Date.now();
      expect(await peer.stop("SIGINT")).toBe(0);
      const offline = await watch.next(email, (change) => !change.online && !change.initial, 2_000);
      expect(offline.reason).toBe("withdrawn");
      expect(offline.at - interruptedAt).toBeLessThan(2_000 + 1_000); // the process's own exit included
      await watch.stop();
    });

    it("should see a killed `relay-peer online` offline, reason lost, within grace + 5 s", async () => {
      const email = `watch-sigkill-${process.pid}@example.com`;
      const watch = record(observer, [email]);
      const peer = await startOnlinePeer({ relayUrl: relay.url, caFile: workspace.caFile, directory: workspace.directory, email, port: 8091 });
      await watch.next(email, (change) => change.online, 5_000);
      await until(async () => (await relay.store.findBroadcastRecords([email]))[0]?.holder !== undefined, "the peer's heartbeat stream holds its broadcast");
      await peer.stop("SIGKILL");
      const killedAt = Date.now();
      const offline = await watch.next(email, (change) => !change.online && !change.initial, graceMs + 5_000);
      expect(offline.reason).toBe("lost");
      // Not before the grace (less one refresh interval): a peer that reconnected would have stayed online.
      expect(offline.at - killedAt).toBeGreaterThanOrEqual(graceMs - 1_000);
      await watch.stop();
    });

    it("should report none of 50 online peers offline while their relay restarts", async () => {
      const peers = await Promise.all(Array.from({ length: 50 }, (_, i) => createTestPeer(`restart-watch-${i}-${process.pid}@example.com`)));
      const emails = peers.map((peer) => peer.email);
      // The default grace here: the peers have 30 s to come back.
      const own = await startTestRelay(ferret ? { mongodbUri: ferret.uri } : {});
      const presences: Presence[] = peers.map((peer, i) => createPresence({ client: clientFor(own, peer), announcement: { port: 31_000 + i, addresses: ["127.0.0.2"] }, backoff: { initialMs: 100, maxMs: 1_000 } }));
      const watcherClient = clientFor(own, peers[0]!);
      try {
        await Promise.all(presences.map((presence) => presence.start()));
        await until(async () => (await own.store.findBroadcastRecords(emails)).every((record) => record.holder !== undefined), "every peer's stream holds its broadcast");
        let watch = record(watcherClient, emails);
        await until(() => watch.seen.length >= 50, "the initial snapshot");
        expect(watch.seen.every((change) => change.online)).toBe(true);
        await own.restart();
        // The watch ends with the relay (unavailable); the peers reconnect and announce again.
        await until(() => watch.failure() !== undefined, "the watch ends with the relay");
        expect(ConnectError.from(watch.failure()).code).toBe(Code.Unavailable);
        const firstSeen = watch.seen;
        await until(() => presences.every((presence) => presence.status === "online"), "every peer is back", 30_000);
        watch = record(watcherClient, emails);
        await until(() => watch.seen.length >= 50, "the snapshot after the restart");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        expect([...firstSeen, ...watch.seen].filter((change) => !change.online).map((change) => `${change.email} ${change.reason}`)).toEqual([]);
        await watch.stop();
      } finally {
        await Promise.all(presences.map((presence) => presence.stop()));
        watcherClient.close();
        await own.stop();
      }
    });

    it("should tell a watcher that does not read to resync: aborted, never unbounded", async () => {
      // The write timeout (which resets a stream its client does not read) is lifted: this checks
      // the watcher's own bound.
      const own = await startTestRelay({ ...(ferret ? { mongodbUri: ferret.uri } : {}), watchMaxPendingMessages: 16, rateLimits: { perCertificate: 0 }, connectionLimits: { writeTimeoutMs: 0 } });
      const peers = await Promise.all(Array.from({ length: 8 }, (_, i) => createTestPeer(`busy-${i}-${process.pid}@example.com`)));
      const busy = peers.map((peer) => clientFor(own, peer));
      const slow = clientFor(own, await createTestPeer(`slow-${process.pid}@example.com`));
      try {
        await Promise.all([...busy, slow].map((client) => client.register()));
        const iterator = slow.watch(peers.map((peer) => peer.email))[Symbol.asyncIterator]();
        for (const _ of peers) expect((await iterator.next()).value).toMatchObject({ initial: true });
        // 1,600 changes the watcher does not read: more than HTTP/2 flow control and the bound hold.
        await Promise.all(busy.map(async (client) => {
          for (let port = 1; port <= 200; port++) await client.ready({ port, addresses: ["127.0.0.2"] });
        }));
        let read = 0;
        const outcome = await (async () => {
          for (;;) {
            if ((await iterator.next()).done) return "ended";
            read++;
          }
        })().catch((error: unknown) => ConnectError.from(error));
        expect(outcome).toBeInstanceOf(ConnectError);
        expect((outcome as ConnectError).code).toBe(Code.Aborted);
        expect(read).toBeLessThan(1_600);
      } finally {
        for (const client of busy) client.close();
        slow.close();
        await own.stop();
      }
    }, 150_000); // 1,600 Ready calls on FerretDB take most of a minute on a loaded machine

    it("should refuse a Watch past the per-certificate stream cap with resource_exhausted", async () => {
      const own = await startTestRelay({ ...(ferret ? { mongodbUri: ferret.uri } : {}), maxStreamsPerCertificate: 2 });
      const client = clientFor(own, await createTestPeer(`greedy-${process.pid}@example.com`));
      try {
        await client.register();
        const abort = new AbortController();
        const open = [0, 1].map(() => client.watch(["a@example.com"], { signal: abort.signal })[Symbol.asyncIterator]());
        for (const stream of open) expect((await stream.next()).value).toMatchObject({ initial: true });
        await expect(client.watch(["a@example.com"])[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: Code.ResourceExhausted });
        abort.abort();
      } finally {
        client.close();
        await own.stop();
      }
    });
  });
}

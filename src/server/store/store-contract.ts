import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BroadcastRecord, RelayStore } from "./store.js";

/**
 * The store contract: one suite that every RelayStore passes, since everything above the store
 * relies on exactly this behaviour. The memory store runs it in the unit tier
 * (memory-store.spec.ts), the MongoDB store against a real server in the integration tier
 * (test/store-contract.test.ts). Test-only: not part of the build.
 */

/** A store under test and how to dispose of it. */
export interface OpenedStore {
  store: RelayStore;
  done(): Promise<void>;
  /** Whether sweepExpired itself deletes expired broadcasts. */
  sweeps: boolean;
}

/** Resolves once predicate holds; fails after 5 s (a change feed reports within about a second). */
async function until(predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the change feed");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The contract's epoch, and a time `seconds` after it. */
export const t0 = new Date("2030-01-01T00:00:00Z");
export const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

/** Broadcast number n of the contract's fixtures, live until at(60) unless overridden. */
export function broadcast(n: number, overrides: Partial<BroadcastRecord> = {}): BroadcastRecord {
  return {
    broadcastId: `b${n}`,
    fingerprint: `fp${n}`,
    email: `peer${String(n).padStart(3, "0")}@example.com`,
    port: 1000 + n,
    addresses: ["127.0.0.2", "::1"],
    capabilities: { n: String(n) },
    observedAddress: "127.0.0.1",
    lastSeen: t0,
    expiresAt: at(60),
    changedAt: overrides.lastSeen ?? t0,
    ...overrides,
  };
}

export function describeStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  describe(name, () => {
    let store: RelayStore;
    let sweeps: boolean;
    let done: () => Promise<void>;
    beforeAll(async () => {
      ({ store, sweeps, done } = await open());
    });
    afterAll(async () => done?.());

    describe("register", () => {
      const registration = { fingerprint: "reg-a", email: "a@example.com", certificatePem: "PEM-A", registeredAt: t0, retainUntil: at(3600) };

      it("should create a registration, then answer existing for the same binding", async () => {
        expect(await store.register(registration)).toEqual({ outcome: "created", registration });
        const again = await store.register({ ...registration, registeredAt: at(10) });
        expect(again).toEqual({ outcome: "existing", registration });
        expect(await store.findRegistration("reg-a")).toEqual(registration);
        expect(await store.findRegistrationByEmail("a@example.com")).toEqual(registration);
        expect(await store.findRegistrationByEmail("nobody@example.com")).toBeUndefined();
      });

      it("should answer email_taken for another certificate and certificate_taken for another email", async () => {
        expect(await store.register({ ...registration, fingerprint: "reg-b" })).toEqual({ outcome: "email_taken" });
        expect(await store.register({ ...registration, email: "other@example.com" })).toEqual({ outcome: "certificate_taken", email: "a@example.com" });
        expect(await store.findRegistration("reg-b")).toBeUndefined();
      });

      it("should answer email_taken when both the email and the certificate are bound elsewhere", async () => {
        await store.register({ ...registration, fingerprint: "reg-c", email: "c@example.com" });
        expect(await store.register({ ...registration, fingerprint: "reg-c" })).toEqual({ outcome: "email_taken" });
        expect(await store.findRegistration("reg-c")).toMatchObject({ email: "c@example.com" });
      });

      it("should let exactly one of many concurrent registrations of one email win", async () => {
        const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => store.register({ fingerprint: `race-${i}`, email: "race@example.com", certificatePem: "PEM", registeredAt: t0, retainUntil: at(3600) })));
        expect(outcomes.filter((o) => o.outcome === "created")).toHaveLength(1);
        expect(outcomes.filter((o) => o.outcome === "email_taken")).toHaveLength(9);
      });
    });

    describe("registration retention", () => {
      const kept = (name: string, retainUntil: Date) => ({ fingerprint: `ret-${name}`, email: `ret-${name}@example.com`, certificatePem: "PEM", registeredAt: t0, retainUntil });

      it("should move a registration's retainUntil, and ignore one that does not exist", async () => {
        await store.register(kept("moved", at(100)));
        await store.retainRegistration("ret-moved", at(500));
        await store.retainRegistration("ret-nobody", at(500));
        expect(await store.findRegistration("ret-moved")).toEqual(kept("moved", at(500)));
        expect(await store.findRegistration("ret-nobody")).toBeUndefined();
      });

      it("should delete only registrations past retainUntil, freeing their emails", async () => {
        await store.register(kept("stale", at(100)));
        await store.register(kept("fresh", at(100)));
        await store.retainRegistration("ret-fresh", at(900));
        const swept = await store.sweepRegistrations(at(200));
        // Where the database's TTL monitor deletes them instead, the sweep leaves them (sweeps false).
        expect(swept).toBe(sweeps ? 1 : 0); // ret-stale only: ret-moved of the test above is kept to 500 s
        expect((await store.findRegistration("ret-stale")) === undefined).toBe(sweeps);
        expect(await store.findRegistration("ret-fresh")).toEqual(kept("fresh", at(900)));
        const another = await store.register({ ...kept("stale", at(1000)), fingerprint: "ret-other" });
        expect(another.outcome).toBe(sweeps ? "created" : "email_taken");
        expect(await store.sweepRegistrations(at(200))).toBe(0);
      });
    });

    describe("broadcasts", () => {
      it("should store, find by email and replace a peer's broadcast", async () => {
        await store.putBroadcast(broadcast(1));
        expect(await store.findBroadcast("peer001@example.com", at(1))).toEqual(broadcast(1));
        await store.putBroadcast(broadcast(1, { broadcastId: "b1-new", addresses: ["127.0.0.9"], port: 9 }));
        expect(await store.findBroadcast("peer001@example.com", at(1))).toMatchObject({ broadcastId: "b1-new", addresses: ["127.0.0.9"], port: 9 });
      });

      it("should return a broadcast announced without capabilities, extended or not, with none", async () => {
        await store.putBroadcast(broadcast(5, { capabilities: {} }));
        expect(await store.findBroadcast("peer005@example.com", at(1))).toEqual(broadcast(5, { capabilities: {} }));
        expect(await store.extendBroadcast("fp5", "b5", at(2), at(62))).toEqual({ outcome: "extended", broadcast: broadcast(5, { capabilities: {}, lastSeen: at(2), expiresAt: at(62), changedAt: t0 }) });
        expect((await store.findBroadcastRecords(["peer005@example.com"]))[0]?.capabilities).toEqual({});
      });

      it("should never return an expired broadcast, swept or not", async () => {
        await store.putBroadcast(broadcast(2, { expiresAt: at(30) }));
        expect(await store.findBroadcast("peer002@example.com", at(29))).toBeDefined();
        expect(await store.findBroadcast("peer002@example.com", at(30))).toBeUndefined();
        expect((await store.listBroadcasts("", 100, at(30))).map((b) => b.email)).not.toContain("peer002@example.com");
        expect(await store.extendBroadcast("fp2", undefined, at(30), at(90))).toEqual({ outcome: "not_found" });
      });

      it("should extend a live broadcast, check its id, and report a missing one", async () => {
        await store.putBroadcast(broadcast(3));
        const extended = await store.extendBroadcast("fp3", "b3", at(20), at(80));
        expect(extended).toEqual({ outcome: "extended", broadcast: broadcast(3, { lastSeen: at(20), expiresAt: at(80), changedAt: t0 }) });
        expect(await store.extendBroadcast("fp3", "stale-id", at(21), at(81))).toEqual({ outcome: "mismatch" });
        expect((await store.findBroadcast("peer003@example.com", at(21)))?.expiresAt).toEqual(at(80));
        expect(await store.extendBroadcast("fp-none", undefined, at(21), at(81))).toEqual({ outcome: "not_found" });
      });

      it("should list live broadcasts ordered by email after a key, up to a limit", async () => {
        for (const n of [14, 11, 13, 12]) await store.putBroadcast(broadcast(n));
        await store.putBroadcast(broadcast(15, { expiresAt: at(5) }));
        const page = await store.listBroadcasts("peer011@example.com", 2, at(10));
        expect(page.map((b) => b.email)).toEqual(["peer012@example.com", "peer013@example.com"]);
        const rest = await store.listBroadcasts("peer013@example.com", 100, at(10));
        expect(rest.map((b) => b.email)).toEqual(["peer014@example.com"]);
      });

      it("should sweep only expired broadcasts and count the online ones by family", async () => {
        await store.putBroadcast(broadcast(20, { expiresAt: at(5), addresses: ["127.0.0.2"] }));
        await store.putBroadcast(broadcast(21, { expiresAt: at(500), addresses: ["::1"], observedAddress: "::1" }));
        const before = await store.stats(at(10));
        // Read as of t0, when both were live: what the sweep deleted is gone even for that read.
        expect(await store.findBroadcast("peer020@example.com", at(0))).toBeDefined();
        const swept = await store.sweepExpired(at(10));
        expect(swept > 0).toBe(sweeps);
        expect(await store.findBroadcast("peer020@example.com", at(0)) === undefined).toBe(sweeps);
        expect(await store.findBroadcast("peer021@example.com", at(10))).toBeDefined();
        const after = await store.stats(at(10));
        expect(after.online).toBe(before.online);
        expect(after.onlineIpv6).toBeGreaterThanOrEqual(1);
        expect(after.registrations).toBeGreaterThanOrEqual(2);
      });

      it("should let a stream claim a broadcast, keep it online past the ttl's reach only while refreshed, and release it to a grace", async () => {
        await store.putBroadcast(broadcast(30, { expiresAt: at(3600) }));
        const claim = { holder: "relay-a", streamId: "s30", presenceUntil: at(30) };
        expect(await store.extendBroadcast("fp30", "b30", at(0), at(3600), claim)).toMatchObject({ outcome: "extended", broadcast: { holder: "relay-a", streamId: "s30", presenceUntil: at(30) } });
        // One write refreshes every broadcast the instance holds, and only those.
        await store.putBroadcast(broadcast(31, { expiresAt: at(3600) }));
        await store.extendBroadcast("fp31", undefined, at(0), at(3600), { holder: "relay-b", streamId: "s31", presenceUntil: at(30) });
        expect(await store.refreshPresence("relay-a", at(20), at(50))).toBe(1);
        expect((await store.findBroadcast("peer030@example.com", at(45)))?.presenceUntil).toEqual(at(50));
        // relay-b stopped refreshing (it died): its peer is offline once the grace runs out.
        expect(await store.findBroadcast("peer031@example.com", at(29))).toBeDefined();
        expect(await store.findBroadcast("peer031@example.com", at(30))).toBeUndefined();
        expect((await store.listBroadcasts("peer030@example.com", 10, at(30))).map((b) => b.email)).not.toContain("peer031@example.com");
        expect(await store.extendBroadcast("fp31", undefined, at(30), at(3630))).toEqual({ outcome: "not_found" });
        // Releasing another stream's token changes nothing; releasing the holder's sets the grace and lets go.
        expect(await store.releasePresence("relay-a", ["other"], at(40), at(70))).toBe(0);
        expect(await store.releasePresence("relay-a", ["s30"], at(40), at(70))).toBe(1);
        const released = await store.findBroadcast("peer030@example.com", at(69));
        expect(released).toMatchObject({ presenceUntil: at(70) });
        expect(released?.holder).toBeUndefined();
        expect(await store.refreshPresence("relay-a", at(45), at(75))).toBe(0);
        expect(await store.findBroadcast("peer030@example.com", at(70))).toBeUndefined();
      });

      it("should release every broadcast an instance holds at once (shutdown)", async () => {
        for (const n of [32, 33]) {
          await store.putBroadcast(broadcast(n, { expiresAt: at(3600) }));
          await store.extendBroadcast(`fp${n}`, undefined, at(0), at(3600), { holder: "relay-c", streamId: `s${n}`, presenceUntil: at(30) });
        }
        expect(await store.releasePresence("relay-c", undefined, at(10), at(40))).toBe(2);
        expect((await store.findBroadcastRecords(["peer032@example.com", "peer033@example.com"])).map((b) => [b.presenceUntil, b.holder])).toEqual([
          [at(40), undefined],
          [at(40), undefined],
        ]);
      });

      it("should withdraw at once, idempotently, only the broadcast named, and only for the stream holding it", async () => {
        await store.putBroadcast(broadcast(34, { expiresAt: at(3600) }));
        await store.extendBroadcast("fp34", undefined, at(0), at(3600), { holder: "relay-a", streamId: "s34", presenceUntil: at(30) });
        expect(await store.withdrawBroadcast("fp34", at(5), { broadcastId: "stale" })).toEqual({ outcome: "mismatch" });
        // A stream that no longer holds the broadcast (a newer one took over) does not withdraw it.
        expect(await store.withdrawBroadcast("fp34", at(5), { streamId: "older-stream" })).toEqual({ outcome: "not_online" });
        expect(await store.findBroadcast("peer034@example.com", at(5))).toBeDefined();
        const withdrawn = await store.withdrawBroadcast("fp34", at(6), { streamId: "s34" });
        expect(withdrawn).toMatchObject({ outcome: "withdrawn", broadcast: { withdrawnAt: at(6), presenceUntil: at(6), changedAt: at(6) } });
        expect(await store.findBroadcast("peer034@example.com", at(6))).toBeUndefined();
        expect(await store.withdrawBroadcast("fp34", at(7))).toEqual({ outcome: "not_online" });
        expect(await store.withdrawBroadcast("fp-none", at(7), { broadcastId: "b-none" })).toEqual({ outcome: "not_online" });
        // The record stays (watchers on other instances read why it went offline) until swept.
        const [record] = await store.findBroadcastRecords(["peer034@example.com"]);
        expect(record).toMatchObject({ email: "peer034@example.com", withdrawnAt: at(6) });
        expect(await store.sweepExpired(at(6))).toBeGreaterThanOrEqual(1);
        expect(await store.findBroadcastRecords(["peer034@example.com"])).toEqual([]);
        // A new Ready brings the peer back, with the withdraw forgotten.
        await store.putBroadcast(broadcast(34, { broadcastId: "b34-new", lastSeen: at(8), expiresAt: at(3600) }));
        const back = await store.findBroadcast("peer034@example.com", at(8));
        expect(back).toMatchObject({ broadcastId: "b34-new", changedAt: at(8) });
        expect(back?.withdrawnAt).toBeUndefined();
      });

      it("should report Ready and withdraws to a change feed, not heartbeats", async () => {
        const seen: string[] = [];
        const feed = store.watchChanges((changes) => seen.push(...changes.map((change) => change.email)));
        try {
          // Following within the bound the Lookup cache trusts (a first poll, or a change stream).
          await until(() => feed.lagMs <= 2000);
          await store.putBroadcast(broadcast(40, { lastSeen: new Date(), expiresAt: new Date(Date.now() + 3_600_000) }));
          await until(() => seen.includes("peer040@example.com"));
          seen.length = 0;
          await store.extendBroadcast("fp40", undefined, new Date(), new Date(Date.now() + 3_600_000), { holder: "relay-a", streamId: "s40", presenceUntil: new Date(Date.now() + 30_000) });
          await store.withdrawBroadcast("fp40", new Date());
          await until(() => seen.includes("peer040@example.com"));
          expect(["local", "poll", "change-stream"]).toContain(feed.mode);
        } finally {
          await feed.stop();
        }
      });

      it("should answer ping when it can serve", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });
  });
}

import { describe, expect, it } from "vitest";
import { defaultSliceSize } from "../../shared/in-slices.js";
import { at, broadcast, describeStoreContract } from "./store-contract.js";
import { MemoryStore } from "./memory-store.js";
import type { ExtendResult } from "./store.js";

// The store contract on the memory store, in process; test/store-contract.test.ts runs it on the
// MongoDB store against a real server.
describeStoreContract("MemoryStore", async () => ({ store: new MemoryStore(), sweeps: true, done: async () => {} }));

describe("MemoryStore passes over every entry", () => {
  const holder = "relay-a";
  async function held(store: MemoryStore, count: number): Promise<void> {
    for (let n = 0; n < count; n++) {
      await store.putBroadcast(broadcast(n, { expiresAt: at(3600) }));
      await store.extendBroadcast(`fp${n}`, undefined, at(0), at(3600), { holder, streamId: `s${n}`, presenceUntil: at(30) });
    }
  }

  it("should let other callbacks run during a refresh of many held broadcasts", async () => {
    const store = new MemoryStore();
    await held(store, defaultSliceSize * 2 + 1);
    let refreshedWhenOtherRan: boolean | undefined;
    let refreshed = false;
    setImmediate(() => (refreshedWhenOtherRan = refreshed));
    const refresh = store.refreshPresence(holder, at(10), at(40)).then((count) => ((refreshed = true), count));
    expect(await refresh).toBe(defaultSliceSize * 2 + 1);
    expect(refreshedWhenOtherRan).toBe(false);
    expect((await store.findBroadcastRecords(["peer000@example.com", `peer${defaultSliceSize * 2}@example.com`])).map((b) => b.presenceUntil)).toEqual([at(40), at(40)]);
  });

  it("should not move back the deadline of a broadcast claimed again while a refresh runs", async () => {
    const store = new MemoryStore();
    await held(store, defaultSliceSize * 2);
    const last = `fp${defaultSliceSize * 2 - 1}`;
    // A beat between two slices, later than the refresh began: its deadline is the later one.
    setImmediate(() => void store.extendBroadcast(last, undefined, at(12), at(3612), { holder, streamId: "s-new", presenceUntil: at(42) }));
    const refresh = store.refreshPresence(holder, at(10), at(40));
    expect(await refresh).toBe(defaultSliceSize * 2);
    expect((await store.findBroadcastRecords([`peer${defaultSliceSize * 2 - 1}@example.com`]))[0]?.presenceUntil).toEqual(at(42));
  });

  it("should keep a broadcast put for the same email under another certificate while a sweep runs", async () => {
    const store = new MemoryStore();
    const count = defaultSliceSize * 2;
    for (let n = 0; n < count; n++) await store.putBroadcast(broadcast(n, { expiresAt: at(5) }));
    // The last peer's email announced by a new certificate (the old registration retired) before
    // the sweep reaches the old broadcast: sweeping the old one leaves the new one findable.
    const again = broadcast(count - 1, { fingerprint: "fp-new", broadcastId: "again", lastSeen: at(10), expiresAt: at(3600) });
    setImmediate(() => void store.putBroadcast(again));
    const sweep = store.sweepExpired(at(10));
    expect(await sweep).toBe(count);
    expect((await store.findBroadcast(again.email, at(11)))?.broadcastId).toBe("again");
  });

  it("should count online peers by family over many slices, letting other callbacks run", async () => {
    const store = new MemoryStore();
    const count = defaultSliceSize * 2 + 3;
    // A third announce IPv6 only (and were seen over IPv6), a third IPv4 only, a third both; one in ten expired.
    for (let n = 0; n < count; n++) {
      const kind = n % 3;
      const addresses = kind === 0 ? ["::1"] : kind === 1 ? ["127.0.0.2"] : ["127.0.0.2", "::1"];
      await store.putBroadcast(broadcast(n, { addresses, observedAddress: kind === 0 ? "::1" : "127.0.0.1", expiresAt: n % 10 === 0 ? at(5) : at(3600) }));
    }
    const live = [...Array(count).keys()].filter((n) => n % 10 !== 0);
    let doneWhenOtherRan: boolean | undefined;
    let done = false;
    setImmediate(() => (doneWhenOtherRan = done));
    const stats = await store.stats(at(10)).finally(() => (done = true));
    expect(doneWhenOtherRan).toBe(false);
    expect(stats).toEqual({
      registrations: 0,
      online: live.length,
      onlineIpv4: live.filter((n) => n % 3 !== 0).length,
      onlineIpv6: live.filter((n) => n % 3 !== 1).length,
    });
  });
});

describe("MemoryStore List pages", () => {
  it("should page through live broadcasts in email order after sweeps and re-announces, each email once", async () => {
    const store = new MemoryStore();
    // Put out of order; every third expires at 5 s.
    for (const n of [7, 3, 29, 0, 15, 22, 1, 9, 18, 26, 4, 11, 28, 13, 20, 2, 5, 24, 17, 8]) await store.putBroadcast(broadcast(n, { expiresAt: at(n % 3 === 0 ? 5 : 3600) }));
    await store.sweepExpired(at(10));
    // Peer 9's email announced again by a new certificate: one entry, the new broadcast.
    await store.putBroadcast(broadcast(9, { fingerprint: "fp-new", broadcastId: "again", expiresAt: at(3600) }));
    // Peer 20's certificate announced under another email (its registration was replaced): it is
    // listed under the new email only.
    await store.putBroadcast(broadcast(20, { email: "zed@example.com", expiresAt: at(3600) }));
    const pages: string[][] = [];
    let cursor = "";
    for (;;) {
      const page = await store.listBroadcasts(cursor, 3, at(11));
      if (page.length === 0) break;
      pages.push(page.map((b) => b.email));
      cursor = page.at(-1)!.email;
    }
    const live = [7, 29, 22, 1, 26, 4, 11, 28, 13, 2, 5, 17, 8].map((n) => broadcast(n).email).concat(broadcast(9).email, "zed@example.com").sort();
    expect(pages.flat()).toEqual(live);
    expect(pages.every((page) => page.length <= 3)).toBe(true);
    expect((await store.listBroadcasts(broadcast(8).email, 1, at(11)))[0]?.broadcastId).toBe("again");
  });
});

describe("MemoryStore records", () => {
  it("should keep its broadcasts apart from the Dates it was given and the records it returned", async () => {
    const store = new MemoryStore();
    const put = broadcast(1, { expiresAt: at(3600) });
    await store.putBroadcast(put);
    const claim = { holder: "relay-a", streamId: "s1", presenceUntil: at(30) };
    const extended = await store.extendBroadcast("fp1", undefined, at(10), at(3610), claim);
    expect(extended.outcome).toBe("extended");
    // What callers hold, changed afterwards, changes nothing in the store.
    put.expiresAt.setTime(at(1).getTime());
    claim.presenceUntil.setTime(at(1).getTime());
    (extended as Extract<ExtendResult, { outcome: "extended" }>).broadcast.expiresAt.setTime(at(1).getTime());
    const found = await store.findBroadcast(put.email, at(20));
    expect(found?.expiresAt).toEqual(at(3610));
    expect(found?.presenceUntil).toEqual(at(30));
    expect(found?.lastSeen).toEqual(at(10));
  });

  it("should show presenceUntil, holder, streamId and withdrawnAt only once set, and hold them after a release", async () => {
    const store = new MemoryStore();
    await store.putBroadcast(broadcast(1, { expiresAt: at(3600) }));
    const [announced] = await store.findBroadcastRecords([broadcast(1).email]);
    expect(announced).not.toHaveProperty("presenceUntil");
    expect(announced).not.toHaveProperty("holder");
    expect(announced).not.toHaveProperty("streamId");
    expect(announced).not.toHaveProperty("withdrawnAt");
    await store.extendBroadcast("fp1", undefined, at(10), at(3610), { holder: "relay-a", streamId: "s1", presenceUntil: at(30) });
    expect(await store.releasePresence("relay-a", ["s1"], at(12), at(42))).toBe(1);
    const [released] = await store.findBroadcastRecords([broadcast(1).email]);
    expect(released).not.toHaveProperty("holder");
    expect(released).not.toHaveProperty("streamId");
    expect(released?.presenceUntil).toEqual(at(42));
    expect(await store.findBroadcast(broadcast(1).email, at(42))).toBeUndefined();
  });
});

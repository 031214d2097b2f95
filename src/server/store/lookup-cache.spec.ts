import { describe, expect, it } from "vitest";
import { at, broadcast } from "./store-contract.js";
import { cacheLookups, defaultMaxFeedLagMs } from "./lookup-cache.js";
import { MemoryStore } from "./memory-store.js";
import type { BroadcastChange, BroadcastRecord, ChangeFeed } from "./store.js";

// The Lookup cache on the in-process store, with a change feed the test drives: it reports a
// change (or a resync) when the test says so, and is as far behind as the test sets. Writes made
// on `database` directly are another instance's: the cache hears of them only through the feed.

/** A MemoryStore whose change feed the test drives, counting findBroadcast reads. */
class DrivenStore extends MemoryStore {
  reads = 0;
  feedsStarted = 0;
  lagMs = 0;
  /** While set, findBroadcast waits for it after reading, before it answers. */
  gate: Promise<void> | undefined;
  private listeners: { onChange: (changes: BroadcastChange[]) => void; onResync?: () => void }[] = [];

  override watchChanges(onChange: (changes: BroadcastChange[]) => void, onResync?: () => void): ChangeFeed {
    this.feedsStarted++;
    const listener = { onChange, ...(onResync === undefined ? {} : { onResync }) };
    this.listeners.push(listener);
    const store = this;
    return {
      mode: "driven",
      get lagMs() {
        return store.lagMs;
      },
      stop: async () => {
        this.listeners = this.listeners.filter((other) => other !== listener);
      },
    };
  }

  report(...emails: string[]): void {
    for (const listener of this.listeners) listener.onChange(emails.map((email) => ({ email })));
  }

  resync(): void {
    for (const listener of this.listeners) listener.onResync?.();
  }

  override async findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined> {
    this.reads++;
    const found = await super.findBroadcast(email, now);
    await this.gate;
    return found;
  }
}

const graceMs = 30_000;

function setUp(options: { maxEntries?: number; maxFeedLagMs?: number } = {}) {
  const database = new DrivenStore();
  const lookups: boolean[] = [];
  const cached = cacheLookups(database, { maxEntries: options.maxEntries ?? 100, presenceGraceMs: graceMs, onLookup: (hit) => lookups.push(hit), ...(options.maxFeedLagMs === undefined ? {} : { maxFeedLagMs: options.maxFeedLagMs }) });
  const lookup = (n: number, seconds = 1) => cached.findBroadcast(broadcast(n).email, at(seconds));
  return { database, cached, lookups, lookup };
}

describe("cacheLookups", () => {
  it("should answer a second Lookup of a live broadcast without reading the store", async () => {
    const { database, lookup, lookups } = setUp();
    await database.putBroadcast(broadcast(1));
    expect(await lookup(1)).toEqual(broadcast(1));
    expect(await lookup(1, 2)).toEqual(broadcast(1));
    expect(database.reads).toBe(1);
    expect(lookups).toEqual([false, true]);
  });

  it("should keep another instance's Ready from Lookup until the feed reports it, then read it", async () => {
    const { database, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await lookup(1);
    await database.putBroadcast(broadcast(1, { broadcastId: "b1-new", port: 9 }));
    // Within the feed's lag the cache answers what it read: the bound it promises.
    expect((await lookup(1, 2))?.port).toBe(1001);
    database.report(broadcast(1).email);
    expect((await lookup(1, 2))?.port).toBe(9);
    expect(database.reads).toBe(2);
  });

  it("should not answer for a broadcast another instance withdrew once the feed reports it", async () => {
    const { database, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await lookup(1);
    await database.withdrawBroadcast("fp1", at(2));
    database.report(broadcast(1).email);
    expect(await lookup(1, 3)).toBeUndefined();
  });

  it.each([
    ["a Ready", (cached: MemoryStore) => cached.putBroadcast(broadcast(1, { broadcastId: "b1-new", port: 9 })), 9],
    ["an Offline", (cached: MemoryStore) => cached.withdrawBroadcast("fp1", at(2)), undefined],
    ["a heartbeat", (cached: MemoryStore) => cached.extendBroadcast("fp1", undefined, at(2), at(100)), 1001],
  ])("should read its own %s at once, before the feed reports it", async (_, write, port) => {
    const { database, cached, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await lookup(1);
    await write(cached as unknown as MemoryStore);
    expect((await lookup(1, 3))?.port).toBe(port);
    expect(database.reads).toBe(2);
  });

  it("should take a heartbeat's new expiry from the store, not the cache, on its own instance", async () => {
    const { database, cached, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await lookup(1);
    await cached.extendBroadcast("fp1", undefined, at(50), at(200));
    expect((await lookup(1, 70))?.expiresAt).toEqual(at(200));
  });

  it("should read the store on every Lookup while the feed is further behind than allowed, keeping nothing", async () => {
    const { database, lookup, lookups } = setUp();
    await database.putBroadcast(broadcast(1));
    database.lagMs = defaultMaxFeedLagMs + 1;
    await lookup(1);
    await lookup(1);
    database.lagMs = 0;
    await lookup(1);
    expect(database.reads).toBe(3);
    expect(lookups).toEqual([false, false, false]);
    // Now kept.
    await lookup(1);
    expect(database.reads).toBe(3);
  });

  it("should not keep a read that a reported change overtook", async () => {
    const { database, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    let open!: () => void;
    database.gate = new Promise((resolve) => (open = resolve));
    const first = lookup(1);
    await Promise.resolve();
    await database.putBroadcast(broadcast(1, { broadcastId: "b1-new", port: 9 }));
    database.report(broadcast(1).email);
    open();
    database.gate = undefined;
    // The overtaken read still answers its own call (it was read after the call was made)...
    expect((await first)?.port).toBe(1001);
    // ...but is not kept: the next Lookup reads the new broadcast.
    expect((await lookup(1, 2))?.port).toBe(9);
    expect(database.reads).toBe(2);
  });

  it("should read an entry again at its own deadline, and within the presence grace of its read", async () => {
    const { database, lookup } = setUp();
    // Live until at(20) by its presence bound; and one bound only by the ttl (a Ready alone).
    await database.putBroadcast(broadcast(1, { presenceUntil: at(20), expiresAt: at(3600) }));
    await database.putBroadcast(broadcast(2, { expiresAt: at(3600) }));
    await lookup(1, 1);
    await lookup(2, 1);
    // Another instance's stream takes hold of broadcast 2 (no change event) and is lost at once:
    // its presence lapses a grace later, at(35). Read at(1), the entry is read again by at(31).
    await database.extendBroadcast("fp2", undefined, at(5), at(3605), { holder: "other", streamId: "s", presenceUntil: at(5 + graceMs / 1000) });
    expect(await lookup(1, 19)).toBeDefined();
    expect(await lookup(2, 30)).toBeDefined();
    expect(database.reads).toBe(2);
    expect(await lookup(1, 20)).toBeUndefined();
    expect(database.reads).toBe(3);
    expect((await lookup(2, 31))?.presenceUntil).toEqual(at(35));
    expect(database.reads).toBe(4);
    expect(await lookup(2, 35)).toBeUndefined();
    expect(database.reads).toBe(5);
  });

  it("should drop every entry when the feed may have missed changes", async () => {
    const { database, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await database.putBroadcast(broadcast(2));
    await lookup(1);
    await lookup(2);
    database.resync();
    await lookup(1);
    await lookup(2);
    expect(database.reads).toBe(4);
  });

  it("should not keep a Lookup of a peer that is not online", async () => {
    const { database, lookup } = setUp();
    expect(await lookup(1)).toBeUndefined();
    await database.putBroadcast(broadcast(1));
    // Not reported by the feed yet: a peer coming online is never hidden by the cache.
    expect(await lookup(1)).toBeDefined();
    expect(database.reads).toBe(2);
  });

  it("should keep at most maxEntries broadcasts, dropping the least recently looked up", async () => {
    const { database, lookup } = setUp({ maxEntries: 2 });
    for (const n of [1, 2, 3]) await database.putBroadcast(broadcast(n));
    await lookup(1);
    await lookup(2);
    await lookup(1);
    await lookup(3);
    expect(database.reads).toBe(3);
    await lookup(1);
    expect(database.reads).toBe(3);
    await lookup(2);
    expect(database.reads).toBe(4);
  });

  it("should follow one feed for itself and every watchChanges of the store", async () => {
    const { database, cached, lookup } = setUp();
    const seen: string[] = [];
    let resyncs = 0;
    const feed = cached.watchChanges(
      (changes) => seen.push(...changes.map((change) => change.email)),
      () => resyncs++,
    );
    await lookup(1);
    expect(database.feedsStarted).toBe(1);
    database.lagMs = 7;
    expect(feed.lagMs).toBe(7);
    database.report("a@example.com");
    database.resync();
    await feed.stop();
    database.report("b@example.com");
    expect(seen).toEqual(["a@example.com"]);
    expect(resyncs).toBe(1);
  });

  it("should read the store on every Lookup once stopped", async () => {
    const { database, cached, lookup } = setUp();
    await database.putBroadcast(broadcast(1));
    await lookup(1);
    await cached.stopCache();
    await lookup(1);
    await lookup(1);
    expect(database.reads).toBe(3);
  });
});

import { LRUCache } from "lru-cache";
import { deadlineOf, isLive } from "../service/broadcast-rules.js";
import { storeOperations, type BroadcastChange, type BroadcastRecord, type ChangeFeed, type RelayStore } from "./store.js";

/** Options of {@link cacheLookups}. */
export interface LookupCacheOptions {
  /** Most broadcasts kept; the least recently looked up go first. At least 1. */
  maxEntries: number;
  /**
   * The relay's presence grace, ms: an entry is read again at least this often. A Heartbeat
   * stream that takes hold of a broadcast on another instance brings its presence deadline
   * forward without a change event (broadcast-rules.ts), and a read within the grace learns it
   * before that deadline can pass.
   */
  presenceGraceMs: number;
  /**
   * Most the change feed may be behind while entries are served, ms. Default 2000, the bound the
   * relay gives Watch for a change on another instance: a Lookup answered from the cache is at
   * most this much older than a read of the database. Beyond it (a poll failing or slow, the
   * feed starting) every Lookup reads the database.
   */
  maxFeedLagMs?: number;
  /** Called once per findBroadcast: true when the cache answered. */
  onLookup?: (hit: boolean) => void;
}

/** Default of {@link LookupCacheOptions.maxFeedLagMs}. */
export const defaultMaxFeedLagMs = 2_000;

/** A store whose Lookups are cached: {@link cacheLookups}. */
export interface CachedStore extends RelayStore {
  /**
   * Stops the change feed and empties the cache; findBroadcast then reads the store every time.
   * The relay server calls it when it stops (it does not close the store it was given).
   */
  stopCache(): Promise<void>;
}

interface Entry {
  record: BroadcastRecord;
  /** The cache answers for this entry until then, ms: its deadline, or its read plus the grace. */
  until: number;
}

/**
 * Keeps the live broadcasts that Lookup reads in memory, coherent with the store through its
 * change feed, as a watch cache does (etcd's, Kubernetes'): a Lookup it can answer costs no
 * database round trip. Only findBroadcast is cached; every other call goes to store.
 *
 * Why an entry is never wrong by more than the feed's lag:
 * - Ready, Offline and the clean end of a Heartbeat stream set changedAt, which the feed reports
 *   (from any instance): the entry is dropped. This instance's own writes drop it at once.
 * - Heartbeats and presence refreshes only move deadlines later: the entry's older deadlines
 *   make it stop answering early, never late. The one write that brings a deadline forward
 *   without a change event, a stream taking hold of a broadcast, is learnt by reading each entry
 *   again within the presence grace.
 * - A read that a change overtakes while in flight is not kept, and when the feed may have
 *   missed changes (its resync), every entry goes.
 * Only live broadcasts are kept, each checked for liveness at the Lookup's own time; a Lookup
 * of an email not online always reads the store.
 *
 * One change feed serves the cache and every watchChanges of the wrapped store (the Watch hub),
 * so the database is polled once per process.
 */
export function cacheLookups(store: RelayStore, options: LookupCacheOptions): CachedStore {
  const { presenceGraceMs } = options;
  const maxFeedLagMs = options.maxFeedLagMs ?? defaultMaxFeedLagMs;
  const entries = new LRUCache<string, Entry>({ max: options.maxEntries });
  /** Reads in flight, by email: a change to that email while they are out bumps generation. */
  const reads = new Map<string, { generation: number; count: number }>();
  const listeners = new Set<{ onChange: (changes: BroadcastChange[]) => void; onResync: (() => void) | undefined }>();
  let feed: ChangeFeed | undefined;
  let closed = false;

  function invalidate(email: string): void {
    entries.delete(email);
    const read = reads.get(email);
    if (read !== undefined) read.generation++;
  }

  function following(): ChangeFeed {
    feed ??= store.watchChanges(
      (changes) => {
        for (const { email } of changes) invalidate(email);
        for (const listener of listeners) listener.onChange(changes);
      },
      () => {
        entries.clear();
        for (const read of reads.values()) read.generation++;
        for (const listener of listeners) listener.onResync?.();
      },
    );
    return feed;
  }

  /** Whether entries may be served, and reads kept: the feed reports changes within the bound. */
  function current(): boolean {
    return !closed && following().lagMs <= maxFeedLagMs;
  }

  async function findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined> {
    const nowMs = now.getTime();
    const keep = current();
    if (keep) {
      const entry = entries.get(email);
      if (entry !== undefined && entry.until > nowMs && isLive(entry.record, now)) {
        options.onLookup?.(true);
        return entry.record;
      }
    }
    options.onLookup?.(false);
    let read = reads.get(email);
    if (read === undefined) reads.set(email, (read = { generation: 0, count: 0 }));
    read.count++;
    const generation = read.generation;
    try {
      const record = await store.findBroadcast(email, now);
      // Kept only when no change to this email was reported while it was read.
      if (record !== undefined && keep && read.generation === generation) {
        entries.set(email, { record, until: Math.min(deadlineOf(record), nowMs + presenceGraceMs) });
      }
      return record;
    } finally {
      if (--read.count === 0) reads.delete(email);
    }
  }

  /** Drops the entry of the broadcast a write by fingerprint returns, once it has landed. */
  function dropChanged<T extends { outcome: string; broadcast?: BroadcastRecord }>(result: T): T {
    if (result.broadcast !== undefined) invalidate(result.broadcast.email);
    return result;
  }

  const passThrough = Object.fromEntries(storeOperations.map((operation) => [operation, (store[operation] as (...args: unknown[]) => unknown).bind(store)])) as Pick<RelayStore, (typeof storeOperations)[number]>;
  return {
    ...passThrough,
    kind: store.kind,
    findBroadcast,
    // Ready: the entry goes before the write (no Lookup reads it stale meanwhile) and after it
    // (a read that began before the write landed is not kept).
    async putBroadcast(broadcast) {
      invalidate(broadcast.email);
      await store.putBroadcast(broadcast);
      invalidate(broadcast.email);
    },
    // Keyed by fingerprint: the entry to drop is the one of the broadcast the write returns.
    extendBroadcast: async (fingerprint, broadcastId, now, expiresAt, claim) => dropChanged(await store.extendBroadcast(fingerprint, broadcastId, now, expiresAt, claim)),
    withdrawBroadcast: async (fingerprint, now, condition) => dropChanged(await store.withdrawBroadcast(fingerprint, now, condition)),
    watchChanges(onChange, onResync) {
      const shared = following();
      const listener = { onChange, onResync };
      listeners.add(listener);
      return {
        get mode() {
          return shared.mode;
        },
        get lagMs() {
          return shared.lagMs;
        },
        async stop() {
          listeners.delete(listener);
        },
      };
    },
    async stopCache() {
      closed = true;
      entries.clear();
      await feed?.stop();
    },
    async close() {
      await this.stopCache();
      await store.close();
    },
  };
}

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { MongoStore, type MongoStoreOptions } from "../src/server/store/mongo-store.js";
import { at, broadcast } from "../src/server/store/store-contract.js";
import type { BroadcastRecord } from "../src/server/store/store.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";

/**
 * MongoStore's Lookup read (findBroadcast) coalesces concurrent calls into one query, against a
 * real FerretDB. Queries are counted by the server itself (serverStatus's per-command counts),
 * so this runs on the FerretDB the harness starts, not on a shared MONGODB_URI server where
 * other tests' queries would be counted too (and which cannot be killed).
 */
const onFerretDB = process.env.MONGODB_URI === undefined;

// Fixtures: live broadcasts 0–39, expired 40–59, withdrawn 60–69, never announced 70–89.
const live = range(0, 40);
const expired = range(40, 60);
const withdrawn = range(60, 70);
const missing = range(70, 90);
const now = at(30);
const email = (n: number) => broadcast(n).email;
/** What findBroadcast should answer for fixture n at time `when`. */
const expected = (n: number, when = now): BroadcastRecord | undefined => (n < 40 && when < at(60) ? broadcast(n) : undefined);

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Lets pending promise jobs, ticks and I/O callbacks run: the next turn of the event loop. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe.runIf(onFerretDB)("MongoStore's Lookup reads on FerretDB", () => {
  let ferret: FerretDB;
  let database: MongoClient;
  const stores: MongoStore[] = [];

  /** The `find` commands the server has answered so far, as it counts them. */
  async function finds(): Promise<number> {
    const status = await database.db("admin").command({ serverStatus: 1 });
    return Number((status as { metrics: { commands: Record<string, { total: number }> } }).metrics.commands.find?.total ?? 0);
  }

  async function openStore(options: Partial<MongoStoreOptions> = {}): Promise<MongoStore> {
    // Batching is off by default (lookupBatchSize 1): the bound an operator would set on MongoDB.
    const store = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }), serverSelectionTimeoutMS: 1000, lookupBatchSize: 256, ...options });
    stores.push(store);
    await store.ping();
    return store;
  }

  beforeAll(async () => {
    ferret = await startFerretDB({ name: "store-lookups" });
    database = new MongoClient(ferret.uri, { serverSelectionTimeoutMS: 5000 });
    const store = await openStore();
    for (const n of live) await store.putBroadcast(broadcast(n));
    for (const n of expired) await store.putBroadcast(broadcast(n, { expiresAt: at(10) }));
    for (const n of withdrawn) await store.putBroadcast(broadcast(n, { presenceUntil: at(20), withdrawnAt: at(20) }));
  });

  afterAll(async () => {
    for (const store of stores) await store.close();
    await database?.close();
    await ferret?.stop();
  });

  it("should answer each of many concurrent calls with its own email's live broadcast or nothing, in one query per batch", async () => {
    const store = await openStore();
    const fixtures = [...live, ...expired, ...withdrawn, ...missing];
    // Every email asked for, most of them more than once, in a shuffled order; some at a later
    // time (each caller's own `now`), when even the live broadcasts have expired.
    const asks: Array<{ n: number; when: Date }> = [];
    for (const [i, n] of fixtures.entries()) for (let k = 0; k <= i % 3; k++) asks.push({ n, when: (i + k) % 5 === 0 ? at(70) : now });
    asks.sort((a, b) => ((a.n * 37) % 101) - ((b.n * 37) % 101));
    expect(asks.length).toBeGreaterThan(150);

    const before = await finds();
    // The first call goes out alone; the others, made while it is in flight, wait for it and
    // then go out together.
    const first = store.findBroadcast(email(live[0]!), now);
    await nextTurn();
    const answers = await Promise.all(asks.map(({ n, when }) => store.findBroadcast(email(n), when)));
    expect(await first).toEqual(broadcast(live[0]!));
    expect(answers).toEqual(asks.map(({ n, when }) => expected(n, when)));
    expect(answers.filter((answer) => answer !== undefined).length).toBeGreaterThan(40);
    expect(await finds()).toBe(before + 2);
  });

  it("should put at most lookupBatchSize calls in one query", async () => {
    const store = await openStore({ lookupBatchSize: 16, lookupInMinimum: 2 });
    const fixtures = [...live, ...expired, ...withdrawn, ...missing];
    const before = await finds();
    const answers = await Promise.all(fixtures.map((n) => store.findBroadcast(email(n), now)));
    expect(answers).toEqual(fixtures.map((n) => expected(n)));
    expect(await finds()).toBe(before + Math.ceil(fixtures.length / 16));
  });

  it("should read a batch of fewer than lookupInMinimum emails by `_id`, one query each", async () => {
    // FerretDB decodes every stored broadcast for `$in`: for a few emails, reads by `_id` cost it less.
    const store = await openStore();
    const fixtures = [0, 1, 2, 45, 65, 75];
    const before = await finds();
    const answers = await Promise.all([...fixtures, 0, 45].map((n) => store.findBroadcast(email(n), now)));
    expect(answers).toEqual([...fixtures, 0, 45].map((n) => expected(n)));
    expect(await finds()).toBe(before + fixtures.length);
  });

  it("should read every call by `_id` on its own with a lookupBatchSize of 1", async () => {
    const store = await openStore({ lookupBatchSize: 1 });
    const fixtures = [...live, ...expired, ...withdrawn, ...missing];
    const before = await finds();
    const answers = await Promise.all([...fixtures, ...fixtures].map((n) => store.findBroadcast(email(n), now)));
    expect(answers).toEqual([...fixtures, ...fixtures].map((n) => expected(n)));
    expect(await finds()).toBe(before + 2 * fixtures.length);
  });

  it("should send a call made while the store is idle at once, with no timer to wait for", async () => {
    const store = await openStore();
    expect(await store.findBroadcast(email(1), now)).toEqual(broadcast(1));
    const before = await finds();
    const realSetTimeout = globalThis.setTimeout;
    vi.useFakeTimers({ toFake: ["setTimeout", "setInterval", "setImmediate"] });
    try {
      // With timers stopped, a call that waited for one would never be answered.
      const stopped = new Promise<never>((_, reject) => realSetTimeout(() => reject(new Error("no answer within 5 s with timers stopped")), 5000));
      expect(await Promise.race([store.findBroadcast(email(2), now), stopped])).toEqual(broadcast(2));
    } finally {
      vi.useRealTimers();
    }
    expect(await finds()).toBe(before + 1);
  });

  it("should reject every call of a failed query with that query's error, then serve calls again once the database is back", async () => {
    const store = await openStore();
    await ferret.kill();
    try {
      const outcome = (n: number) => store.findBroadcast(email(n), now).then(() => "answered", (error: unknown) => error);
      // Two batches: six emails read by `_id` (in parallel), then forty by `$in`.
      const few = [0, 1, 2, 45, 65, 75].map(outcome);
      await nextTurn();
      const many = range(0, 40).map(outcome);
      const [fewErrors, manyErrors] = [await Promise.all(few), await Promise.all(many)];
      for (const errors of [fewErrors, manyErrors]) {
        // The driver's error, or a bare Node socket error (EPIPE) for a query written to a socket
        // the server just closed: the relay maps both to unavailable (withStoreErrors).
        expect(errors[0]).toBeInstanceOf(Error);
        expect(new Set(errors).size).toBe(1);
      }
      expect(fewErrors[0]).not.toBe(manyErrors[0]);
    } finally {
      await ferret.restart();
    }
    // The driver finds the server again within a heartbeat or so; until then calls fail fast.
    await expect.poll(() => store.findBroadcast(email(3), now).catch((error: unknown) => error), { timeout: 15_000, interval: 200 }).toEqual(broadcast(3));
  });
});

// The polling change feed on a real server without change streams (FerretDB): it reads the change
// log, says how far behind it is (which the Lookup cache trusts), and resyncs its readers when a
// poll cannot read every change.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MongoClient, type Collection } from "mongodb";
import { changeLogRetentionMs, startMongoChangeFeed, type ChangedDocument, type ChangeLogDocument } from "../src/server/store/mongo-change-feed.js";
import { ManualClock, settle } from "../src/shared/manual-clock.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { capturedLogger } from "./support/logs.js";
import { changesCollection, MongoStore } from "../src/server/store/mongo-store.js";
import { at, broadcast } from "../src/server/store/store-contract.js";

/** FerretDB runs unless MONGODB_URI names a MongoDB, whose replica sets have change streams. */
const onFerretDB = process.env.MONGODB_URI === undefined;

/** Resolves once check() holds, polling every 10 ms; fails after 5 s. */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("not within 5 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.runIf(onFerretDB)("the polling change feed on FerretDB", () => {
  let ferret: FerretDB;
  let client: MongoClient;
  let broadcasts: Collection<ChangedDocument>;
  let changes: Collection<ChangeLogDocument>;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "change-feed" });
    client = await MongoClient.connect(ferret.uri);
    broadcasts = client.db().collection<ChangedDocument>("broadcasts");
    changes = client.db().collection<ChangeLogDocument>("changes");
  });
  afterAll(async () => {
    await client?.close();
    await ferret?.stop();
  });

  it("should be infinitely behind until its first poll, then behind by the time since the last poll began, growing while polls fail", async () => {
    const clock = new ManualClock();
    let failing = false;
    let resyncs = 0;
    const feed = startMongoChangeFeed({
      onResync: () => resyncs++,
      broadcasts: async () => broadcasts,
      changes: async () => {
        if (failing) throw new Error("the database is down");
        return changes;
      },
      onChange: () => {},
      clock,
      logger: capturedLogger().logger,
    });
    try {
      expect(feed.lagMs).toBe(Number.POSITIVE_INFINITY);
      await until(() => feed.mode === "poll" && feed.lagMs === 0);
      failing = true;
      await clock.advance(500); // the next poll, which fails
      await settle();
      await clock.advance(2500);
      expect(feed.lagMs).toBe(3000);
      failing = false;
      await clock.advance(500); // a poll that succeeds
      await until(() => feed.lagMs === 0);
      expect(resyncs).toBe(0);
      // Failing for longer than the change log is kept: the next poll may have lost entries.
      failing = true;
      await clock.advance(changeLogRetentionMs);
      failing = false;
      await clock.advance(500);
      await until(() => feed.lagMs === 0);
      expect(resyncs).toBe(1);
    } finally {
      await feed.stop();
    }
    expect(feed.lagMs).toBe(Number.POSITIVE_INFINITY);
  });

  it("should report changes, and tell its readers to read again when one poll finds more than it reads", async () => {
    const clock = new ManualClock();
    const seen: string[] = [];
    let resyncs = 0;
    const feed = startMongoChangeFeed({
      broadcasts: async () => broadcasts,
      changes: async () => changes,
      onChange: (reported) => seen.push(...reported.map((change) => change.email)),
      onResync: () => resyncs++,
      clock,
      logger: capturedLogger().logger,
      pollPageSize: 2,
    });
    try {
      await until(() => feed.lagMs === 0);
      await changes.insertMany([1, 2, 3].map((n) => ({ email: `few-${n}@example.com`, at: new Date(clock.now() + n) })));
      await clock.advance(500);
      await until(() => seen.length === 3);
      expect(resyncs).toBe(0);
      // Ten pages of two hold 20 rows: 25 changes since the last poll are more than one reads.
      await changes.insertMany(Array.from({ length: 25 }, (_, n) => ({ email: `many-${n}@example.com`, at: new Date(clock.now() + 10 + n) })));
      await clock.advance(500);
      await until(() => resyncs === 1);
      // The poll reported what its pages held and skipped the rest, which the resync covers.
      const reported = seen.filter((email) => email.startsWith("many-")).length;
      expect(reported).toBeGreaterThan(0);
      expect(reported).toBeLessThan(25);
    } finally {
      await feed.stop();
    }
  });
});

describe("the change log of the MongoDB store", () => {
  it("should log each Ready and withdraw, not heartbeats, and sweep entries past the log's retention", async () => {
    const ferret = await startFerretDB({ name: "change-log" });
    const store = await MongoStore.connect({ uri: ferret.uri, logger: capturedLogger().logger });
    const client = await MongoClient.connect(ferret.uri);
    try {
      const log = client.db().collection<ChangeLogDocument>(changesCollection);
      const entries = async () => (await log.find({}, { sort: { at: 1 } }).toArray()).map((entry) => `${entry.email} ${(entry.at.getTime() - at(0).getTime()) / 1000}`);
      await store.putBroadcast(broadcast(1, { lastSeen: at(0), expiresAt: at(3600) }));
      await store.extendBroadcast("fp1", undefined, at(10), at(3610));
      await store.withdrawBroadcast("fp1", at(20));
      await store.putBroadcast(broadcast(2, { lastSeen: at(200), expiresAt: at(3600) }));
      expect(await entries()).toEqual(["peer001@example.com 0", "peer001@example.com 20", "peer002@example.com 200"]);
      // A sweep of what was offline before 130 s keeps the log from 120 s before that on.
      await store.sweepExpired(at(130));
      expect(await entries()).toEqual(["peer001@example.com 20", "peer002@example.com 200"]);
    } finally {
      await client.close();
      await store.close();
      await ferret.stop();
    }
  });
});


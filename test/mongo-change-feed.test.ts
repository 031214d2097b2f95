// The polling change feed on a real server without change streams (FerretDB): how far behind it
// says it is, which the Lookup cache trusts, and its resync when a poll cannot read every change.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MongoClient, type Collection } from "mongodb";
import { startMongoChangeFeed, type ChangedDocument } from "../src/server/store/mongo-change-feed.js";
import { ManualClock, settle } from "../src/shared/manual-clock.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { capturedLogger } from "./support/logs.js";

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
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "change-feed" });
    client = await MongoClient.connect(ferret.uri);
    broadcasts = client.db().collection<ChangedDocument>("feed");
  });
  afterAll(async () => {
    await client?.close();
    await ferret?.stop();
  });

  it("should be infinitely behind until its first poll, then behind by the time since the last poll began, growing while polls fail", async () => {
    const clock = new ManualClock();
    let failing = false;
    const feed = startMongoChangeFeed({
      broadcasts: async () => {
        if (failing) throw new Error("the database is down");
        return broadcasts;
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
      onChange: (changes) => seen.push(...changes.map((change) => change.email)),
      onResync: () => resyncs++,
      clock,
      logger: capturedLogger().logger,
      pollPageSize: 2,
    });
    try {
      await until(() => feed.lagMs === 0);
      await broadcasts.insertMany([1, 2, 3].map((n) => ({ _id: `few-${n}@example.com`, changedAt: new Date(clock.now() + n) })));
      await clock.advance(500);
      await until(() => seen.length === 3);
      expect(resyncs).toBe(0);
      // Ten pages of two hold 20 rows: 25 changes since the last poll are more than one reads.
      await broadcasts.insertMany(Array.from({ length: 25 }, (_, n) => ({ _id: `many-${n}@example.com`, changedAt: new Date(clock.now() + 10 + n) })));
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

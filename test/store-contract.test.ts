import { describe, expect, it } from "vitest";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { MongoStore } from "../src/server/store/mongo-store.js";
import { startFerretDB } from "./support/ferretdb.js";
import { capturedLogger, warnLevel } from "./support/logs.js";
import { at, broadcast, describeStoreContract } from "../src/server/store/store-contract.js";

/** FerretDB runs unless MONGODB_URI names a MongoDB, which has TTL indexes. */
const onFerretDB = process.env.MONGODB_URI === undefined;

/**
 * The store contract (src/server/store/store-contract.ts) on the MongoDB store against a real
 * server; the memory store runs the same suite in the unit tier (memory-store.spec.ts).
 * sweeps: whether sweepExpired itself deletes expired broadcasts. Every store does: a TTL index
 * (MongoDB; FerretDB 1.x has none) reclaims broadcasts past their ttl, but not those whose
 * presence ended (lost, withdrawn), so MongoStore sweeps either way.
 */
describeStoreContract(onFerretDB ? "MongoStore on FerretDB" : "MongoStore on MongoDB", async () => {
  const ferret = await startFerretDB({ name: "store-contract" });
  const store = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }) });
  return {
    store,
    sweeps: true,
    async done() {
      await store.close();
      await ferret.stop();
    },
  };
});

describe.runIf(onFerretDB)("MongoStore on a server without TTL indexes (FerretDB 1.x)", () => {
  it("should warn once that the TTL index was refused, and sweep expired broadcasts itself", async () => {
    const ferret = await startFerretDB({ name: "store-ttl" });
    const { logger, lines } = capturedLogger();
    const store = await MongoStore.connect({ uri: ferret.uri, logger });
    try {
      expect(store.ttlIndex).toBe(false);
      expect(store.registrationTtlIndex).toBe(false);
      await store.putBroadcast(broadcast(30, { expiresAt: at(5) }));
      await store.putBroadcast(broadcast(31, { expiresAt: at(5) }));
      expect(await store.sweepExpired(at(10))).toBe(2);
      expect(await store.sweepExpired(at(10))).toBe(0);
      const warnings = lines.filter((line) => line.level === warnLevel);
      expect(warnings).toEqual([expect.objectContaining({ code: 238, indexes: ["broadcasts_by_email.expiresAt", "registrations.retainUntil"], msg: expect.stringMatching(/refused the TTL index.*sweeps expired broadcasts and stale registrations itself/) })]);
    } finally {
      await store.close();
      await ferret.stop();
    }
  });
});

describe("MongoStore on a database of the earlier layout (broadcasts keyed by fingerprint)", () => {
  it("should move the live broadcasts to the email-keyed collection at start, keep newer ones, drop the old collection and leave registrations as they are", async () => {
    const ferret = await startFerretDB({ name: "store-migration" });
    const database = new MongoClient(ferret.uri);
    const hour = 3_600_000;
    const now = Date.now();
    const registration = { _id: "fp-ada", email: "ada@example.com", certificatePem: "PEM-ADA", registeredAt: new Date(now - hour), retainUntil: new Date(now + 24 * hour) };
    const legacy = (fingerprint: string, email: string, expiresAt: number, broadcastId = `old-${fingerprint}`) => ({
      _id: fingerprint,
      broadcastId,
      email,
      port: 7000,
      addresses: ["127.0.0.2"],
      capabilities: {},
      observedAddress: "127.0.0.1",
      lastSeen: new Date(now - 1000),
      expiresAt: new Date(expiresAt),
      changedAt: new Date(now - 1000),
    });
    let store: MongoStore | undefined;
    try {
      const db = database.db();
      await db.collection<{ _id: string }>("registrations").insertOne(registration);
      const old = db.collection<{ _id: string }>("broadcasts");
      await old.createIndex({ email: 1 }, { unique: true, name: "email_unique" });
      await old.insertMany([legacy("fp-ada", "ada@example.com", now + hour), legacy("fp-gone", "gone@example.com", now - 1000), legacy("fp-bob", "bob@example.com", now + hour)]);
      // bob already announced through the new layout (a Ready after the upgrade): that one wins.
      const { email: _email, ...bob } = legacy("fp-bob", "bob@example.com", now + hour, "new-bob");
      await db.collection<{ _id: string; fingerprint: string }>("broadcasts_by_email").insertOne({ ...bob, _id: "bob@example.com", fingerprint: "fp-bob" });

      const { logger, lines } = capturedLogger();
      store = await MongoStore.connect({ uri: ferret.uri, logger });
      const at = new Date(now);
      expect(await store.findBroadcast("ada@example.com", at)).toMatchObject({ fingerprint: "fp-ada", email: "ada@example.com", broadcastId: "old-fp-ada", port: 7000 });
      expect(await store.findBroadcast("bob@example.com", at)).toMatchObject({ fingerprint: "fp-bob", broadcastId: "new-bob" });
      expect(await store.findBroadcastRecords(["gone@example.com"])).toEqual([]);
      expect((await db.listCollections({ name: "broadcasts" }).toArray()).map((c) => c.name)).toEqual([]);
      expect(lines.filter((line) => line.from === "broadcasts")).toEqual([expect.objectContaining({ moved: 1, kept: 1, to: "broadcasts_by_email" })]);
      // Registrations are untouched, and a moved broadcast is the peer's: its heartbeat extends it.
      expect(await store.findRegistrationByEmail("ada@example.com")).toMatchObject({ fingerprint: "fp-ada", certificatePem: "PEM-ADA" });
      expect(await store.extendBroadcast("fp-ada", "old-fp-ada", at, new Date(now + 2 * hour))).toMatchObject({ outcome: "extended", broadcast: { email: "ada@example.com" } });
      await store.close();

      // The next start finds nothing to move.
      const again = capturedLogger();
      store = await MongoStore.connect({ uri: ferret.uri, logger: again.logger });
      await store.ping();
      expect(again.lines.filter((line) => line.from === "broadcasts")).toEqual([]);
      expect(await store.findBroadcast("ada@example.com", at)).toMatchObject({ fingerprint: "fp-ada" });
    } finally {
      await store?.close();
      await database.close();
      await ferret.stop();
    }
  });
});

describe("MongoStore's broadcast documents", () => {
  it("should store a broadcast without capabilities without the field, and keep non-empty ones", async () => {
    // FerretDB 1.x (SQLite) parses every stored broadcast on each read, even one by `_id`
    // (docs/operating.md): a field that says nothing is work on every Lookup.
    const ferret = await startFerretDB({ name: "store-documents" });
    const database = new MongoClient(ferret.uri);
    const store = await MongoStore.connect({ uri: ferret.uri, logger: pino({ level: "silent" }) });
    try {
      await store.putBroadcast(broadcast(50, { capabilities: {} }));
      await store.putBroadcast(broadcast(51));
      const stored = database.db().collection<{ _id: string }>("broadcasts_by_email");
      expect(Object.keys((await stored.findOne({ _id: "peer050@example.com" }))!)).not.toContain("capabilities");
      expect(await stored.findOne({ _id: "peer051@example.com" })).toMatchObject({ capabilities: { n: "51" } });
    } finally {
      await store.close();
      await database.close();
      await ferret.stop();
    }
  });
});

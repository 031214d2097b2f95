import { describe, expect, it } from "vitest";
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
      expect(warnings).toEqual([expect.objectContaining({ code: 238, indexes: ["broadcasts.expiresAt", "registrations.retainUntil"], msg: expect.stringMatching(/refused the TTL index.*sweeps expired broadcasts and stale registrations itself/) })]);
    } finally {
      await store.close();
      await ferret.stop();
    }
  });
});

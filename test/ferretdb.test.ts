// The FerretDB harness works against the real server, and what FerretDB 1.24.2 actually does
// with the index options the Mongo store relies on (recorded as assertions, so a FerretDB
// upgrade that changes them fails here first).

import { afterAll, afterEach, describe, expect, test } from "vitest";
import { MongoClient, MongoServerError } from "mongodb";
import { startFerretDB, withDatabase, type FerretDB } from "./support/ferretdb.js";

const external = Boolean(process.env.MONGODB_URI);

describe.skipIf(external)("FerretDB harness (real FerretDB 1.24.2, SQLite backend)", () => {
  const servers: FerretDB[] = [];
  const clients: MongoClient[] = [];
  const start = async () => {
    const server = await startFerretDB({ name: "ferretdb_test" });
    servers.push(server);
    return server;
  };
  const connect = (uri: string) => {
    // Lowered from the 30 s default so a dead server surfaces in about a second.
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 1_000 });
    clients.push(client);
    return client;
  };
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  });
  afterAll(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  test("start, write, kill, fail fast, restart with data kept, stop", async () => {
    const server = await start();
    expect(server.uri).toMatch(/^mongodb:\/\/127\.0\.0\.1:\d+\/relay_ferretdb_test_\w+$/);

    const client = connect(server.uri);
    const peers = client.db().collection<{ email: string; port: number }>("peers");
    await peers.insertOne({ email: "ada@example.com", port: 4001 });
    expect(await peers.findOne({ email: "ada@example.com" }, { projection: { _id: 0 } })).toEqual({
      email: "ada@example.com",
      port: 4001,
    });

    await server.kill();
    const started = Date.now();
    const failure = await peers.findOne({ email: "ada@example.com" }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(Error);
    // Observed with mongodb 7.9: usually MongoNetworkError (ECONNREFUSED on reconnect), but about
    // one run in three a raw Node `Error: This socket has been ended by the other party` (code
    // EPIPE) escapes the driver unwrapped. Store code must map *any* error to `unavailable`, not
    // only MongoError subclasses.
    const { name, code } = failure as Error & { code?: unknown };
    expect(
      /^Mongo(NetworkError|ServerSelectionError)$/.test(name) || (name === "Error" && code === "EPIPE"),
      `unexpected failure: ${String(failure)}`,
    ).toBe(true);
    // Not a speed figure: only that the 1 s setting is honoured rather than the 30 s default.
    expect(Date.now() - started).toBeLessThan(15_000);

    await server.restart();
    // Same port, same SQLite files: the old client reconnects and the document survived the crash.
    expect(await peers.countDocuments({ email: "ada@example.com" })).toBe(1);
    const fresh = connect(server.uri);
    expect(await fresh.db().collection("peers").countDocuments({})).toBe(1);

    // FerretDB's graceful shutdown waits ~3 s for open client connections: close them first.
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.stop();
    await server.stop(); // idempotent
    await expect(server.restart()).rejects.toThrow(/stop\(\)/);
  });

  test("each call gets its own server, port and database", async () => {
    const [a, b] = await Promise.all([start(), start()]);
    expect(a.uri).not.toBe(b.uri);
    expect(a.dbName).not.toBe(b.dbName);
    expect(new URL(a.uri).port).not.toBe(new URL(b.uri).port);
  });

  test("TTL index: FerretDB 1.24.2 answers NotImplemented (238); unique index works (11000)", async () => {
    const server = await start();
    const broadcasts = connect(server.uri).db().collection("broadcasts");
    await broadcasts.insertOne({ peer: "ada@example.com", expiresAt: new Date() });

    // What the Mongo store must survive: log once, sweep expired broadcasts itself.
    const ttl = await broadcasts.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(ttl).toBeInstanceOf(MongoServerError);
    expect(ttl).toMatchObject({ code: 238, codeName: "NotImplemented" });
    expect((ttl as Error).message).toMatch(/expireAfterSeconds/);
    // Nothing half-created, and the collection is still usable.
    const names = (await broadcasts.indexes()).map((i) => i.name);
    expect(names).toEqual(["_id_"]);
    // A plain index on the same field is fine (for the store's own sweeper).
    await broadcasts.createIndex({ expiresAt: 1 });

    await broadcasts.createIndex({ peer: 1 }, { unique: true });
    const dup = await broadcasts.insertOne({ peer: "ada@example.com", expiresAt: new Date() }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(dup).toBeInstanceOf(MongoServerError);
    expect(dup).toMatchObject({ code: 11000 });
    expect(await broadcasts.countDocuments({ peer: "ada@example.com" })).toBe(1);
  });

  test("queries: only a filter that is `_id` alone is evaluated in SQLite (pushdown); any other filter reads every document", async () => {
    // Why the Mongo store keys broadcasts by email and reads Lookup by `_id` alone, checking
    // liveness itself: a unique index on a field, or `_id` with one more condition, is not used.
    const server = await start();
    const broadcasts = connect(server.uri).db().collection<{ _id: string; fingerprint: string; expiresAt: Date }>("broadcasts");
    await broadcasts.createIndex({ fingerprint: 1 }, { unique: true });
    await broadcasts.insertOne({ _id: "ada@example.com", fingerprint: "fp-ada", expiresAt: new Date() });
    const pushdown = async (filter: object) => ((await broadcasts.find(filter).explain()) as { filterPushdown?: boolean }).filterPushdown;
    expect(await pushdown({ _id: "ada@example.com" })).toBe(true);
    expect(await pushdown({ _id: "ada@example.com", expiresAt: { $gt: new Date(0) } })).toBe(false);
    expect(await pushdown({ _id: { $in: ["ada@example.com"] } })).toBe(false);
    expect(await pushdown({ fingerprint: "fp-ada" })).toBe(false);
  });
});

describe("MONGODB_URI mode", () => {
  test("withDatabase swaps only the database, keeping hosts and options", () => {
    expect(withDatabase("mongodb://127.0.0.1:27017", "d1")).toBe("mongodb://127.0.0.1:27017/d1");
    expect(withDatabase("mongodb://u:p@127.0.0.1:1,127.0.0.2:2/old?replicaSet=rs0", "d2")).toBe(
      "mongodb://u:p@127.0.0.1:1,127.0.0.2:2/d2?replicaSet=rs0",
    );
    expect(() => withDatabase("http://127.0.0.1", "d")).toThrow(/mongodb:\/\//);
  });

  test("uses the given server, a unique database per call, and refuses kill/restart", async () => {
    const saved = process.env.MONGODB_URI;
    process.env.MONGODB_URI = saved ?? "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500";
    try {
      const a = await startFerretDB({ name: "ext" });
      const b = await startFerretDB({ name: "ext" });
      expect(a.dbName).not.toBe(b.dbName);
      expect(a.uri.endsWith(`/${a.dbName}`) || a.uri.includes(`/${a.dbName}?`)).toBe(true);
      await expect(a.kill()).rejects.toThrow(/not supported with MONGODB_URI/);
      await expect(a.restart()).rejects.toThrow(/not supported with MONGODB_URI/);
      await a.stop(); // no-op, so shared afterAll(stop) teardown works in both modes
    } finally {
      if (saved === undefined) delete process.env.MONGODB_URI;
      else process.env.MONGODB_URI = saved;
    }
  });
});

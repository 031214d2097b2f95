// The relay's own timers: the HTTP/2 session ping that finds dead connections, and the sweeper
// that deletes expired broadcasts on a database without TTL indexes (FerretDB 1.x).
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MongoClient } from "mongodb";
import { ManualClock } from "../src/shared/manual-clock.js";
import { FrameType, rawConnect } from "./hostile/frames.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, registeredClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";

/** Resolves once check() holds; fails after timeoutMs. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("session ping", () => {
  let relay: TestRelay;
  let peer: TestPeer;
  beforeAll(async () => {
    // Idle GOAWAY off and a long handshake timeout, so only the ping can close a connection.
    relay = await startTestRelay({ sessionPingIntervalMs: 500, connectionLimits: { idleTimeoutMs: 0, handshakeTimeoutMs: 60_000 } });
    peer = await createTestPeer(`ping-${process.pid}@example.com`);
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it("should ping every connection each interval and keep one that answers", async () => {
    const session = http2.connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
    try {
      let pings = 0;
      session.on("ping", () => pings++);
      await new Promise((resolve) => setTimeout(resolve, 1_600));
      expect(pings).toBeGreaterThanOrEqual(2);
      expect(session.closed || session.destroyed).toBe(false);
    } finally {
      session.destroy();
    }
  });

  it("should destroy a connection that does not answer its ping within the interval", async () => {
    // A raw HTTP/2 client that never acknowledges anything.
    const silent = await rawConnect({ port: relay.port, caPem: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
    const opened = performance.now();
    await silent.closed;
    const lifetime = performance.now() - opened;
    expect(silent.frames.some((frame) => frame.type === FrameType.Ping && (frame.flags & 1) === 0)).toBe(true);
    // The first ping goes out within one interval and is given one more: at most 1 s with a
    // 500 ms interval. (Node itself gives up after 10 unanswered pings, 5 s here: the bound
    // tells the relay's own timeout from that.)
    expect(lifetime).toBeGreaterThanOrEqual(500);
    expect(lifetime).toBeLessThan(3_000);
  });
});

describe("sweeper", () => {
  let ferret: FerretDB;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "sweeper" });
  });
  afterAll(async () => {
    await ferret?.stop();
  });

  it("should delete expired broadcasts on its interval when the database has no TTL index", async () => {
    const clock = new ManualClock();
    const relay = await startTestRelay({ mongodbUri: ferret.uri, clock, broadcastTtlSeconds: 60, sweepIntervalMs: 30_000 });
    const database = new MongoClient(ferret.uri);
    try {
      const peer = await createTestPeer(`swept-${process.pid}@example.com`);
      await (await registeredClient(relay, peer)).ready({ port: 1 });
      const stored = () => database.db().collection<{ _id: string }>("broadcasts_by_email").countDocuments({ _id: peer.email });
      expect(await stored()).toBe(1);
      // A sweep deletes broadcasts ended at least the retention (60 s) before it, so that other
      // instances' change polls still find a withdraw: the sweeps at 30, 60 and 90 s keep this one
      // (it expires at 60 s); the one at 120 s deletes it. Nothing else deletes documents here.
      await clock.advance(59_000);
      expect(await stored()).toBe(1);
      await clock.advance(31_000);
      expect(await stored()).toBe(1);
      await clock.advance(30_000);
      await until(async () => (await stored()) === 0, "the sweep at 120 s deleted the broadcast");
    } finally {
      await database.close();
      await relay.stop();
    }
  });
});

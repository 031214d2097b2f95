// Two relay instances on one database behave as one relay: a registration on one is known to
// the other at once (the registration cache keeps only positive answers), and a heartbeat on one
// keeps the broadcast alive for both.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { createTestPeer, relayClient } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { TestClock } from "../support/clock.js";
import { codeOf, outcomeOf } from "../support/codes.js";

describe("two relays on one database", () => {
  let ferret: FerretDB;
  let a: TestRelay;
  let b: TestRelay;
  const clock = new TestClock();
  const ttlSeconds = 60;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "fault-two-relays" });
    // Each with its own MongoStore, as two processes would have.
    // The clock jumps by two thirds of the ttl: a grace as long as the ttl keeps a held stream's
    // presence from lapsing between refreshes (test/presence has the grace's own tests).
    const options = { mongodbUri: ferret.uri, clock, broadcastTtlSeconds: ttlSeconds, presenceGraceMs: ttlSeconds * 1000 };
    [a, b] = await Promise.all([startTestRelay(options), startTestRelay(options)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await ferret?.stop();
  });

  it("should know a peer registered on one relay on the other at once, even after the other refused it", async () => {
    const peer = await createTestPeer(`two-relays-${process.pid}@example.com`);
    const onB = relayClient(b, peer);
    expect(await codeOf(onB.ready({ port: 1 }))).toBe(Code.Unauthenticated);
    await relayClient(a, peer).register({ email: peer.email, certificatePem: peer.certificatePem });
    await onB.ready({ port: 4242, addresses: ["127.0.0.2"] });
    expect((await relayClient(a, peer).lookup({ email: peer.email })).peer).toMatchObject({ port: 4242, addresses: ["127.0.0.2"] });
    // The email is taken on both.
    const other = await createTestPeer(peer.email);
    expect(await codeOf(relayClient(b, other).register({ email: peer.email, certificatePem: other.certificatePem }))).toBe(Code.AlreadyExists);
  });

  it("should keep a broadcast alive for both relays through heartbeats sent to one", async () => {
    const peer = await createTestPeer(`two-relays-beat-${process.pid}@example.com`);
    const onA = relayClient(a, peer);
    await onA.register({ email: peer.email, certificatePem: peer.certificatePem });
    const ready = await onA.ready({ port: 5151 });
    const requests = createWritableIterable<{ broadcastId: string }>();
    const responses = relayClient(b, peer).heartbeat(requests)[Symbol.asyncIterator]();
    for (let beat = 0; beat < 3; beat++) {
      clock.advance(((ttlSeconds * 2) / 3) * 1000); // past the Ready's expiry by the second beat
      void requests.write({ broadcastId: ready.broadcastId });
      expect((await responses.next()).done).toBe(false);
    }
    const seenByA = await onA.lookup({ email: peer.email });
    expect(seenByA.peer?.port).toBe(5151);
    expect(timestampMs(seenByA.peer!.expiresAt!)).toBeGreaterThan(timestampMs(ready.expiresAt!));
    requests.close();
    // The clean end withdraws the broadcast. Wait for it before the next Ready: FerretDB runs
    // findAndModify as a read then a write, so a withdrawal still in flight could land on the
    // broadcast that Ready just wrote.
    const deadline = Date.now() + 5000;
    while ((await outcomeOf(onA.lookup({ email: peer.email }))) !== Code.NotFound) {
      expect(Date.now(), "the clean end of the stream withdrew the broadcast within 5 s").toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // And a Ready on A replaces it for B: B's heartbeat with the old id is refused.
    await onA.ready({ port: 5152 });
    const stale = createWritableIterable<{ broadcastId: string }>();
    const answers = relayClient(b, peer).heartbeat(stale)[Symbol.asyncIterator]();
    void stale.write({ broadcastId: ready.broadcastId });
    expect(await codeOf(answers.next())).toBe(Code.FailedPrecondition);
    stale.close();
  });
});

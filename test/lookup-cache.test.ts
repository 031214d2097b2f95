// Lookup answered from the relay's cache on a real database (FerretDB, which has no change
// streams: the feed polls), with two relay instances on it: an instance reads its own writes at
// once, and another instance's Ready or Offline reaches its Lookups within the feed's bound.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, relayClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { outcomeOf } from "./support/codes.js";

/** Lookups on relay by result, from its metrics. */
async function cacheCounts(relay: TestRelay): Promise<{ hit: number; miss: number }> {
  const metric = await relay.server.metrics.registry.getSingleMetric("relay_lookup_cache_total")!.get();
  const count = (result: string) => metric.values.find((value) => value.labels.result === result)?.value ?? Number.NaN;
  return { hit: count("hit"), miss: count("miss") };
}

/** Polls what relay's Lookup answers until accept takes it, at most 5 s; returns it. */
async function lookupUntil<T>(lookup: () => Promise<T>, accept: (answer: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const answer = await lookup();
    if (accept(answer) || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("the Lookup cache on FerretDB, two relays", () => {
  let ferret: FerretDB;
  let a: TestRelay;
  let b: TestRelay;
  let peer: TestPeer;
  let asker: TestPeer;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "lookup-cache" });
    [a, b] = await Promise.all([startTestRelay({ mongodbUri: ferret.uri }), startTestRelay({ mongodbUri: ferret.uri })]);
    [peer, asker] = await Promise.all([createTestPeer(`cached-${process.pid}@example.com`), createTestPeer(`asker-${process.pid}@example.com`)]);
    await relayClient(a, peer).register({ email: peer.email, certificatePem: peer.certificatePem });
    await relayClient(a, asker).register({ email: asker.email, certificatePem: asker.certificatePem });
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await ferret?.stop();
  });

  const lookupOnA = () => relayClient(a, asker).lookup({ email: peer.email });

  it("should answer repeated Lookups of an online peer from memory", async () => {
    await relayClient(b, peer).ready({ port: 4001, addresses: ["127.0.0.2"] });
    // Lookups read the database until A's change feed has polled once (and whenever it is more
    // than 2 s behind, as on a loaded machine); then the cache answers.
    const before = await cacheCounts(a);
    let lookups = 0;
    const hits = async () => (await cacheCounts(a)).hit - before.hit;
    const deadline = Date.now() + 5000;
    while ((await hits()) === 0 && Date.now() < deadline) {
      expect((await lookupOnA()).peer?.port).toBe(4001);
      lookups++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await hits()).toBeGreaterThan(0);
    const after = await cacheCounts(a);
    expect(after.hit + after.miss - before.hit - before.miss).toBe(lookups);
  });

  it("should show another relay's Ready within the change feed's bound", async () => {
    expect((await lookupOnA()).peer?.port).toBe(4001);
    await relayClient(b, peer).ready({ port: 4002, addresses: ["127.0.0.3"] });
    const started = Date.now();
    const seen = await lookupUntil(lookupOnA, (answer) => answer.peer?.port === 4002);
    expect(seen.peer).toMatchObject({ port: 4002, addresses: ["127.0.0.3"] });
    // Well inside the presence grace (30 s), when the entry would be read again anyway.
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("should stop answering for a peer that went offline on another relay within the bound", async () => {
    expect((await lookupOnA()).peer?.port).toBe(4002);
    expect((await relayClient(b, peer).offline({})).wasOnline).toBe(true);
    const outcome = await lookupUntil(() => outcomeOf(lookupOnA()), (code) => code === Code.NotFound);
    expect(outcome).toBe(Code.NotFound);
  });

  it("should read its own Ready and Offline at once", async () => {
    const onA = relayClient(a, peer);
    await onA.ready({ port: 4003 });
    expect((await lookupOnA()).peer?.port).toBe(4003);
    expect((await lookupOnA()).peer?.port).toBe(4003);
    await onA.ready({ port: 4004 });
    expect((await lookupOnA()).peer?.port).toBe(4004);
    await onA.offline({});
    expect(await outcomeOf(lookupOnA())).toBe(Code.NotFound);
  });
});

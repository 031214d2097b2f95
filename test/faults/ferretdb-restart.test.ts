// FerretDB killed (SIGKILL) and restarted while peers keep calling: every error a client saw is
// `unavailable`, open heartbeat streams survive, and nothing acknowledged before is lost.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { createTestPeer, registeredClient, relayClient, type TestPeer } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { record, unexpected, until, type Outcomes } from "./support.js";

describe("FerretDB killed and restarted under load", () => {
  let ferret: FerretDB;
  let relay: TestRelay;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "fault-ferret" });
    // No registration cache, so every call reaches the database; no rate limit on this synthetic load.
    relay = await startTestRelay({ mongodbUri: ferret.uri, broadcastTtlSeconds: 600, registrationCacheTtlMs: 1, rateLimits: { perCertificate: 0 } });
  });
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
  });

  it("should answer only unavailable during the outage and lose no acknowledged registration or broadcast", async () => {
    // Stable peers announce once, before the outage, and only heartbeat afterwards; busy peers
    // announce again and again under the load, each time on a new port. Nothing re-announces
    // after the load stops, so a lost broadcast cannot be recreated before it is checked.
    const peers = await Promise.all(Array.from({ length: 12 }, (_, i) => createTestPeer(`ferret-fault-${i}-${process.pid}@example.com`)));
    const clients = await Promise.all(peers.map((peer) => registeredClient(relay, peer)));
    const stable = [0, 1, 2, 3, 4, 5];
    const busy = [6, 7, 8, 9, 10, 11];
    const lastAcknowledgedPort = new Map<string, number>(); // email -> port of its last acknowledged Ready
    await Promise.all(clients.map(async (client, i) => {
      await client.ready({ port: 20_000 + i * 1000, addresses: ["127.0.0.2"] });
      lastAcknowledgedPort.set(peers[i]!.email, 20_000 + i * 1000);
    }));

    // Heartbeat streams open through the outage, one per peer.
    const streams = clients.map((client) => {
      const requests = createWritableIterable<{ broadcastId: string }>();
      return { requests, responses: client.heartbeat(requests)[Symbol.asyncIterator]() };
    });
    const beat = async () => {
      for (const stream of streams) void stream.requests.write({ broadcastId: "" });
      return Promise.all(streams.map((stream) => stream.responses.next()));
    };
    expect((await beat()).every((answer) => !answer.done)).toBe(true);

    // Load: lookups from everyone, Ready from the busy peers, and new registrations.
    const outcomes: Outcomes = new Map();
    const registeredDuringLoad: TestPeer[] = [];
    let stopping = false;
    let newcomer = 0;
    const load = Promise.all(clients.map(async (client, i) => {
      for (let round = 1; !stopping; round++) {
        const peer = peers[(i + 1) % peers.length]!;
        await client.lookup({ email: peer.email }).then(() => record(outcomes, undefined), (error: unknown) => record(outcomes, error));
        if (busy.includes(i)) {
          const port = 20_000 + i * 1000 + (round % 1000);
          await client.ready({ port, addresses: ["127.0.0.2"] }).then(
            () => (record(outcomes, undefined), lastAcknowledgedPort.set(peers[i]!.email, port)),
            (error: unknown) => record(outcomes, error),
          );
        }
        if (i === 0) {
          const fresh = await createTestPeer(`ferret-newcomer-${++newcomer}-${process.pid}@example.com`);
          await relayClient(relay, fresh).register({ email: fresh.email, certificatePem: fresh.certificatePem }).then(
            () => (record(outcomes, undefined), registeredDuringLoad.push(fresh)),
            (error: unknown) => record(outcomes, error),
          );
        }
      }
    }));

    await until(() => (outcomes.get("ok") ?? 0) > 20, "the load runs");
    await ferret.kill();
    await until(() => (outcomes.get("Unavailable") ?? 0) > 5, "clients see the outage");
    // Open streams are answered (the last expiry, asked back soon) rather than torn down.
    const during = await beat();
    expect(during.every((answer) => !answer.done)).toBe(true);
    await ferret.restart();
    const okBefore = outcomes.get("ok") ?? 0;
    await until(() => (outcomes.get("ok") ?? 0) > okBefore + 20, "calls succeed again");
    stopping = true;
    await load;

    expect(unexpected(outcomes, [Code.Unavailable])).toEqual([]);
    expect(outcomes.get("Unavailable")).toBeGreaterThan(5);
    expect(registeredDuringLoad.length).toBeGreaterThan(0);

    // Nothing acknowledged was lost: each peer's broadcast is the one its last acknowledged
    // Ready made (stable peers: the one from before the outage), read before anything writes.
    const observer = clients[0]!;
    const stored = new Map<string, number | undefined>();
    for (const email of lastAcknowledgedPort.keys()) stored.set(email, (await observer.lookup({ email })).peer?.port);
    expect(stored).toEqual(lastAcknowledgedPort);
    expect(stable.map((i) => stored.get(peers[i]!.email))).toEqual(stable.map((i) => 20_000 + i * 1000));
    // The streams outlived the outage: each beat extends a broadcast that is still there.
    expect((await beat()).every((answer) => !answer.done)).toBe(true);
    // (Closing a stream cleanly withdraws its peer: only once the broadcasts are checked.)
    for (const stream of streams) stream.requests.close();
    for (const peer of [...peers, ...registeredDuringLoad]) {
      expect((await relayClient(relay, peer).register({ email: peer.email, certificatePem: peer.certificatePem })).alreadyRegistered).toBe(true);
    }
  });
});

// Watch on real relays over mutual TLS: what a watcher sees when peers come and go on the in-memory
// store (the suite in watch-suite.ts; watch-ferretdb.test.ts runs it on FerretDB), and across two
// relay instances sharing FerretDB.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPresence } from "../../src/client/presence.js";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { createTestPeer } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { clientFor, describeWatch, graceMs, record } from "./watch-suite.js";

describeWatch("the in-memory store", false);

describe("Watch across two relay instances on FerretDB", () => {
  let ferret: FerretDB;
  let a: TestRelay;
  let b: TestRelay;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "presence-watch-two" });
    [a, b] = await Promise.all([startTestRelay({ mongodbUri: ferret.uri, presenceGraceMs: graceMs }), startTestRelay({ mongodbUri: ferret.uri, presenceGraceMs: graceMs })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await ferret?.stop();
  });

  it("should show a watcher on one instance a peer on the other come and go, each within 2 s", async () => {
    const peer = await createTestPeer(`two-watch-${process.pid}@example.com`);
    const watcherClient = clientFor(b, await createTestPeer(`two-watcher-${process.pid}@example.com`));
    await watcherClient.register();
    const watch = record(watcherClient, [peer.email]);
    await watch.next(peer.email, (change) => change.initial, 5_000);
    const presence = createPresence({ client: clientFor(a, peer), announcement: { port: 8095, addresses: ["127.0.0.2"] } });
    const startedAt = Date.now();
    await presence.start();
    const online = await watch.next(peer.email, (change) => change.online, 2_000);
    expect(online.peer?.port).toBe(8095);
    expect(online.at - startedAt).toBeLessThan(2_000 + 500);
    const leftAt = Date.now();
    await presence.stop();
    const offline = await watch.next(peer.email, (change) => !change.online && !change.initial, 2_000);
    expect(offline.reason).toBe("withdrawn");
    expect(offline.at - leftAt).toBeLessThan(2_000);
    await watch.stop();
    watcherClient.close();
  });
});

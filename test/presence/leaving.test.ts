// A peer leaving, on real processes: `relay-peer online` interrupted (Ctrl-C) or killed, against a
// real relay over mutual TLS, on both stores. The default ttl (an hour) throughout: only the
// Heartbeat stream can make these peers offline in seconds.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { createTestPeer, registeredClient } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { peerWorkspace, startOnlinePeer } from "../support/peer-process.js";
import { codeOf } from "../support/codes.js";
import { until } from "../faults/support.js";

const graceMs = 3_000;

describe.each([
  ["the in-memory store", false],
  ["FerretDB", true],
])("a peer leaving, on %s", (_name, useFerret) => {
  let ferret: FerretDB | undefined;
  let relay: TestRelay;
  let workspace: Awaited<ReturnType<typeof peerWorkspace>>;
  let observer: Awaited<ReturnType<typeof registeredClient>>;
  beforeAll(async () => {
    ferret = useFerret ? await startFerretDB({ name: "presence-leaving" }) : undefined;
    relay = await startTestRelay({ presenceGraceMs: graceMs, ...(ferret ? { mongodbUri: ferret.uri } : {}) });
    workspace = await peerWorkspace(relay);
    observer = await registeredClient(relay, await createTestPeer(`observer-${process.pid}@example.com`));
  });
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
    await workspace?.remove();
  });

  it("should be offline at once after Ctrl-C: the CLI half-closes its stream", async () => {
    const peer = await startOnlinePeer({ relayUrl: relay.url, caFile: workspace.caFile, directory: workspace.directory, email: `sigint-${process.pid}@example.com`, port: 8080 });
    expect((await observer.lookup({ email: peer.email })).peer?.port).toBe(8080);
    expect(await peer.stop("SIGINT")).toBe(0);
    // The process exits only once the relay confirmed the withdraw: no wait needed.
    expect(await codeOf(observer.lookup({ email: peer.email }))).toBe(Code.NotFound);
  });

  it("should keep a killed peer online for the grace, then be offline within grace + 5 s", async () => {
    const peer = await startOnlinePeer({ relayUrl: relay.url, caFile: workspace.caFile, directory: workspace.directory, email: `sigkill-${process.pid}@example.com`, port: 8081 });
    // "online" is printed after Ready; killed before its stream's first beat reached the relay,
    // the peer would be one that never opened a stream, bound by the ttl alone.
    await until(async () => (await relay.store.findBroadcastRecords([peer.email]))[0]?.holder !== undefined, "the peer's heartbeat stream holds its broadcast");
    await peer.stop("SIGKILL");
    const killedAt = Date.now();
    // The connection is gone (the kernel reset it), the grace has just begun.
    expect((await observer.lookup({ email: peer.email })).peer?.port).toBe(8081);
    await until(async () => (await codeOf(observer.lookup({ email: peer.email }).then(() => Promise.reject(new Error("online")))).catch(() => -1)) === Code.NotFound, "the killed peer is offline", graceMs + 5_000, 100);
    expect(Date.now() - killedAt).toBeLessThan(graceMs + 5_000);
  });

  it("should answer Offline idempotently over the wire", async () => {
    const peer = await createTestPeer(`offline-${process.pid}@example.com`);
    const client = await registeredClient(relay, peer);
    const { broadcastId } = await client.ready({ port: 8082 });
    expect((await client.offline({ broadcastId })).wasOnline).toBe(true);
    expect(await codeOf(observer.lookup({ email: peer.email }))).toBe(Code.NotFound);
    expect((await client.offline({ broadcastId })).wasOnline).toBe(false);
    expect((await client.offline({})).wasOnline).toBe(false);
  });
});

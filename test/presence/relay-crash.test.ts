// A relay process killed (SIGKILL) under online peers, on FerretDB with a second instance: the
// peers that reconnect (to the relay restarted on its port) within the grace are never seen
// offline by a watcher on the other instance; a peer that does not come back is offline, reason
// lost, within the grace plus a few seconds (the dead instance simply stops refreshing).
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createRelayClient, type PresenceChange } from "../../src/client/relay-client.js";
import { createPresence, type Presence } from "../../src/client/presence.js";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { freePort, killHard, startRelayProcess } from "../support/relay-process.js";
import { createTestPeer, registeredClient } from "../support/peers.js";
import { startTestRelay, type TestRelay } from "../support/relay.js";
import { until } from "../faults/support.js";

const graceMs = 20_000;

describe("a relay instance killed under online peers", () => {
  let ferret: FerretDB;
  let dataDir: string;
  let child: ChildProcess | undefined;
  let other: TestRelay;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "presence-relay-crash" });
    dataDir = mkdtempSync(join(tmpdir(), "relay-presence-crash-"));
    other = await startTestRelay({ mongodbUri: ferret.uri, presenceGraceMs: graceMs });
  });
  afterAll(async () => {
    if (child) await killHard(child);
    await other?.stop();
    await ferret?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("should keep the peers that come back online for every watcher, and report the one that does not as lost within grace + 5 s", async () => {
    const port = await freePort();
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir, "--presence-grace", `${graceMs / 1000}s`, "--registrations-per-network", "0"]);
    const relay = { url: `https://127.0.0.1:${port}`, caPem: readFileSync(join(dataDir, "relay-cert.pem"), "utf8") };
    const peers = await Promise.all(Array.from({ length: 10 }, (_, i) => createTestPeer(`crash-${i}-${process.pid}@example.com`)));
    const presences: Presence[] = peers.map((peer, i) => {
      const client = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity: { ...peer, directory: "" }, pingIntervalMs: 1_000, timeoutMs: 5_000 });
      return createPresence({ client, announcement: { port: 32_000 + i, addresses: ["127.0.0.2"] }, backoff: { initialMs: 100, maxMs: 1_000 } });
    });
    await Promise.all(presences.map((presence) => presence.start()));
    // One more peer that will not come back: a raw stream, never reconnected.
    const gone = await createTestPeer(`crash-gone-${process.pid}@example.com`);
    const goneClient = await registeredClient(relay, gone);
    const { broadcastId } = await goneClient.ready({ port: 32_100, addresses: ["127.0.0.2"] });
    const requests = createWritableIterable<{ broadcastId: string }>();
    const responses = goneClient.heartbeat(requests)[Symbol.asyncIterator]();
    void requests.write({ broadcastId });
    await responses.next();
    const emails = [...peers.map((peer) => peer.email), gone.email];
    await until(async () => (await other.store.findBroadcastRecords(emails)).every((record) => record.holder !== undefined), "every stream holds its broadcast");

    // The watcher is on the other instance: it stays up through the crash.
    const watcher = createRelayClient({ relayUrl: other.url, relayCaPem: other.caPem, identity: { ...(await createTestPeer(`crash-watcher-${process.pid}@example.com`)), directory: "" } });
    await watcher.register();
    const abort = new AbortController();
    const seen: Array<PresenceChange & { at: number }> = [];
    const watching = (async () => {
      for await (const change of watcher.watch(emails, { signal: abort.signal })) seen.push({ ...change, at: Date.now() });
    })();
    await until(() => seen.length >= emails.length, "the initial snapshot");
    expect(seen.every((change) => change.online)).toBe(true);

    await killHard(child);
    const killedAt = Date.now();
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir, "--presence-grace", `${graceMs / 1000}s`, "--registrations-per-network", "0"]);
    await until(() => presences.every((presence) => presence.status === "online"), "the peers are back", graceMs);
    await until(() => seen.some((change) => change.email === gone.email && !change.online), "the peer that did not come back is offline", graceMs + 5_000);
    const lost = seen.find((change) => change.email === gone.email && !change.online)!;
    expect(lost.reason).toBe("lost");
    expect(lost.at - killedAt).toBeLessThan(graceMs + 5_000);
    // By now the dead instance's grace is over for everyone: only the peer that stayed away left.
    expect(seen.filter((change) => !change.online).map((change) => change.email)).toEqual([gone.email]);

    abort.abort();
    await watching.catch(() => undefined);
    watcher.close();
    await Promise.all(presences.map((presence) => presence.stop()));
  });
});

// The relay process killed (SIGKILL, a crash) and started again on the same port and database:
// what it had stored is served at once from the database named by --mongodb-uri, before any peer
// has reconnected; and peers online through the client library's presence loop reconnect and
// re-announce on their own.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createRelayClient } from "../../src/client/relay-client.js";
import { createPresence, type Presence } from "../../src/client/presence.js";
import { startFerretDB, type FerretDB } from "../support/ferretdb.js";
import { freePort, killHard, startRelayProcess } from "../support/relay-process.js";
import { createTestPeer, registeredClient, relayClient } from "../support/peers.js";
import { until } from "./support.js";

describe("relay process killed and restarted with peers online", () => {
  let ferret: FerretDB;
  let dataDir: string;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    ferret = await startFerretDB({ name: "fault-relay" });
    dataDir = mkdtempSync(join(tmpdir(), "relay-fault-"));
  });
  afterAll(async () => {
    if (child) await killHard(child);
    await ferret?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("should serve the registrations and broadcasts it had before the crash, from the database, before any peer reconnects", async () => {
    const port = await freePort();
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir]);
    const relay = { url: `https://127.0.0.1:${port}`, caPem: readFileSync(join(dataDir, "relay-cert.pem"), "utf8") };
    const announced = await createTestPeer(`kept-${process.pid}@example.com`);
    const observer = await createTestPeer(`observer-${process.pid}@example.com`);
    const before = await registeredClient(relay, announced);
    const ready = await before.ready({ port: 40_000, addresses: ["127.0.0.2"], capabilities: { files: "yes" } });
    const registration = await before.register({ email: announced.email, certificatePem: announced.certificatePem });
    await registeredClient(relay, observer);

    await killHard(child);
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir]);

    // Fresh clients (new connections) and no Register: a relay that had lost its state would
    // answer unauthenticated to both certificates and not_found for the broadcast.
    const { peer } = await relayClient(relay, observer).lookup({ email: announced.email });
    expect(peer).toMatchObject({ email: announced.email, port: 40_000, addresses: ["127.0.0.2"], capabilities: { files: "yes" } });
    expect(peer?.expiresAt).toEqual(ready.expiresAt);
    const again = await relayClient(relay, announced).register({ email: announced.email, certificatePem: announced.certificatePem });
    expect(again).toMatchObject({ alreadyRegistered: true, registeredAt: registration.registeredAt });
    await killHard(child);
  });

  it("should let peers reconnect and re-announce by themselves", async () => {
    const port = await freePort();
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir]);
    const relayUrl = `https://127.0.0.1:${port}`;
    const relayCaPem = readFileSync(join(dataDir, "relay-cert.pem"), "utf8");
    const peers = await Promise.all(Array.from({ length: 6 }, (_, i) => createTestPeer(`restart-${i}-${process.pid}@example.com`)));
    const errors: unknown[][] = peers.map(() => []);
    const presences: Presence[] = peers.map((peer, i) => {
      const client = createRelayClient({ relayUrl, relayCaPem, identity: { ...peer, directory: "" }, pingIntervalMs: 1_000, timeoutMs: 5_000 });
      const presence = createPresence({ client, announcement: { port: 30_000 + i, addresses: ["127.0.0.2"] }, backoff: { initialMs: 100, maxMs: 500 } });
      presence.on("status", (event) => event.error !== undefined && errors[i]!.push(event.error));
      return presence;
    });
    const first = await Promise.all(presences.map((presence) => presence.start()));

    await killHard(child);
    await until(() => presences.every((presence) => presence.status === "reconnecting"), "every peer notices the relay is gone");
    child = await startRelayProcess(["--listen", `127.0.0.1:${port}`, "--mongodb-uri", ferret.uri, "--data-dir", dataDir]);
    await until(() => presences.every((presence) => presence.status === "online" && presence.broadcast !== undefined && presence.broadcast.broadcastId !== first[presences.indexOf(presence)]!.broadcastId), "every peer is announced again", 45_000);

    const observer = relayClient({ url: relayUrl, caPem: relayCaPem }, peers[0]);
    for (const [i, peer] of peers.entries()) {
      const { peer: found } = await observer.lookup({ email: peer.email });
      expect(found).toMatchObject({ port: 30_000 + i, addresses: ["127.0.0.2"] });
      expect((await observer.lookup({ email: peer.email })).peer?.expiresAt).toBeDefined();
    }
    // What the peers saw while the relay was down. A crashed relay answers nothing: connect-node
    // reports the lost connection as aborted (ECONNRESET) or canceled (RST_STREAM CANCEL on open
    // streams), and the refused reconnects as unavailable. Nothing else, and never unknown/internal.
    // Every peer went through "reconnecting", which always carries the error that caused it.
    for (const seen of errors) {
      expect(seen.length).toBeGreaterThan(0);
      for (const error of seen) {
        expect(error).toBeInstanceOf(ConnectError);
        const { code, rawMessage } = error as ConnectError;
        expect(`${Code[code]}: ${rawMessage}`).toMatch(/^Unavailable: |^(Aborted|Canceled): .*(ECONNRESET|stream closed with error code CANCEL)/);
      }
    }
    await Promise.all(presences.map((presence) => presence.stop()));
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, registeredClient, relayClient } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { outcomeOf } from "./support/codes.js";

describe("when the database stops mid-run", () => {
  let ferret: FerretDB;
  let relay: TestRelay;

  beforeAll(async () => {
    ferret = await startFerretDB({ name: "outage" });
    relay = await startTestRelay({ mongodbUri: ferret.uri, registrationCacheTtlMs: 1 });
  });
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
  });

  it("should answer unavailable with a generic message while it is down, keep serving, and recover with everything acknowledged", async () => {
    const online = await createTestPeer(`online-${process.pid}@example.com`);
    const onlineClient = await registeredClient(relay, online);
    await onlineClient.ready({ port: 7000, addresses: ["127.0.0.2"] });
    const newcomer = await createTestPeer(`newcomer-${process.pid}@example.com`);

    await ferret.kill();
    // The registration cache is 1 ms here, so every RPC below needs the database.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const during = [
      await outcomeOf(relayClient(relay, newcomer).register({ email: newcomer.email, certificatePem: newcomer.certificatePem })),
      await outcomeOf(onlineClient.lookup({ email: online.email })),
      await outcomeOf(onlineClient.list({})),
      await outcomeOf(onlineClient.ready({ port: 7001 })),
    ];
    expect(during).toEqual([Code.Unavailable, Code.Unavailable, Code.Unavailable, Code.Unavailable]);
    try {
      await onlineClient.lookup({ email: online.email });
    } catch (error) {
      // Driver details stay in the log; the client gets an actionable, generic message.
      expect(ConnectError.from(error).rawMessage).toBe("the relay's database is unavailable; retry shortly");
    }

    await ferret.restart();
    // The driver reconnects by itself: no relay restart.
    const { peer } = await onlineClient.lookup({ email: online.email });
    expect(peer).toMatchObject({ port: 7000, addresses: ["127.0.0.2"] });
    expect((await relayClient(relay, newcomer).register({ email: newcomer.email, certificatePem: newcomer.certificatePem })).alreadyRegistered).toBe(false);
  });

  it("should answer unavailable when the database is down from the start, then serve once it is up", async () => {
    const lateFerret = await startFerretDB({ name: "late" });
    await lateFerret.kill();
    const late = await startTestRelay({ mongodbUri: lateFerret.uri });
    try {
      const peer = await createTestPeer(`late-${process.pid}@example.com`);
      expect(await outcomeOf(relayClient(late, peer).register({ email: peer.email, certificatePem: peer.certificatePem }))).toBe(Code.Unavailable);
      await lateFerret.restart();
      expect(await outcomeOf(relayClient(late, peer).register({ email: peer.email, certificatePem: peer.certificatePem }))).toBe("ok");
      // The unique index exists now: the email cannot be taken twice.
      const other = await createTestPeer(peer.email);
      expect(await outcomeOf(relayClient(late, other).register({ email: peer.email, certificatePem: other.certificatePem }))).toBe(Code.AlreadyExists);
    } finally {
      await late.stop();
      await lateFerret.stop();
    }
  });
});

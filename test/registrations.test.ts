// Registrations stay bounded: new ones are rate limited per source network, ones that stop
// announcing are deleted after the retention, and an operator can turn List off. Flags are
// checked on the relay command; retention runs on a manual clock against both stores.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ManualClock } from "../src/shared/manual-clock.js";
import { createTestPeer, registeredClient, relayClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { startRelayProcess, type RelayProcess } from "./hostile/support.js";

let counter = 0;
function uniquePeer(): Promise<TestPeer> {
  return createTestPeer(`reg${++counter}-${process.pid}@example.com`);
}

async function errorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("the relay command with --list-visibility none --registrations-per-network 2 --registration-retention 2h", () => {
  let relay: RelayProcess;
  beforeAll(async () => {
    relay = await startRelayProcess(["--list-visibility", "none", "--registrations-per-network", "2", "--registration-retention", "2h"]);
  });
  afterAll(async () => relay?.kill());

  it("should say what it was given when it starts", () => {
    expect(relay.logs.find((line) => line.msg === "relay listening")).toMatchObject({ listVisibility: "none", registrationsPerNetwork: 2, registrationRetentionMs: 7_200_000 });
  });

  it("should refuse List with permission_denied and a clear message, and still answer Lookup", async () => {
    const peer = await uniquePeer();
    const client = await registeredClient(relay, peer);
    await client.ready({ port: 4000, addresses: ["127.0.0.2"] });
    const refused = await errorOf(client.list({}));
    expect(refused.code).toBe(Code.PermissionDenied);
    expect(refused.rawMessage).toBe("this relay does not list its peers (--list-visibility none): look a peer up by email with Lookup");
    expect((await client.lookup({ email: peer.email })).peer?.port).toBe(4000);
  });

  it("should refuse a new registration over the per-network budget, with a retry hint, but not a peer registering again", async () => {
    // The test above spent one of the two new registrations of 127.0.0.1's budget.
    const second = await uniquePeer();
    await registeredClient(relay, second);
    const third = await uniquePeer();
    const refused = await errorOf(relayClient(relay, third).register({ email: third.email, certificatePem: third.certificatePem }));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.rawMessage).toMatch(/^too many new registrations from this source network: at most 2 per hour; retry in \d+ s$/);
    expect(Number(refused.metadata.get("retry-after"))).toBeGreaterThan(3000);
    // Registering again on start costs nothing and is still answered.
    const again = await relayClient(relay, second).register({ email: second.email, certificatePem: second.certificatePem });
    expect(again.alreadyRegistered).toBe(true);
  });
});

describe("the registration limit on /metrics", () => {
  it("should count each refused registration as relay_rate_limited_total{by=\"registrations\"}", async () => {
    const relay = await startTestRelay({ registrationsPerNetworkPerHour: 1 });
    try {
      await registeredClient(relay, await uniquePeer());
      const refused = await uniquePeer();
      for (let i = 0; i < 2; i++) expect((await errorOf(relayClient(relay, refused).register({ email: refused.email, certificatePem: refused.certificatePem }))).code).toBe(Code.ResourceExhausted);
      const text = await relay.server.metrics.registry.metrics();
      expect(text).toContain('relay_rate_limited_total{by="registrations"} 2');
    } finally {
      await relay.stop();
    }
  });
});

describe.each([
  ["the in-memory store", false],
  ["MongoStore on FerretDB (the relay's own sweep)", true],
])("registration retention on %s", (_, onDatabase) => {
  let ferret: FerretDB | undefined;
  let relay: TestRelay;
  const clock = new ManualClock();
  const hour = 3_600_000;

  beforeAll(async () => {
    ferret = onDatabase ? await startFerretDB({ name: "retention" }) : undefined;
    relay = await startTestRelay({ clock, mongodbUri: ferret?.uri, registrationRetentionMs: 2 * hour, registrationCacheTtlMs: 1, sweepIntervalMs: 60_000 });
  });
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
  });

  it("should delete a registration that has not announced for the retention, keep one that announced, and free the email", async () => {
    const silent = await uniquePeer();
    const announcing = await uniquePeer();
    const silentClient = await registeredClient(relay, silent);
    const announcingClient = await registeredClient(relay, announcing);
    await clock.advance(1.5 * hour);
    await announcingClient.ready({ port: 5000 });
    // 2 h after Register the silent peer's registration is past its retention; the announcing
    // peer's runs 2 h from its Ready. The sweep runs every minute on the relay's clock.
    await clock.advance(0.5 * hour + 60_000);
    // The sweep's database round trip is real I/O: wait for it, within a bound.
    for (let i = 0; i < 100 && (await relay.store.findRegistration(silent.fingerprint)) !== undefined; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const gone = await errorOf(silentClient.getRegistration({ key: { case: "email", value: silent.email } }));
    expect(gone.code).toBe(Code.Unauthenticated);
    expect(gone.rawMessage).toMatch(/is not registered: call Register first/);
    expect((await announcingClient.getRegistration({ key: { case: "email", value: announcing.email } })).fingerprint).toBe(announcing.fingerprint);
    expect(await errorOf(announcingClient.getRegistration({ key: { case: "email", value: silent.email } }))).toMatchObject({ code: Code.NotFound });
    // The email is free: another certificate may take it.
    const successor = await createTestPeer(silent.email);
    const taken = await relayClient(relay, successor).register({ email: silent.email, certificatePem: successor.certificatePem });
    expect(taken.alreadyRegistered).toBe(false);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { timestampMs, durationMs } from "@bufbuild/protobuf/wkt";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, registeredClient, relayClient, heartbeatOnce, type Protocol, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { TestClock } from "./support/clock.js";
import type { KeyType } from "../src/shared/self-signed-certificate.js";
import { codeOf } from "./support/codes.js";

let counter = 0;
/** A peer with an email no other test uses. */
function uniquePeer(keyType?: KeyType): Promise<TestPeer> {
  return createTestPeer(`peer${++counter}-${process.pid}@example.com`, { keyType });
}

const ttlSeconds = 60;

describe.each(["memory", "mongodb"] as const)("relay with the %s store", (storeKind) => {
  let ferret: FerretDB | undefined;
  let relay: TestRelay;
  const clock = new TestClock();

  beforeAll(async () => {
    if (storeKind === "mongodb") ferret = await startFerretDB({ name: "relay-test" });
    // The clock jumps by two thirds of the ttl at a time: a grace as long as the ttl keeps a held
    // stream's presence from lapsing between two refreshes (presence has its own tests).
    relay = await startTestRelay({ mongodbUri: ferret?.uri, broadcastTtlSeconds: ttlSeconds, presenceGraceMs: ttlSeconds * 1000, clock });
  });
  afterAll(async () => {
    await relay?.stop();
    await ferret?.stop();
  });

  describe("Register", () => {
    it.each(["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048"] as const)("should register a %s certificate and answer its fingerprint as client_id", async (keyType) => {
      const peer = await uniquePeer(keyType);
      const client = relayClient(relay, peer);
      const response = await client.register({ email: peer.email, certificatePem: peer.certificatePem });
      expect(response.clientId).toBe(peer.fingerprint);
      expect(response.alreadyRegistered).toBe(false);
      expect(Math.abs(timestampMs(response.registeredAt!) - clock.now())).toBeLessThan(5000);
    });

    it("should be idempotent: the same email and certificate answer already_registered with the first time", async () => {
      const peer = await uniquePeer();
      const client = relayClient(relay, peer);
      const first = await client.register({ email: peer.email, certificatePem: peer.certificatePem });
      const again = await client.register({ email: peer.email.toUpperCase(), certificatePem: peer.certificatePem });
      expect(again.alreadyRegistered).toBe(true);
      expect(again.clientId).toBe(first.clientId);
      expect(timestampMs(again.registeredAt!)).toBe(timestampMs(first.registeredAt!));
    });

    it("should answer already_exists when the email is bound to another certificate", async () => {
      const owner = await uniquePeer();
      await registeredClient(relay, owner);
      const impostor = await createTestPeer(owner.email);
      expect(await codeOf(relayClient(relay, impostor).register({ email: owner.email, certificatePem: impostor.certificatePem }))).toBe(Code.AlreadyExists);
    });

    it("should answer permission_denied when the submitted certificate is not the connection's", async () => {
      const victim = await uniquePeer();
      const attacker = await uniquePeer();
      expect(await codeOf(relayClient(relay, attacker).register({ email: victim.email, certificatePem: victim.certificatePem }))).toBe(Code.PermissionDenied);
      // The victim's email is still free for the victim.
      expect((await relayClient(relay, victim).register({ email: victim.email, certificatePem: victim.certificatePem })).alreadyRegistered).toBe(false);
    });

    it("should end a race of many certificates for one email with one winner and already_exists for the rest", async () => {
      const email = `raced-${process.pid}-${storeKind}@example.com`;
      const peers = await Promise.all(Array.from({ length: 8 }, () => createTestPeer(email)));
      const outcomes = await Promise.allSettled(peers.map((peer) => relayClient(relay, peer).register({ email, certificatePem: peer.certificatePem })));
      const winners = outcomes.filter((outcome) => outcome.status === "fulfilled");
      expect(winners).toHaveLength(1);
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") expect(ConnectError.from(outcome.reason).code).toBe(Code.AlreadyExists);
      }
    });

    it("should answer every concurrent Register of one certificate with OK, exactly one of them new", async () => {
      const peer = await uniquePeer();
      const client = relayClient(relay, peer);
      const responses = await Promise.all(Array.from({ length: 6 }, () => client.register({ email: peer.email, certificatePem: peer.certificatePem })));
      expect(responses.filter((response) => !response.alreadyRegistered)).toHaveLength(1);
    });
  });

  describe("Ready and Lookup", () => {
    it("should announce port and addresses, deduplicated in the peer's order, and return them on Lookup", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      const ready = await client.ready({ port: 54321, addresses: ["127.0.0.2", "::1", "127.0.0.2", "::ffff:127.0.0.3"], capabilities: { proto: "http/1.1" } });
      expect(ready.broadcastId).not.toBe("");
      expect(ready.observedAddress).toBe("127.0.0.1");
      expect(timestampMs(ready.expiresAt!) - clock.now()).toBeGreaterThan((ttlSeconds - 5) * 1000);
      const interval = durationMs(ready.heartbeatInterval!);
      expect(interval).toBeGreaterThanOrEqual((ttlSeconds * 1000 * 0.9) / 3 - 1);
      expect(interval).toBeLessThanOrEqual((ttlSeconds * 1000 * 1.1) / 3 + 1);

      const other = await registeredClient(relay, await uniquePeer());
      const { peer: found } = await other.lookup({ email: peer.email.toUpperCase() });
      expect(found).toMatchObject({ email: peer.email, port: 54321, addresses: ["127.0.0.2", "::1", "127.0.0.3"], capabilities: { proto: "http/1.1" }, observedAddress: "127.0.0.1", fingerprint: peer.fingerprint });
      expect(timestampMs(found!.expiresAt!)).toBe(timestampMs(ready.expiresAt!));
    });

    it("should replace the previous broadcast on a new Ready, without merging stale addresses", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      const first = await client.ready({ port: 1000, addresses: ["127.0.0.2", "127.0.0.3"] });
      const second = await client.ready({ port: 2000, addresses: ["127.0.0.4"] });
      expect(second.broadcastId).not.toBe(first.broadcastId);
      const { peer: found } = await client.lookup({ email: peer.email });
      expect(found).toMatchObject({ port: 2000, addresses: ["127.0.0.4"] });
    });

    it("should answer not_found for a peer that is registered but not online, and for an unknown email", async () => {
      const offline = await uniquePeer();
      const client = await registeredClient(relay, offline);
      expect(await codeOf(client.lookup({ email: offline.email }))).toBe(Code.NotFound);
      expect(await codeOf(client.lookup({ email: "nobody@example.com" }))).toBe(Code.NotFound);
    });

    it.each(["grpc", "grpc-web", "connect", "connect-json"] as Protocol[])("should serve the %s protocol", async (protocol) => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer, protocol);
      await client.ready({ port: 4000, addresses: ["127.0.0.9"] });
      expect((await client.lookup({ email: peer.email })).peer?.port).toBe(4000);
    });
  });

  describe("GetRegistration", () => {
    it("should answer a registration by email and by fingerprint, in any case and with colons", async () => {
      const peer = await uniquePeer();
      const registered = await relayClient(relay, peer).register({ email: peer.email, certificatePem: peer.certificatePem });
      const asker = await registeredClient(relay, await uniquePeer());
      const expected = { email: peer.email, fingerprint: peer.fingerprint };
      const byEmail = await asker.getRegistration({ key: { case: "email", value: peer.email.toUpperCase() } });
      expect(byEmail).toMatchObject(expected);
      expect(timestampMs(byEmail.registeredAt!)).toBe(timestampMs(registered.registeredAt!));
      const colons = peer.fingerprint.toUpperCase().match(/../g)!.join(":");
      expect(await asker.getRegistration({ key: { case: "fingerprint", value: colons } })).toMatchObject(expected);
    });

    it("should answer not_found for an unknown email or fingerprint and invalid_argument for a malformed key", async () => {
      const asker = await registeredClient(relay, await uniquePeer());
      expect(await codeOf(asker.getRegistration({ key: { case: "email", value: `nobody-${process.pid}@example.com` } }))).toBe(Code.NotFound);
      expect(await codeOf(asker.getRegistration({ key: { case: "fingerprint", value: "ab".repeat(32) } }))).toBe(Code.NotFound);
      expect(await codeOf(asker.getRegistration({ key: { case: "fingerprint", value: "ab".repeat(31) } }))).toBe(Code.InvalidArgument);
      expect(await codeOf(asker.getRegistration({ key: { case: "email", value: "not an email" } }))).toBe(Code.InvalidArgument);
      expect(await codeOf(asker.getRegistration({}))).toBe(Code.InvalidArgument);
    });
  });

  describe("expiry and Heartbeat", () => {
    it("should expire a broadcast after the ttl: Lookup, List and Heartbeat no longer see it", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      await client.ready({ port: 3000, addresses: ["127.0.0.2"] });
      clock.advance((ttlSeconds + 1) * 1000);
      expect(await codeOf(client.lookup({ email: peer.email }))).toBe(Code.NotFound);
      const listed = await client.list({ pageSize: 1000 });
      expect(listed.peers.map((p) => p.email)).not.toContain(peer.email);
      expect(await codeOf(heartbeatOnce(client, {}))).toBe(Code.NotFound);
    });

    it("should extend the broadcast on every heartbeat message and answer each one", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      const ready = await client.ready({ port: 3000, addresses: ["127.0.0.2"] });
      const requests = createWritableIterable<{ broadcastId: string }>();
      const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
      let lastExpiry = timestampMs(ready.expiresAt!);
      for (let beat = 0; beat < 3; beat++) {
        clock.advance(((ttlSeconds * 2) / 3) * 1000); // past the original expiry by the third beat
        void requests.write({ broadcastId: beat === 0 ? ready.broadcastId : "" });
        const { value } = await responses.next();
        const expiresAt = timestampMs(value!.expiresAt!);
        expect(expiresAt).toBeGreaterThan(lastExpiry);
        expect(Math.abs(durationMs(value!.expiresIn!) - ttlSeconds * 1000)).toBeLessThan(1000);
        expect(durationMs(value!.nextHeartbeatIn!)).toBeLessThan(ttlSeconds * 1000);
        lastExpiry = expiresAt;
      }
      expect(timestampMs((await client.lookup({ email: peer.email })).peer!.expiresAt!)).toBe(lastExpiry);
      // A clean end of the stream is the peer leaving: withdrawn at once.
      requests.close();
      expect((await responses.next()).done).toBe(true);
      expect(await codeOf(client.lookup({ email: peer.email }))).toBe(Code.NotFound);
    });

    it("should answer failed_precondition when the broadcast_id is not the current one", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      const first = await client.ready({ port: 3000 });
      await client.ready({ port: 3001 });
      expect(await codeOf(heartbeatOnce(client, { broadcastId: first.broadcastId }))).toBe(Code.FailedPrecondition);
    });

    it("should answer not_found to a heartbeat of a peer that never announced", async () => {
      const client = await registeredClient(relay, await uniquePeer());
      expect(await codeOf(heartbeatOnce(client, {}))).toBe(Code.NotFound);
    });
  });

  describe("List", () => {
    it("should page through more peers than one page, ordered by email, each exactly once", async () => {
      const prefix = `list-${storeKind}-${process.pid}`;
      const peers = await Promise.all(Array.from({ length: 23 }, (_, i) => createTestPeer(`${prefix}-${String(i).padStart(2, "0")}@example.com`)));
      await Promise.all(peers.map(async (peer, i) => (await registeredClient(relay, peer)).ready({ port: 10_000 + i, addresses: ["127.0.0.2"] })));
      const client = relayClient(relay, peers[0]);
      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await client.list({ pageSize: 5, pageToken });
        expect(page.peers.length).toBeLessThanOrEqual(5);
        seen.push(...page.peers.map((p) => p.email));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "" && pages < 100);
      const ours = seen.filter((email) => email.startsWith(prefix));
      expect(ours).toEqual(peers.map((p) => p.email));
      expect(new Set(seen).size).toBe(seen.length);
      expect([...seen].sort()).toEqual(seen);
    });
  });

  describe("the error table", () => {
    it("should answer unauthenticated to every RPC on a connection without a client certificate", async () => {
      const client = relayClient(relay, undefined);
      const peer = await uniquePeer();
      expect(await codeOf(client.register({ email: peer.email, certificatePem: peer.certificatePem }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.ready({ port: 1 }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.lookup({ email: peer.email }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.list({}))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.getRegistration({ key: { case: "email", value: "a@example.com" } }))).toBe(Code.Unauthenticated);
      expect(await codeOf(heartbeatOnce(client, {}))).toBe(Code.Unauthenticated);
    });

    it("should answer unauthenticated to every RPC but Register for an unregistered certificate", async () => {
      const client = relayClient(relay, await uniquePeer());
      expect(await codeOf(client.ready({ port: 1 }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.lookup({ email: "a@example.com" }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.list({}))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.getRegistration({ key: { case: "email", value: "a@example.com" } }))).toBe(Code.Unauthenticated);
      expect(await codeOf(heartbeatOnce(client, {}))).toBe(Code.Unauthenticated);
    });

    it("should answer invalid_argument to Register with malformed or unfit certificates", async () => {
      const peer = await uniquePeer();
      const client = relayClient(relay, peer);
      const body = peer.certificatePem;
      const cases: Array<[string, string, string]> = [
        ["empty PEM", "", peer.email],
        ["not a PEM", "hello", peer.email],
        ["corrupted base64", body.replace(/[A-Za-z]{20}/, "AAAAAAAAAAAAAAAAAAAA"), peer.email],
        ["two certificates", body + body, peer.email],
        ["oversized PEM", "x".repeat(20_000), peer.email],
        ["email not in the certificate", body, "someone.else@example.com"],
        ["malformed email", body, "not-an-email"],
      ];
      for (const [name, certificatePem, email] of cases) {
        expect(await codeOf(client.register({ email, certificatePem })), name).toBe(Code.InvalidArgument);
      }
      // None of it bound anything: the peer registers normally afterwards.
      expect((await client.register({ email: peer.email, certificatePem: body })).alreadyRegistered).toBe(false);
    });

    it.each([
      ["expired", { notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }],
      ["not yet valid", { notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 3 * 86_400_000) }],
    ])("should answer invalid_argument to Register with an %s certificate", async (_, validity) => {
      const email = `validity-${++counter}-${process.pid}@example.com`;
      const peer = await createTestPeer(email, validity);
      expect(await codeOf(relayClient(relay, peer).register({ email, certificatePem: peer.certificatePem }))).toBe(Code.InvalidArgument);
    });

    it("should answer invalid_argument to a certificate whose CN and SAN disagree", async () => {
      const peer = await createTestPeer(`cn-${++counter}@example.com`, { emails: [`san-${counter}@example.com`] });
      const client = relayClient(relay, peer);
      expect(await codeOf(client.register({ email: `cn-${counter}@example.com`, certificatePem: peer.certificatePem }))).toBe(Code.InvalidArgument);
      expect(await codeOf(client.register({ email: `san-${counter}@example.com`, certificatePem: peer.certificatePem }))).toBe(Code.InvalidArgument);
    });

    it("should answer invalid_argument to bad Ready and List requests and keep the stored broadcast", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      await client.ready({ port: 5000, addresses: ["127.0.0.2"] });
      const bad: Array<[string, Parameters<typeof client.ready>[0]]> = [
        ["port 0", { port: 0 }],
        ["port 65536", { port: 65_536 }],
        ["host name", { port: 1, addresses: ["localhost"] }],
        ["address with port", { port: 1, addresses: ["127.0.0.1:80"] }],
        ["IPv6 zone id", { port: 1, addresses: ["fe80::1%eth0"] }],
        ["short IPv4", { port: 1, addresses: ["127.1"] }],
        ["too many addresses", { port: 1, addresses: Array.from({ length: 17 }, (_, i) => `127.0.1.${i}`) }],
        ["too many capabilities", { port: 1, capabilities: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) }],
        ["oversized capability", { port: 1, capabilities: { big: "v".repeat(300) } }],
      ];
      for (const [name, request] of bad) expect(await codeOf(client.ready(request)), name).toBe(Code.InvalidArgument);
      expect(await codeOf(client.list({ pageSize: 1001 }))).toBe(Code.InvalidArgument);
      for (const pageToken of ["garbage!", "eyJ2IjoyfQ", Buffer.from("not json").toString("base64url")]) {
        expect(await codeOf(client.list({ pageToken })), pageToken).toBe(Code.InvalidArgument);
      }
      expect(await codeOf(client.lookup({ email: "" }))).toBe(Code.InvalidArgument);
      expect((await client.lookup({ email: peer.email })).peer).toMatchObject({ port: 5000, addresses: ["127.0.0.2"] });
    });

    it("should refuse an oversized message with resource_exhausted before parsing it", async () => {
      const peer = await uniquePeer();
      const client = await registeredClient(relay, peer);
      expect(await codeOf(client.ready({ port: 1, capabilities: { big: "v".repeat(64 * 1024) } }))).toBe(Code.ResourceExhausted);
      expect(await codeOf(heartbeatOnce(client, { broadcastId: "x".repeat(1024) }))).toBe(Code.ResourceExhausted);
    });
  });

  describe("shutdown", () => {
    it("should end open heartbeat streams with unavailable", async () => {
      const own = await startTestRelay({ mongodbUri: ferret?.uri, broadcastTtlSeconds: ttlSeconds });
      const peer = await uniquePeer();
      const client = await registeredClient(own, peer);
      await client.ready({ port: 3000 });
      const requests = createWritableIterable<{ broadcastId: string }>();
      const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
      void requests.write({ broadcastId: "" });
      await responses.next();
      const closed = own.stop();
      expect(await codeOf(responses.next())).toBe(Code.Unavailable);
      await closed;
    });
  });
});


// TLS session resumption across a relay restart: with its ticket keys kept (loadTicketKeys in
// the data directory), a peer that reconnects with its session ticket resumes without a full
// handshake, and the relay still knows who it is. Real relay, real TLS, real certificates.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { loadTicketKeys } from "../src/server/identity/tls-ticket-keys.js";
import { createRelayClient } from "../src/client/relay-client.js";
import { createTestPeer, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";

const dataDir = mkdtempSync(join(tmpdir(), "relay-tickets-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.stop();
  relay = undefined;
});

/** One connection of peer to relay, resuming `session` when given; what it learnt. */
async function connectOnce(relay: TestRelay, peer: TestPeer, session?: Buffer): Promise<{ resumed: boolean; ticket: Buffer | undefined; clientId: string }> {
  let socket: tls.TLSSocket | undefined;
  let ticket: Buffer | undefined;
  const transport = createGrpcTransport({
    baseUrl: relay.url,
    nodeOptions: {
      createConnection: () => {
        socket = tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, ALPNProtocols: ["h2"], servername: "localhost", ...(session ? { session } : {}) });
        socket.on("session", (next: Buffer) => (ticket = next));
        return socket;
      },
    },
  });
  const client = createClient(RelayService, transport);
  const { clientId } = await client.register({ email: peer.email, certificatePem: peer.certificatePem });
  // TLS 1.3 tickets come after the handshake; one round trip more makes sure they arrived.
  await client.register({ email: peer.email, certificatePem: peer.certificatePem });
  const resumed = socket!.isSessionReused();
  socket!.destroy();
  return { resumed, ticket, clientId };
}

describe("TLS session resumption", () => {
  it("should resume a peer's session after a restart with the same ticket keys, and identify the peer", async () => {
    relay = await startTestRelay({ tlsTicketKeys: await loadTicketKeys(dataDir) });
    const peer = await createTestPeer(`resumed-${process.pid}@example.com`);
    const first = await connectOnce(relay, peer);
    expect(first.resumed).toBe(false);
    expect(first.ticket).toBeInstanceOf(Buffer);

    await relay.restart();
    const again = await connectOnce(relay, peer, first.ticket);

    expect(again.resumed).toBe(true);
    // Identity comes from the certificate the session carries: the same fingerprint.
    expect(again.clientId).toBe(peer.fingerprint);
  });

  it("should do a full handshake when the restarted relay has other ticket keys", async () => {
    relay = await startTestRelay({ tlsTicketKeys: await loadTicketKeys(dataDir) });
    const peer = await createTestPeer(`not-resumed-${process.pid}@example.com`);
    const first = await connectOnce(relay, peer);
    await relay.stop();

    relay = await startTestRelay({ port: relay.port, tlsTicketKeys: await loadTicketKeys(mkdtempSync(join(dataDir, "other-"))) });
    const again = await connectOnce(relay, peer, first.ticket);

    expect(again.resumed).toBe(false);
    expect(again.clientId).toBe(peer.fingerprint);
  });

  it("should let the client library resume its session after a restart, as counted by the relay", async () => {
    relay = await startTestRelay({ tlsTicketKeys: await loadTicketKeys(dataDir) });
    const peer = await createTestPeer(`library-${process.pid}@example.com`);
    const client = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity: { ...peer, directory: "" } });
    await client.register();
    await client.register(); // the session ticket arrives after the handshake

    await relay.restart();
    const again = await client.register();
    client.close();

    expect(again.clientId).toBe(peer.fingerprint);
    const handshakes = (await relay.server.metrics.tlsHandshakes.get()).values;
    expect(handshakes.find((value) => value.labels.resumed === "true")?.value).toBe(1);
    expect(handshakes.find((value) => value.labels.resumed === "false")?.value).toBe(0);
  });
});

// Who a connection counts against: before it authenticates, its source address (a small pool,
// the oldest silent connection closed first); after, its certificate (the oldest connection of a
// certificate over its cap gets GOAWAY), so peers behind one NAT are not limited by each other.
import type * as http2 from "node:http2";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { RegisterRequestSchema, RelayService } from "../../src/gen/relay/v1/relay_pb.js";
import { createTestPeer } from "../support/peers.js";
import { figure, startRelayProcess, waitFor, type RelayProcess } from "./support.js";

let relay: RelayProcess;

beforeAll(async () => {
  relay = await startRelayProcess(["--max-unauthenticated-per-source", "4", "--max-conns-per-cert", "2", "--rate-limit-per-ip", "0"]);
});
afterAll(async () => {
  await relay?.kill();
});

/** A client on a session of its own, from sourceAddress; the session manager tells whether it got GOAWAY. */
function clientOf(peer: { certificatePem: string; privateKeyPem: string }, sourceAddress: string) {
  const nodeOptions = { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, localAddress: sourceAddress } as http2.SecureClientSessionOptions;
  const sessionManager = new Http2SessionManager(relay.url, {}, nodeOptions);
  return { client: createClient(RelayService, createGrpcTransport({ baseUrl: relay.url, sessionManager })), sessionManager };
}

describe("connection counts", () => {
  it("should close the oldest silent connections of a source over --max-unauthenticated-per-source, and not count authenticated peers behind it", async () => {
    // Six registered peers behind one address, each holding its connection: more than 4, all kept.
    const peers = await Promise.all(Array.from({ length: 6 }, (_, i) => createTestPeer(`nat-${i}-${process.pid}@example.com`)));
    const clients = peers.map((peer) => clientOf(peer, "127.0.0.12"));
    for (const [i, { client }] of clients.entries()) await client.register({ email: peers[i]!.email, certificatePem: peers[i]!.certificatePem });
    // Then six silent TLS connections from the same address: the two oldest are closed at once.
    const opened = performance.now();
    const silent = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const socket = tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, servername: "localhost", localAddress: "127.0.0.12", ALPNProtocols: ["h2"] } as tls.ConnectionOptions);
        socket.on("error", () => {});
        await new Promise((resolve) => socket.once("secureConnect", resolve));
        return socket.resume();
      }),
    );
    const twoClosedAfterMs = await waitFor(() => silent.filter((socket) => socket.destroyed).length >= 2, 5000);
    figure(`source pool: 6 silent connections beside 6 authenticated peers from one address with --max-unauthenticated-per-source 4: 2 closed after ${((twoClosedAfterMs ?? NaN) / 1000).toFixed(2)} s (handshake timeout 10 s)`);
    expect(twoClosedAfterMs).toBeDefined();
    expect(silent.filter((socket) => socket.destroyed)).toHaveLength(2);
    // Every authenticated peer still answers on its connection.
    for (const [i, { client }] of clients.entries()) expect((await client.register({ email: peers[i]!.email, certificatePem: peers[i]!.certificatePem })).alreadyRegistered).toBe(true);
    for (const socket of silent) socket.destroy();
    for (const { sessionManager } of clients) sessionManager.abort();
  });

  it("should send GOAWAY to a certificate's oldest connection over --max-conns-per-cert", async () => {
    const peer = await createTestPeer(`many-${process.pid}@example.com`);
    const sessions: http2.ClientHttp2Session[] = [];
    const goaways: number[] = [];
    const { connect } = await import("node:http2");
    for (let i = 0; i < 3; i++) {
      const session = connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
      session.on("error", () => {});
      session.on("goaway", () => goaways.push(i));
      sessions.push(session);
      // Register on this very session: a gRPC call by hand.
      const message = toBinary(RegisterRequestSchema, create(RegisterRequestSchema, { email: peer.email, certificatePem: peer.certificatePem }));
      const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), Buffer.from(message)]);
      body.writeUInt32BE(message.length, 1);
      const stream = session.request({ ":method": "POST", ":path": `/${RelayService.typeName}/Register`, "content-type": "application/grpc", te: "trailers" });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("trailers", resolve));
      stream.resume();
      stream.end(body);
      expect((await trailers)["grpc-status"]).toBe("0");
    }
    await waitFor(() => goaways.length > 0, 3000);
    figure(`certificate pool: 3 connections of one certificate with --max-conns-per-cert 2: GOAWAY to connection(s) ${goaways.join(",")}`);
    expect(goaways).toEqual([0]);
    for (const session of sessions) session.destroy();
  });
});

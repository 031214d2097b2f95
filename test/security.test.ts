// Security: the relay as a hostile peer would try it. Real TLS, real certificates, raw HTTP/2
// where the generated client would refuse to send what an attacker sends.
import * as http2 from "node:http2";
import * as https from "node:https";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createTestPeer, registeredClient, relayClient, heartbeatOnce, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { TestClock } from "./support/clock.js";
import { codeOf } from "./support/codes.js";

let counter = 0;
function uniquePeer(): Promise<TestPeer> {
  return createTestPeer(`hostile${++counter}-${process.pid}@example.com`);
}


/** What a raw HTTP/2 request got back. */
interface RawAnswer {
  status?: number;
  /** grpc-status from headers or trailers. */
  grpcStatus?: string;
  body: string;
  /** RST_STREAM code, 0 when the stream closed normally. */
  rstCode?: number;
  /** Set when the stream failed on the client side (e.g. refused). */
  streamError?: string;
}

/**
 * One POST (unless headers say otherwise) on its own HTTP/2 connection, with peer's certificate.
 * afterSettings: send it only once the relay's SETTINGS have arrived (and so are acknowledged);
 * by default it goes out at once, as a client's first request usually does.
 */
function rawRequest(relay: TestRelay, peer: TestPeer | undefined, headers: http2.OutgoingHttpHeaders, body?: Buffer, afterSettings = false): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const session = http2.connect(relay.url, { ca: relay.caPem, ...(peer ? { cert: peer.certificatePem, key: peer.privateKeyPem } : {}) });
    session.on("error", (error) => resolve({ body: "", streamError: String(error) }));
    if (afterSettings) session.once("remoteSettings", () => setImmediate(send));
    else send();
    function send() {
      const stream = session.request({ ":method": "POST", ...headers });
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      let data = "";
      stream.on("response", (received) => (responseHeaders = received));
      stream.on("trailers", (received) => (trailers = received));
      stream.on("data", (chunk: Buffer) => (data += chunk.toString()));
      stream.on("error", (error) => resolve({ body: data, streamError: String(error) }));
      // "end": an answer sent before the request body was read (an oversized body) is complete
      // before the stream closes.
      const done = () => {
        const grpcStatus = responseHeaders["grpc-status"] ?? trailers["grpc-status"];
        resolve({ status: Number(responseHeaders[":status"]), grpcStatus: grpcStatus === undefined ? undefined : String(grpcStatus), body: data, rstCode: stream.rstCode });
        session.destroy();
      };
      stream.on("end", done);
      stream.on("close", done);
      stream.end(body);
    }
  });
}

/** A gRPC length-prefixed message; declaredLength lies about the size when given. */
function grpcFrame(message: Buffer, declaredLength = message.length, flags = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(flags, 0);
  prefix.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([prefix, message]);
}

const lookupPath = `/${RelayService.typeName}/${RelayService.method.lookup.name}`;
const registerPath = `/${RelayService.typeName}/${RelayService.method.register.name}`;
const grpcHeaders = { ":path": lookupPath, "content-type": "application/grpc", te: "trailers" };
const jsonHeaders = { ":path": lookupPath, "content-type": "application/json" };

describe("relay under hostile peers", () => {
  let relay: TestRelay;
  const clock = new TestClock();
  // A peer online before every attack: each attack must leave it registered and announced as it was.
  let victim: TestPeer;
  let victimClient: ReturnType<typeof relayClient>;
  let victimBroadcast: { broadcastId: string; expiresAtMs: number };

  beforeAll(async () => {
    relay = await startTestRelay({ clock, broadcastTtlSeconds: 600 });
    victim = await uniquePeer();
    victimClient = await registeredClient(relay, victim);
    const ready = await victimClient.ready({ port: 7000, addresses: ["127.0.0.2"] });
    victimBroadcast = { broadcastId: ready.broadcastId, expiresAtMs: timestampMs(ready.expiresAt!) };
  });
  afterAll(async () => {
    await relay?.stop();
  });

  /** The victim is still registered, online and unchanged, and the relay still serves. */
  async function expectVictimIntact(): Promise<void> {
    const observer = await registeredClient(relay, await uniquePeer());
    const { peer } = await observer.lookup({ email: victim.email });
    expect(peer).toMatchObject({ email: victim.email, port: 7000, addresses: ["127.0.0.2"] });
    expect(timestampMs(peer!.expiresAt!)).toBe(victimBroadcast.expiresAtMs);
    const again = await victimClient.register({ email: victim.email, certificatePem: victim.certificatePem });
    expect(again).toMatchObject({ alreadyRegistered: true, clientId: victim.fingerprint });
  }

  describe("identity", () => {
    it("should answer unauthenticated to every RPC on a connection without a certificate", async () => {
      const anonymous = relayClient(relay, undefined);
      expect(await codeOf(anonymous.register({ email: victim.email, certificatePem: victim.certificatePem }))).toBe(Code.Unauthenticated);
      expect(await codeOf(anonymous.lookup({ email: victim.email }))).toBe(Code.Unauthenticated);
      expect(await codeOf(anonymous.list({}))).toBe(Code.Unauthenticated);
      expect(await codeOf(anonymous.ready({ port: 1 }))).toBe(Code.Unauthenticated);
      expect(await codeOf(heartbeatOnce(anonymous, { broadcastId: victimBroadcast.broadcastId }))).toBe(Code.Unauthenticated);
      await expectVictimIntact();
    });

    it("should answer unauthenticated to an unregistered certificate, even one claiming a registered email", async () => {
      const claimant = await createTestPeer(victim.email);
      const client = relayClient(relay, claimant);
      expect(await codeOf(client.ready({ port: 1 }))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.lookup({ email: victim.email }))).toBe(Code.Unauthenticated);
      expect(await codeOf(heartbeatOnce(client, { broadcastId: victimBroadcast.broadcastId }))).toBe(Code.Unauthenticated);
      await expectVictimIntact();
    });

    it("should refuse registering someone else's certificate (permission_denied) or email (already_exists)", async () => {
      const attacker = await uniquePeer();
      const client = relayClient(relay, attacker);
      // The victim's certificate is public (any peer can Lookup... and it travels in Register), its key is not.
      expect(await codeOf(client.register({ email: victim.email, certificatePem: victim.certificatePem }))).toBe(Code.PermissionDenied);
      // A certificate of the attacker's own naming the victim's email.
      const lookalike = await createTestPeer(victim.email);
      expect(await codeOf(relayClient(relay, lookalike).register({ email: victim.email, certificatePem: lookalike.certificatePem }))).toBe(Code.AlreadyExists);
      // Upper case is the same email.
      const shouting = await createTestPeer(victim.email.toUpperCase());
      expect(await codeOf(relayClient(relay, shouting).register({ email: victim.email.toUpperCase(), certificatePem: shouting.certificatePem }))).toBe(Code.AlreadyExists);
      await expectVictimIntact();
    });

    it("should not let a replayed broadcast_id extend another peer's broadcast", async () => {
      const attacker = await uniquePeer();
      const client = await registeredClient(relay, attacker);
      clock.advance(60_000);
      // Without a broadcast of its own the id is nobody's for the attacker: not_found.
      expect(await codeOf(heartbeatOnce(client, { broadcastId: victimBroadcast.broadcastId }))).toBe(Code.NotFound);
      // With one, the victim's id is not the attacker's current one: failed_precondition.
      await client.ready({ port: 7001 });
      expect(await codeOf(heartbeatOnce(client, { broadcastId: victimBroadcast.broadcastId }))).toBe(Code.FailedPrecondition);
      // A Ready cannot take over the victim's email either: it announces the attacker's own.
      const { peer } = await client.lookup({ email: attacker.email });
      expect(peer?.port).toBe(7001);
      await expectVictimIntact();
    });

    it("should refuse a certificate whose CN and SAN disagree, whichever email is claimed", async () => {
      const n = ++counter;
      const split = await createTestPeer(`cn-${n}@example.com`, { emails: [`san-${n}@example.com`] });
      const client = relayClient(relay, split);
      expect(await codeOf(client.register({ email: `cn-${n}@example.com`, certificatePem: split.certificatePem }))).toBe(Code.InvalidArgument);
      expect(await codeOf(client.register({ email: `san-${n}@example.com`, certificatePem: split.certificatePem }))).toBe(Code.InvalidArgument);
    });

    it.each([
      ["expired", -3, -1],
      ["not yet valid", 1, 3],
    ])("should refuse a certificate that is %s on Register", async (_, fromDays, toDays) => {
      const day = 86_400_000;
      const email = `validity-${++counter}-${process.pid}@example.com`;
      const peer = await createTestPeer(email, { notBefore: new Date(Date.now() + fromDays * day), notAfter: new Date(Date.now() + toDays * day) });
      expect(await codeOf(relayClient(relay, peer).register({ email, certificatePem: peer.certificatePem }))).toBe(Code.InvalidArgument);
    });

    it("should refuse every RPC of a registered certificate once it has expired", async () => {
      const own = new TestClock();
      const local = await startTestRelay({ clock: own });
      try {
        const email = `expiring-${++counter}@example.com`;
        const peer = await createTestPeer(email, { notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 3_600_000) });
        const client = await registeredClient(local, peer);
        await client.ready({ port: 1 });
        own.advance(2 * 3_600_000);
        expect(await codeOf(client.ready({ port: 1 }))).toBe(Code.InvalidArgument);
        expect(await codeOf(client.lookup({ email }))).toBe(Code.InvalidArgument);
        expect(await codeOf(heartbeatOnce(client, {}))).toBe(Code.InvalidArgument);
      } finally {
        await local.stop();
      }
    });
  });

  describe("TLS 1.3 session resumption", () => {
    /** Connects with TLS (certificate optional), resolves with the session ticket the relay sends. */
    async function ticketFrom(peer: TestPeer | undefined): Promise<Buffer> {
      const socket = tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, servername: "localhost", ALPNProtocols: ["h2"], ...(peer ? { cert: peer.certificatePem, key: peer.privateKeyPem } : {}) });
      try {
        return await new Promise<Buffer>((resolve, reject) => {
          socket.once("session", resolve);
          socket.once("error", reject);
        });
      } finally {
        socket.destroy();
      }
    }

    /** A client on a connection that resumes session and presents no certificate. */
    async function resumedClient(session: Buffer) {
      const socket = tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, servername: "localhost", ALPNProtocols: ["h2"], session });
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      });
      expect(socket.getProtocol()).toBe("TLSv1.3");
      expect(socket.isSessionReused()).toBe(true);
      // http2.connect's createConnection: the transport speaks over the resumed socket.
      const nodeOptions = { createConnection: () => socket } as unknown as http2.SecureClientSessionOptions;
      return { socket, client: createClient(RelayService, createGrpcTransport({ baseUrl: relay.url, nodeOptions })) };
    }

    it("should answer unauthenticated on a resumed session whose first handshake had no certificate", async () => {
      const { socket, client } = await resumedClient(await ticketFrom(undefined));
      try {
        expect(await codeOf(client.lookup({ email: victim.email }))).toBe(Code.Unauthenticated);
        expect(await codeOf(client.register({ email: victim.email, certificatePem: victim.certificatePem }))).toBe(Code.Unauthenticated);
      } finally {
        socket.destroy();
      }
    });

    // A resumed TLS 1.3 handshake carries no certificate. Node 20's server (OpenSSL) restores the
    // certificate of the session's first handshake, so the resumed connection is the same peer,
    // never another one and never anonymous-with-authorized. Resuming needs the session's
    // pre-shared key, which only the client of the first handshake holds: a stolen ticket alone
    // does not resume. The relay reads the certificate per connection and never socket.authorized.
    it("should keep the first handshake's identity on a session resumed without a certificate", async () => {
      const owner = await uniquePeer();
      await registeredClient(relay, owner);
      const { socket, client } = await resumedClient(await ticketFrom(owner));
      try {
        const answer = await client.register({ email: owner.email, certificatePem: owner.certificatePem });
        expect(answer).toMatchObject({ clientId: owner.fingerprint, alreadyRegistered: true });
        // It cannot act as anyone else: the victim's certificate is not the connection's.
        expect(await codeOf(client.register({ email: victim.email, certificatePem: victim.certificatePem }))).toBe(Code.PermissionDenied);
      } finally {
        socket.destroy();
      }
      await expectVictimIntact();
    });
  });

  describe("malformed bodies", () => {
    // Codes as connect-es answers them (docs/PROTOCOL.md): an unparseable binary body is `internal`
    // (13, as grpc-go), a broken envelope or JSON is `invalid_argument` (3), an oversized
    // message `resource_exhausted` (8) before it is read.
    it.each([
      ["gRPC: protobuf cut short", "13", grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff]))],
      ["gRPC: illegal wire type", "13", grpcFrame(Buffer.from([0x0f, 0x01]))],
      ["gRPC: a string field that is not UTF-8", "13", grpcFrame(Buffer.from([0x0a, 0x02, 0xc3, 0x28]))],
      ["gRPC: compressed flag without grpc-encoding", "13", grpcFrame(Buffer.from([0x0a, 0x00]), 2, 1)],
      ["gRPC: envelope shorter than it says", "3", grpcFrame(Buffer.from([0x0a, 0x05]), 100)],
      ["gRPC: envelope declaring 2 GiB", "8", grpcFrame(Buffer.alloc(3), 0x7fffffff)],
      ["gRPC: a real message over readMaxBytes", "8", grpcFrame(Buffer.concat([Buffer.from([0x0a, 0x90, 0x4e]), Buffer.alloc(10_000, 0x61)]))],
    ])("should answer %s with grpc-status %s", async (_, grpcStatus, body) => {
      const answer = await rawRequest(relay, victim, grpcHeaders, body);
      expect(answer.status).toBe(200);
      expect(answer.grpcStatus).toBe(grpcStatus);
    });

    it.each([
      ["binary Connect: protobuf cut short", 500, "internal", "application/proto", Buffer.from([0xff, 0xff, 0xff])],
      ["JSON that does not parse", 400, "invalid_argument", "application/json", Buffer.from("{not json")],
      ["JSON with a field of the wrong type", 400, "invalid_argument", "application/json", Buffer.from('{"email": 5}')],
      ["JSON with a huge value", 429, "resource_exhausted", "application/json", Buffer.from(JSON.stringify({ email: "x".repeat(100_000) }))],
    ])("should answer %s with HTTP %i and %s", async (_, status, code, contentType, body) => {
      const answer = await rawRequest(relay, victim, { ":path": lookupPath, "content-type": contentType }, body);
      expect(answer.status).toBe(status);
      expect(JSON.parse(answer.body)).toMatchObject({ code });
    });

    it("should refuse a Register body over its limit without binding anything", async () => {
      const attacker = await uniquePeer();
      const huge = JSON.stringify({ email: attacker.email, certificatePem: attacker.certificatePem + " ".repeat(64 * 1024) });
      const answer = await rawRequest(relay, attacker, { ":path": registerPath, "content-type": "application/json" }, Buffer.from(huge));
      expect(JSON.parse(answer.body)).toMatchObject({ code: "resource_exhausted" });
      expect((await relayClient(relay, attacker).register({ email: attacker.email, certificatePem: attacker.certificatePem })).alreadyRegistered).toBe(false);
    });

    it("should keep serving and keep stored state after all of it", async () => {
      await expectVictimIntact();
    });
  });

  describe("paths and headers", () => {
    it.each([
      ["an unknown method", 404, { ":path": `/${RelayService.typeName}/Steal`, "content-type": "application/json" }],
      ["a path with dot segments", 404, { ":path": `/../${RelayService.typeName}/Lookup`, "content-type": "application/json" }],
      ["a path outside any service", 404, { ":path": "/etc/passwd", "content-type": "application/json" }],
      ["a wrong content-type", 415, { ":path": lookupPath, "content-type": "text/plain" }],
      ["a GET without the Connect GET parameters", 415, { ":method": "GET", ":path": lookupPath }],
    ] as Array<[string, number, http2.OutgoingHttpHeaders]>)("should answer %s with HTTP %i", async (_, status, headers) => {
      const answer = await rawRequest(relay, victim, headers, headers[":method"] === "GET" ? undefined : Buffer.from("{}"));
      expect(answer.status).toBe(status);
    });

    // The limit is 16 KiB (connectionLimits.maxHeaderListBytes, docs/operating.md). Node applies
    // its SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged it, so a request
    // sent at once is checked by the relay itself; both must refuse the same block.
    it.each([
      ["sent at once", false],
      ["sent after the SETTINGS are acknowledged", true],
    ])("should refuse a 20 KiB header block %s and serve a 15 KiB one", async (_, afterSettings) => {
      const lookup = Buffer.from(JSON.stringify({ email: victim.email }));
      const refused = await rawRequest(relay, victim, { ...jsonHeaders, "x-padding": "a".repeat(20 * 1024) }, lookup, afterSettings);
      expect(refused).toEqual({ body: "", streamError: expect.stringMatching(/NGHTTP2_ENHANCE_YOUR_CALM/) });
      const served = await rawRequest(relay, victim, { ...jsonHeaders, "x-padding": "a".repeat(15 * 1024) }, lookup, afterSettings);
      expect(served.streamError).toBeUndefined();
      expect(served.status).toBe(200);
      expect(JSON.parse(served.body)).toMatchObject({ peer: { email: victim.email } });
      await expectVictimIntact();
    });

    it("should advertise its header list and stream limits in its SETTINGS", async () => {
      const session = http2.connect(relay.url, { ca: relay.caPem, cert: victim.certificatePem, key: victim.privateKeyPem });
      try {
        const settings = await new Promise<http2.Settings>((resolve, reject) => {
          session.once("remoteSettings", resolve);
          session.once("error", reject);
        });
        expect(settings).toMatchObject({ maxHeaderListSize: 16 * 1024, maxConcurrentStreams: 32 });
      } finally {
        session.destroy();
      }
    });

    it("should reset a Connect client's call with a header block over the limit, and count it", async () => {
      const refusals = async () => (await relay.server.metrics.connectionLimited.get()).values.find((value) => value.labels.reason === "header_list_size")?.value;
      const before = await refusals();
      expect(before).toBeTypeOf("number");
      const oversized = relayClient(relay, victim, "connect-json").lookup({ email: victim.email }, { headers: { "x-padding": "a".repeat(20 * 1024) } });
      // connect-node reports a reset stream it did not expect as `internal`, naming the code.
      await expect(oversized).rejects.toThrow(/NGHTTP2_ENHANCE_YOUR_CALM/);
      expect(await refusals()).toBe(before! + 1);
    });

    it("should refuse a 100 KB header block (over HTTP/2's own bound) and keep serving the connection's peers", async () => {
      const answer = await rawRequest(relay, victim, { ...jsonHeaders, "x-padding": "a".repeat(100_000) }, Buffer.from("{}"));
      expect(answer).toEqual({ body: "", streamError: expect.stringMatching(/NGHTTP2_REFUSED_STREAM/) });
      await expectVictimIntact();
    });

    it("should answer 431 to an HTTP/1.1 request with 20 KiB of headers and close its connection", async () => {
      const answer = await new Promise<{ status: number; closed: boolean }>((resolve, reject) => {
        const request = https.request(relay.url + lookupPath, { method: "POST", agent: false, ca: relay.caPem, cert: victim.certificatePem, key: victim.privateKeyPem, headers: { "content-type": "application/json", "x-padding": "a".repeat(20 * 1024) } }, (response) => {
          response.resume();
          response.socket.once("close", () => resolve({ status: response.statusCode ?? 0, closed: true }));
        });
        request.on("error", reject);
        request.end("{}");
      });
      expect(answer).toEqual({ status: 431, closed: true });
    });

    it("should serve Connect JSON over HTTP/1.1 with the same identity rules", async () => {
      const post = (peer: TestPeer | undefined) =>
        new Promise<{ status: number; version: string; body: unknown }>((resolve, reject) => {
          const request = https.request(relay.url + lookupPath, { method: "POST", agent: false, ca: relay.caPem, ...(peer ? { cert: peer.certificatePem, key: peer.privateKeyPem } : {}), headers: { "content-type": "application/json" } }, (response) => {
            let body = "";
            response.on("data", (chunk: Buffer) => (body += chunk.toString()));
            response.on("end", () => resolve({ status: response.statusCode ?? 0, version: response.httpVersion, body: JSON.parse(body) }));
          });
          request.on("error", reject);
          request.end(JSON.stringify({ email: victim.email }));
        });
      expect(await post(undefined)).toMatchObject({ version: "1.1", status: 401, body: { code: "unauthenticated" } });
      const answer = await post(victim);
      expect(answer).toMatchObject({ version: "1.1", status: 200, body: { peer: { email: victim.email, port: 7000 } } });
    });
  });
});

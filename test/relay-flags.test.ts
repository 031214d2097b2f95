// Every limit flag of the relay command, end to end: the flag (or its env var) is parsed by
// loadConfig, wired by runRelay (what `relay` runs after parsing), and seen by a client. Each flag
// is set to a value unlike its default, so a flag that is parsed but not wired, or wired to the
// wrong field, fails here.
import * as http2 from "node:http2";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { ListRequestSchema } from "../src/gen/relay/v1/relay_pb.js";
import { loadConfig } from "../src/server/ops/config.js";
import { runRelay, type RunningRelay } from "../src/server/main.js";
import { createSelfSignedCertificate } from "../src/shared/self-signed-certificate.js";
import { fingerprintOf } from "../src/shared/fingerprint.js";
import { createTestPeer, registeredClient, relayClient, type TestPeer } from "./support/peers.js";

const dirs: string[] = [];
const running: RunningRelay[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((relay) => relay.stop()));
});
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A relay from command-line flags and env vars, on free loopback ports, with its admin listener. */
async function startRelay(flags: string[], env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "relay-flags-"));
  dirs.push(dataDir);
  const config = loadConfig(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dataDir, ...flags], env);
  if (config === "help") throw new Error("unexpected help");
  const relay = await runRelay(config, pino({ level: process.env.RELAY_TEST_LOG_LEVEL ?? "silent" }));
  running.push(relay);
  // The generated certificate, when the relay made one (not with --tls-cert).
  const generated = join(dataDir, "relay-cert.pem");
  const caPem = existsSync(generated) ? readFileSync(generated, "utf8") : "";
  return { relay, url: relay.server.url, caPem, adminUrl: relay.admin!.url, dataDir };
}

/** relay_connection_limited_total{reason} as the admin listener's /metrics shows it. */
async function connectionLimited(adminUrl: string, reason: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const match = new RegExp(`^relay_connection_limited_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
  if (!match) throw new Error(`no relay_connection_limited_total{reason="${reason}"} in /metrics`);
  return Number(match[1]);
}

/** An HTTP/2 connection with peer's certificate, once the relay's SETTINGS have arrived. */
function connect(relay: { url: string; caPem: string }, peer: TestPeer, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, settings });
    session.once("remoteSettings", () => resolve(session));
    session.once("error", reject);
  });
}

async function errorOf(call: Promise<unknown>): Promise<ConnectError> {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => ConnectError.from(caught),
  );
  if (error === undefined) throw new Error("expected the call to fail");
  return error;
}

let counter = 0;
function uniquePeer(): Promise<TestPeer> {
  return createTestPeer(`flags${++counter}-${process.pid}@example.com`);
}

describe("relay limit flags, end to end", () => {
  it("--rate-limit-per-cert and --rate-limit-window: the fourth request of a certificate in a 20 s window is refused", async () => {
    const relay = await startRelay(["--rate-limit-per-cert", "3", "--rate-limit-window", "20s", "--rate-limit-per-ip", "1000"]);
    const peer = await uniquePeer();
    const client = await registeredClient(relay, peer);
    await client.ready({ port: 1 });
    await client.lookup({ email: peer.email });
    const error = await errorOf(client.lookup({ email: peer.email }));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toMatch(/^rate limit exceeded for this client certificate: at most 3 requests per 20 s; retry in \d+ s$/);
    expect(Number(error.metadata.get("retry-after"))).toBeGreaterThan(10);
    expect(Number(error.metadata.get("retry-after"))).toBeLessThanOrEqual(20);
  });

  it("RELAY_RATE_LIMIT_PER_IP: the fourth request from one address is refused, whatever certificates it uses", async () => {
    const relay = await startRelay(["--rate-limit-per-cert", "1000"], { RELAY_RATE_LIMIT_PER_IP: "3" });
    const codes: Code[] = [];
    for (let i = 0; i < 3; i++) codes.push((await errorOf(relayClient(relay, await uniquePeer()).lookup({ email: "x@example.com" }))).code);
    expect(codes).toEqual([Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated]);
    const error = await errorOf(relayClient(relay, await uniquePeer()).lookup({ email: "x@example.com" }));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toMatch(/^rate limit exceeded for this source network: at most 3 requests per 10 s/);
  });

  it("--max-streams: the relay advertises it in SETTINGS_MAX_CONCURRENT_STREAMS", async () => {
    const relay = await startRelay(["--max-streams", "3"]);
    const session = await connect(relay, await uniquePeer());
    expect(session.remoteSettings.maxConcurrentStreams).toBe(3);
    session.destroy();
  });

  it("--idle-timeout: a connection with no stream is closed after it, and counted", async () => {
    const relay = await startRelay(["--idle-timeout", "500ms"]);
    expect(await connectionLimited(relay.adminUrl, "idle")).toBe(0);
    const session = await connect(relay, await uniquePeer());
    const opened = performance.now();
    await new Promise((resolve) => session.once("close", resolve));
    const lifetime = performance.now() - opened;
    expect(lifetime).toBeGreaterThanOrEqual(400);
    expect(lifetime).toBeLessThan(5_000);
    expect(await connectionLimited(relay.adminUrl, "idle")).toBe(1);
  });

  it("--request-timeout: a unary request whose body stalls is reset with CANCEL after it, and counted", async () => {
    const relay = await startRelay(["--request-timeout", "500ms"]);
    const session = await connect(relay, await uniquePeer());
    try {
      const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/Lookup", "content-type": "application/grpc", te: "trailers" });
      stream.on("error", () => {});
      const opened = performance.now();
      // An envelope announcing 10 bytes, and then nothing.
      stream.write(Buffer.from([0, 0, 0, 0, 10]));
      await new Promise((resolve) => stream.once("close", resolve));
      const lifetime = performance.now() - opened;
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(lifetime).toBeGreaterThanOrEqual(400);
      expect(lifetime).toBeLessThan(5_000);
      expect(await connectionLimited(relay.adminUrl, "request_timeout")).toBe(1);
    } finally {
      session.destroy();
    }
  });

  it("--max-session-memory: with 1 MiB, new streams are refused once a connection holds that much unsent", async () => {
    // Responses a client does not read (its stream window is 0) stay queued in the relay's
    // session: about 160 KB per List page here. --max-session-buffer 0 turns off the relay's own
    // cap on unsent bytes, so Node's session memory limit is the one met.
    const relay = await startRelay(["--max-session-memory", "1", "--max-session-buffer", "0", "--rate-limit-per-cert", "0", "--rate-limit-per-ip", "0", "--registrations-per-network", "0"]);
    const capabilities = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${String(i).padStart(14, "0")}`, "v".repeat(240)]));
    const peers = await Promise.all(Array.from({ length: 40 }, () => uniquePeer()));
    for (const peer of peers) await (await registeredClient(relay, peer)).ready({ port: 1, addresses: ["127.0.0.2"], capabilities });

    const session = await connect(relay, peers[0]!, { initialWindowSize: 0 });
    try {
      const body = toBinary(ListRequestSchema, create(ListRequestSchema, { pageSize: 1000 }));
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), Buffer.from(body)]);
      const outcomes: string[] = [];
      for (let i = 0; i < 12; i++) {
        const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/List", "content-type": "application/grpc", te: "trailers" });
        outcomes.push(
          await new Promise<string>((resolve) => {
            stream.once("response", (headers) => resolve(`HTTP ${headers[":status"]}`));
            stream.once("error", (error) => resolve(error.message));
            stream.end(envelope);
          }),
        );
      }
      // 12 pages are about 2 MB: under the default 4 MiB every one would be answered.
      const refused = outcomes.indexOf("Stream closed with error code NGHTTP2_ENHANCE_YOUR_CALM");
      expect(refused).toBeGreaterThan(1);
      expect(outcomes.slice(0, refused)).toEqual(Array(refused).fill("HTTP 200"));
    } finally {
      session.destroy();
    }
  });

  it("--drain-delay: on stop the relay goes NOT_SERVING and still serves new connections for the delay", async () => {
    const relay = await startRelay(["--drain-delay", "1s"]);
    const peer = await uniquePeer();
    await registeredClient(relay, peer);
    const started = performance.now();
    const stopping = relay.relay.stop();
    running.splice(running.indexOf(relay.relay), 1);
    expect((await fetch(`${relay.adminUrl}/readyz`)).status).toBe(503);
    // A new connection during the drain is served.
    expect((await relayClient(relay, peer).register({ email: peer.email, certificatePem: peer.certificatePem })).alreadyRegistered).toBe(true);
    await stopping;
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect((await errorOf(relayClient(relay, peer).register({ email: peer.email, certificatePem: peer.certificatePem }))).code).toBe(Code.Unavailable);
  });
});

describe("the relay command's certificate and shutdown", () => {
  it("--tls-cert and --tls-key: the relay serves that certificate and generates none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "relay-tls-"));
    dirs.push(dir);
    const given = await createSelfSignedCertificate({ commonName: "relay.example", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], keyType: "ecdsa-p256" });
    writeFileSync(join(dir, "cert.pem"), given.certificatePem);
    writeFileSync(join(dir, "key.pem"), given.privateKeyPem);
    const relay = await startRelay(["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")]);
    expect(existsSync(join(relay.dataDir, "relay-cert.pem"))).toBe(false);
    const served = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port: relay.relay.server.port, ca: given.certificatePem, servername: "localhost", ALPNProtocols: ["h2"] }, () => {
        resolve(socket.getPeerX509Certificate()!);
        socket.destroy();
      });
      socket.once("error", reject);
    });
    expect(fingerprintOf(served)).toBe(fingerprintOf(new X509Certificate(given.certificatePem)));
    // And a peer that trusts it calls the relay.
    const peer = await uniquePeer();
    const answer = await relayClient({ url: relay.url, caPem: given.certificatePem }, peer).register({ email: peer.email, certificatePem: peer.certificatePem });
    expect(answer.clientId).toBe(peer.fingerprint);
  });

  it("destroys a connection still busy 5 s after GOAWAY (the shutdown grace), well before --shutdown-timeout", async () => {
    const relay = await startRelay(["--request-timeout", "0", "--write-timeout", "0", "--max-session-buffer", "0"]);
    const peer = await uniquePeer();
    await registeredClient(relay, peer);
    // A client that stops reading: its List answer cannot be sent (stream window 0), so its
    // connection cannot close by itself after GOAWAY.
    const session = await connect(relay, peer, { initialWindowSize: 0 });
    const body = toBinary(ListRequestSchema, create(ListRequestSchema, {}));
    const stream = session.request({ ":method": "POST", ":path": "/relay.v1.RelayService/List", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    await new Promise((resolve) => {
      stream.once("response", resolve);
      stream.end(Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), Buffer.from(body)]));
    });
    const goaway = new Promise<number>((resolve) => session.once("goaway", () => resolve(performance.now())));
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(performance.now())));
    session.on("error", () => {});
    const started = performance.now();
    const stopping = relay.relay.stop();
    running.splice(running.indexOf(relay.relay), 1);
    expect((await goaway) - started).toBeLessThan(1_000);
    const closedAfter = (await closed) - started;
    expect(closedAfter).toBeGreaterThanOrEqual(4_500);
    expect(closedAfter).toBeLessThan(9_000);
    await stopping;
  });
});

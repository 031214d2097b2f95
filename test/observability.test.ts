// Operability against a real relay on FerretDB over mutual TLS: buf curl (from the npm package)
// finds and calls every RPC through server reflection, /metrics counts what happened, and
// health follows the database: NOT_SERVING while FerretDB is down, SERVING once it is back.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../src/gen/grpc/health/v1/health_pb.js";
import { createAdminServer, type AdminServer } from "../src/server/ops/admin-server.js";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, registeredClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";

const run = promisify(execFile);
const buf = new URL("../node_modules/.bin/buf", import.meta.url).pathname;

describe("operability", () => {
  let ferret: FerretDB;
  let relay: TestRelay;
  let admin: AdminServer;
  let dir: string;
  let peer: TestPeer;

  /** Runs `buf curl` with the peer's certificate and the relay's CA; answers its JSON output. */
  async function bufCurl(args: string[], input?: string): Promise<string> {
    const child = run(buf, ["curl", "--cert", join(dir, "peer.pem"), "--key", join(dir, "peer-key.pem"), "--cacert", join(dir, "relay-ca.pem"), ...args], { timeout: 30_000 });
    if (input !== undefined) child.child.stdin?.end(input);
    return (await child).stdout;
  }
  const url = (rpc: string) => `${relay.url}/${rpc}`;

  async function scrape(): Promise<string> {
    return (await fetch(`${admin.url}/metrics`)).text();
  }
  function sample(text: string, series: string): number {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
  }

  beforeAll(async () => {
    ferret = await startFerretDB({ name: "observability" });
    relay = await startTestRelay({ mongodbUri: ferret.uri, healthProbeIntervalMs: 200 });
    admin = await createAdminServer({ registry: relay.server.metrics.registry, readiness: relay.server.readiness, logger: pino({ level: "silent" }) });
    dir = mkdtempSync(join(tmpdir(), "relay-observability-"));
    peer = await createTestPeer(`curl-${process.pid}@example.com`);
    writeFileSync(join(dir, "peer.pem"), peer.certificatePem);
    writeFileSync(join(dir, "peer-key.pem"), peer.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(dir, "relay-ca.pem"), relay.caPem);
  });
  afterAll(async () => {
    await admin?.close();
    await relay?.stop();
    await ferret?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe("buf curl through reflection", () => {
    it("should list every method", async () => {
      const methods = (await bufCurl(["--list-methods", relay.url])).trim().split("\n");
      expect(methods).toEqual(
        expect.arrayContaining([
          "relay.v1.RelayService/Register",
          "relay.v1.RelayService/Ready",
          "relay.v1.RelayService/Heartbeat",
          "relay.v1.RelayService/Lookup",
          "relay.v1.RelayService/List",
          "grpc.health.v1.Health/Check",
          "grpc.health.v1.Health/Watch",
          "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ]),
      );
    });

    it.each(["connect", "grpc", "grpcweb"])("should call every RPC over %s and answer protobuf JSON", async (protocol) => {
      const register = JSON.parse(await bufCurl(["--protocol", protocol, "-d", JSON.stringify({ email: peer.email, certificatePem: peer.certificatePem }), url("relay.v1.RelayService/Register")])) as Record<string, unknown>;
      expect(register.clientId).toBe(peer.fingerprint);
      expect(register.registeredAt).toMatch(/^\d{4}-\d\d-\d\dT/);

      const ready = JSON.parse(await bufCurl(["--protocol", protocol, "-d", '{"port": 4100, "addresses": ["127.0.0.1", "::1"], "capabilities": {"proto": "http/1.1"}}', url("relay.v1.RelayService/Ready")])) as Record<string, string>;
      expect(ready).toMatchObject({ observedAddress: "127.0.0.1" });
      expect(ready.broadcastId).toBeTruthy();
      expect(ready.heartbeatInterval).toMatch(/^\d+(\.\d+)?s$/);

      const lookup = JSON.parse(await bufCurl(["--protocol", protocol, "-d", JSON.stringify({ email: peer.email.toUpperCase() }), url("relay.v1.RelayService/Lookup")])) as { peer: Record<string, unknown> };
      expect(lookup.peer).toMatchObject({ email: peer.email, port: 4100, addresses: ["127.0.0.1", "::1"], capabilities: { proto: "http/1.1" } });

      const list = JSON.parse(await bufCurl(["--protocol", protocol, "-d", '{"pageSize": 1000}', url("relay.v1.RelayService/List")])) as { peers: Array<{ email: string }> };
      expect(list.peers.map((p) => p.email)).toContain(peer.email);

      const health = JSON.parse(await bufCurl(["--protocol", protocol, "-d", '{"service": "relay.v1.RelayService"}', url("grpc.health.v1.Health/Check")])) as { status: string };
      expect(health.status).toBe("SERVING");
    });

    it("should heartbeat on the bidi stream, one answer per message", async () => {
      await bufCurl(["-d", JSON.stringify({ email: peer.email, certificatePem: peer.certificatePem }), url("relay.v1.RelayService/Register")]);
      const { broadcastId } = JSON.parse(await bufCurl(["-d", '{"port": 4100}', url("relay.v1.RelayService/Ready")])) as { broadcastId: string };
      const output = await bufCurl(["--protocol", "grpc", "-d", "@-", url("relay.v1.RelayService/Heartbeat")], `{"broadcastId": "${broadcastId}"} {} {}`);
      // buf curl prints one pretty JSON object per response message.
      const answers = output.split(/\n(?=\{)/).map((text) => JSON.parse(text) as Record<string, string>);
      expect(answers).toHaveLength(3);
      for (const answer of answers) expect(answer).toMatchObject({ expiresIn: "3600s" });
    });

    it("should answer a Connect error as JSON with the code", async () => {
      const result = await bufCurl(["-d", '{"email": "nobody@example.com"}', url("relay.v1.RelayService/Lookup")]).then(
        () => undefined,
        (error: { stderr: string }) => error.stderr,
      );
      expect(JSON.parse(result!)).toMatchObject({ code: "not_found" });
    });
  });

  describe("grpcurl through reflection", () => {
    const grpcurl = join(process.env.RELAY_TOOLS_DIR ?? join(homedir(), ".cache", "relay-tools"), "bin", "grpcurl");
    const withCertificate = () => ["-cacert", join(dir, "relay-ca.pem"), "-cert", join(dir, "peer.pem"), "-key", join(dir, "peer-key.pem"), `127.0.0.1:${relay.port}`];

    beforeAll(async () => {
      await run("bash", [new URL("../scripts/install-grpcurl.sh", import.meta.url).pathname], { timeout: 300_000 });
    }, 300_000);

    it("should list services and describe the relay service and its messages", async () => {
      const { stdout: services } = await run(grpcurl, [...withCertificate(), "list"]);
      expect(services.trim().split("\n")).toEqual(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "relay.v1.RelayService"]);
      const { stdout: service } = await run(grpcurl, [...withCertificate(), "describe", "relay.v1.RelayService"]);
      expect(service).toContain("rpc Heartbeat ( stream .relay.v1.HeartbeatRequest ) returns ( stream .relay.v1.HeartbeatResponse );");
      const { stdout: message } = await run(grpcurl, [...withCertificate(), "describe", "relay.v1.Peer"]);
      expect(message).toContain(".google.protobuf.Timestamp expires_at = 6;");
    });

    it("should call an RPC with a JSON body", async () => {
      const { stdout } = await run(grpcurl, ["-d", '{"service": ""}', ...withCertificate(), "grpc.health.v1.Health/Check"]);
      expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
    });
  });

  describe("/metrics", () => {
    it("should count requests by rpc and code, and peers online by family", async () => {
      const before = await scrape();
      const lookups = 'relay_rpc_requests_total{rpc="relay.v1.RelayService/Lookup",code="not_found"}';
      const registers = 'relay_rpc_requests_total{rpc="relay.v1.RelayService/Register",code="ok"}';
      await bufCurl(["-d", JSON.stringify({ email: peer.email, certificatePem: peer.certificatePem }), url("relay.v1.RelayService/Register")]);
      await bufCurl(["-d", '{"port": 4100, "addresses": ["::1"]}', url("relay.v1.RelayService/Ready")]);
      await bufCurl(["-d", '{"email": "nobody@example.com"}', url("relay.v1.RelayService/Lookup")]).catch(() => undefined);
      const after = await scrape();
      expect(sample(after, registers) - (sample(before, registers) || 0)).toBe(1);
      expect(sample(after, lookups) - (sample(before, lookups) || 0)).toBe(1);
      expect(sample(after, 'relay_rpc_duration_seconds_count{rpc="relay.v1.RelayService/Register"}')).toBeGreaterThan(0);
      expect(sample(after, "relay_registered_peers")).toBeGreaterThanOrEqual(1);
      expect(sample(after, 'relay_online_peers_by_family{family="ipv6"}')).toBeGreaterThanOrEqual(1);
      expect(sample(after, "relay_heartbeat_streams_open")).toBe(0);
      expect(sample(after, 'relay_rate_limited_total{by="ip"}')).toBe(0);
    });
  });

  describe("limits on /metrics", () => {
    it("should count rate-limit rejections by key", async () => {
      const limited = await startTestRelay({ rateLimits: { perIp: 0, perCertificate: 2, windowSeconds: 60 } });
      try {
        const client = await registeredClient(limited, await createTestPeer(`limited-${process.pid}@example.com`));
        await client.lookup({ email: "nobody@example.com" }).catch(() => undefined);
        const refused = await client.lookup({ email: "nobody@example.com" }).then(
          () => undefined,
          (error: unknown) => ConnectError.from(error),
        );
        expect(refused?.code).toBe(Code.ResourceExhausted);
        const text = await limited.server.metrics.registry.metrics();
        expect(sample(text, 'relay_rate_limited_total{by="certificate"}')).toBe(1);
        expect(sample(text, 'relay_rpc_requests_total{rpc="relay.v1.RelayService/Lookup",code="resource_exhausted"}')).toBe(1);
      } finally {
        await limited.stop();
      }
    });
  });

  describe("health", () => {
    it("should go NOT_SERVING while FerretDB is down and SERVING when it is back", async () => {
      const transport = createGrpcTransport({ baseUrl: relay.url, nodeOptions: { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem } });
      const health = createClient(Health, transport);
      const abort = new AbortController();
      const watch = health.watch({ service: "" }, { signal: abort.signal, timeoutMs: 60_000 })[Symbol.asyncIterator]();
      const next = async () => (await watch.next()).value?.status;
      try {
        expect(await next()).toBe(ServingStatus.SERVING);
        expect((await fetch(`${admin.url}/readyz`)).status).toBe(200);

        await ferret.kill();
        expect(await next()).toBe(ServingStatus.NOT_SERVING);
        expect((await health.check({ service: "relay.v1.RelayService" })).status).toBe(ServingStatus.NOT_SERVING);
        expect((await fetch(`${admin.url}/readyz`)).status).toBe(503);
        expect(sample(await scrape(), 'relay_store_errors_total{operation="ping"}')).toBeGreaterThan(0);

        await ferret.restart();
        expect(await next()).toBe(ServingStatus.SERVING);
        expect((await fetch(`${admin.url}/readyz`)).status).toBe(200);
      } finally {
        abort.abort();
      }
    });

    it("should go NOT_SERVING when the relay shuts down, before its streams end", async () => {
      const stopping = await startTestRelay();
      const health = createClient(Health, createGrpcTransport({ baseUrl: stopping.url, nodeOptions: { ca: stopping.caPem, cert: peer.certificatePem, key: peer.privateKeyPem } }));
      const watch = health.watch({ service: "relay.v1.RelayService" }, { timeoutMs: 60_000 })[Symbol.asyncIterator]();
      expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);
      const stopped = stopping.stop();
      expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
      // Then the stream ends (ok or unavailable, depending on how far shutdown got).
      await watch.next().catch(() => undefined);
      await stopped;
    });
  });
});

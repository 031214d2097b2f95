import { createServer, type AddressInfo, type Socket } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { startFerretDB, type FerretDB } from "./support/ferretdb.js";
import { createTestPeer, registeredClient, relayClient } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { outcomeOf } from "./support/codes.js";

describe("when the database stops mid-run", () => {
  let ferret: FerretDB;
  let relay: TestRelay;
  // The relay's log at its default level, line by line.
  const lines: string[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString().trimEnd()), done()) }));

  beforeAll(async () => {
    ferret = await startFerretDB({ name: "outage" });
    relay = await startTestRelay({ mongodbUri: ferret.uri, registrationCacheTtlMs: 1, logger });
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
    // Each call answers unavailable within a bound on the 2 s server selection timeout
    // (docs/operating.md: "within about 2 s"), with a generic message: driver details stay in the log.
    const timed = async (call: Promise<unknown>) => {
      const started = performance.now();
      const outcome = await outcomeOf(call);
      return { outcome, withinBound: performance.now() - started < 5_000 };
    };
    const during = [
      await timed(relayClient(relay, newcomer).register({ email: newcomer.email, certificatePem: newcomer.certificatePem })),
      await timed(onlineClient.lookup({ email: online.email })),
      await timed(onlineClient.list({})),
      await timed(onlineClient.ready({ port: 7001 })),
    ];
    expect(during).toEqual(Array(4).fill({ outcome: Code.Unavailable, withinBound: true }));
    await expect(onlineClient.lookup({ email: online.email })).rejects.toMatchObject({ code: Code.Unavailable, rawMessage: "the relay's database is unavailable; retry shortly" });

    // One short line per failed RPC, naming the client and the cause; no stack, no driver dump.
    const failed = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === "rpc failed");
    expect(failed.map((entry) => entry.rpc)).toEqual(["Register", "Lookup", "List", "Ready", "Lookup"].map((rpc) => `relay.v1.RelayService/${rpc}`));
    for (const entry of failed) {
      expect(entry).toMatchObject({ code: "unavailable", address: "127.0.0.1", reason: "the relay's database is unavailable; retry shortly" });
      expect(entry.cause).toMatch(/^StoreUnavailableError: store \w+ failed: Mongo\w*Error: /);
      expect(entry).not.toHaveProperty("err");
    }
    for (const line of lines) expect(line.length).toBeLessThan(1024);

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

  it("should answer unavailable in under 5 s (2 s server selection) when the database accepts connections and never answers", async () => {
    // A database host that drops packets: connections open, nothing comes back. Only the
    // driver's timeouts can end the wait, so this bounds "within about 2 s".
    const silent = createServer(() => {});
    const sockets = new Set<Socket>();
    silent.on("connection", (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    const stuck = await startTestRelay({ mongodbUri: `mongodb://127.0.0.1:${port}/relay` });
    try {
      const peer = await createTestPeer(`silent-${process.pid}@example.com`);
      const started = performance.now();
      const outcome = await outcomeOf(relayClient(stuck, peer).register({ email: peer.email, certificatePem: peer.certificatePem }));
      const elapsedMs = performance.now() - started;
      expect(outcome).toBe(Code.Unavailable);
      expect(sockets.size).toBeGreaterThan(0);
      expect(elapsedMs).toBeLessThan(5_000);
    } finally {
      await stuck.stop();
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});

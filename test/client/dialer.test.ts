import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { PeerSchema, type Peer } from "../../gen/relay/v1/relay_pb.js";
import { createDialer, type PeerState } from "../../src/client/dialer.js";
import { closedPort, startPeerHttpServer, startSilentServer, type PeerHttpServer } from "./loopback.js";

// Every candidate here is on loopback: closed ports on 127.0.0.x stand for unreachable addresses,
// a silent server on 127.0.0.3 for a blackholed one.
describe("Dialer on loopback", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  async function peerServer(host = "127.0.0.1"): Promise<PeerHttpServer> {
    const server = await startPeerHttpServer(host);
    cleanups.push(() => server.close());
    return server;
  }

  function peer(port: number, addresses: string[], observedAddress = ""): Peer {
    return create(PeerSchema, { email: "alice@example.com", port, addresses, observedAddress });
  }

  it.each(["sequential", "staggered"] as const)("should, %s, skip a refused candidate and reach the next", async (strategy) => {
    // 127.0.0.2 has nothing on the server's port: the peer's one port, refused on that address.
    const server = await peerServer();
    const dialer = createDialer({ strategy, attemptTimeoutMs: 1_000 });
    const result = await dialer.dial(peer(server.port, ["127.0.0.2", "127.0.0.1"]));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1", baseUrl: `http://127.0.0.1:${server.port}` });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.2", "refused"],
      ["127.0.0.1", "ok"],
    ]);
  });

  it("should try the observed address after the announced ones", async () => {
    const server = await peerServer("127.0.0.4");
    const dialer = createDialer({ strategy: "sequential" });
    const result = await dialer.dial(peer(server.port, ["127.0.0.2"], "127.0.0.4"));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.4" });
  });

  it("should dial an IPv6 candidate", async () => {
    const server = await peerServer("::1");
    const dialer = createDialer();
    const result = await dialer.dial(peer(server.port, ["127.0.0.2", "::1"]));
    expect(result).toMatchObject({ state: "online", address: "::1", baseUrl: `http://[::1]:${server.port}` });
  });

  it("should remember the address that answered and try it first next time", async () => {
    const server = await peerServer();
    const dialer = createDialer({ strategy: "sequential" });
    const candidates = peer(server.port, ["127.0.0.2", "127.0.0.5", "127.0.0.1"]);
    await dialer.dial(candidates);
    expect(dialer.rememberedAddress("alice@example.com")).toBe("127.0.0.1");
    const again = await dialer.dial(candidates);
    expect(again.attempts.map((attempt) => attempt.address)).toEqual(["127.0.0.1"]);
  });

  it("should, staggered, not wait for a silent candidate's timeout", async () => {
    const silent = await startSilentServer("127.0.0.3");
    cleanups.push(() => silent.close());
    // A peer has one port: the silent server holds it on 127.0.0.3, the real one on 127.0.0.1.
    const relocated = await startPeerHttpServerOnPort(silent.port);
    cleanups.push(() => relocated.close());
    const dialer = createDialer({ strategy: "staggered", staggerMs: 50, attemptTimeoutMs: 5_000 });
    const result = await dialer.dial(peer(silent.port, ["127.0.0.3", "127.0.0.1"]));
    expect(result).toMatchObject({ state: "online", address: "127.0.0.1" });
    expect(result.attempts.map((attempt) => [attempt.address, attempt.outcome])).toEqual([
      ["127.0.0.3", "cancelled"],
      ["127.0.0.1", "ok"],
    ]);
  });

  it("should report offline, with checking first, when no candidate answers", async () => {
    const port = await closedPort("127.0.0.2");
    const dialer = createDialer();
    const states: PeerState[] = [];
    dialer.on("state", (_email, state) => states.push(state));
    const result = await dialer.dial(peer(port, ["127.0.0.2", "127.0.0.6"]));
    expect(result.state).toBe("offline");
    expect(states).toEqual(["checking", "offline"]);
    expect(dialer.stateOf("Alice@example.com")).toBe("offline");
  });

  it("should report error when the peer answers its health check with a failure", async () => {
    const server = await peerServer();
    const dialer = createDialer({ healthPath: "/missing" });
    const result = await dialer.dial(peer(server.port, ["127.0.0.1"]));
    expect(result).toMatchObject({ state: "error", message: expect.stringContaining("HTTP 404") });
  });

  it("should fetch a path from the address that answered", async () => {
    const server = await peerServer();
    const dialer = createDialer();
    const { result, response } = await dialer.fetch(peer(server.port, ["127.0.0.2", "127.0.0.1"]), "/api/files");
    expect(result.address).toBe("127.0.0.1");
    expect(response?.status).toBe(200);
    expect(JSON.parse(response!.body.toString())).toMatchObject({ files: [{ name: "notes.txt" }, { name: "photos/cat.jpg" }] });
  });
});

async function startPeerHttpServerOnPort(port: number): Promise<{ close(): Promise<void> }> {
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => res.writeHead(req.url === "/health" ? 200 : 404).end("ok"));
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { close: () => new Promise((resolve) => server.close(() => resolve())) };
}

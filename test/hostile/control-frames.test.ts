// Control-frame floods on one connection. PING and SETTINGS: Node tells the relay of each one
// ('ping', 'remoteSettings'), so past 600 a minute the connection ends with GOAWAY. WINDOW_UPDATE
// and PRIORITY: Node offers no hook, so nghttp2 takes them; the bound is what they cost, measured
// here (relay CPU and memory per frame) and written in docs/operating.md, and that the relay keeps
// serving honest peers through them.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FrameType, frame, rawConnect } from "./frames.js";
import { createTestPeer, registeredClient } from "../support/peers.js";
import { figure, rssMiBOf, startRelayProcess, waitFor, type RelayProcess } from "./support.js";

let relay: RelayProcess;

beforeAll(async () => {
  relay = await startRelayProcess([]);
});
afterAll(async () => {
  await relay?.kill();
});

/** CPU time the relay process has used, ms (user + system, from /proc/<pid>/stat). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name; clock ticks of 10 ms.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const ping = (i: number) => {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(i, 4);
  return frame(FrameType.Ping, 0, 0, payload);
};
const emptySettings = () => frame(FrameType.Settings, 0, 0);
const windowUpdate = () => frame(FrameType.WindowUpdate, 0, 0, Buffer.from([0, 0, 0, 1]));
const priority = (i: number) => frame(FrameType.Priority, 0, 1 + 2 * (i % 50), Buffer.from([0, 0, 0, 0, 15]));

describe("control-frame floods", () => {
  it.each([
    ["PING", ping],
    ["SETTINGS", emptySettings],
  ])("should end a connection flooding %s frames with GOAWAY", async (name, make) => {
    const connection = await rawConnect({ port: relay.port, caPem: relay.caPem });
    const started = performance.now();
    // In writes of 100, as a client pacing itself to get under a per-read check would.
    for (let i = 0; i < 2000 && !connection.socket.destroyed; i += 100) {
      connection.socket.write(Buffer.concat(Array.from({ length: 100 }, (_, j) => make(i + j))));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await connection.closed;
    figure(`${name} flood: connection closed after ${(performance.now() - started).toFixed(0)} ms, GOAWAY code ${connection.goawayCode()}`);
    expect(connection.goawayCode()).toBe(11); // ENHANCE_YOUR_CALM
    // The relay's own guard ended it, not only nghttp2's outbound-queue flood check.
    expect(relay.logs.filter((line) => line.msg === "ended a connection flooding PING or SETTINGS frames").length).toBeGreaterThanOrEqual(name === "PING" ? 1 : 2);
  });

  it.each([
    ["WINDOW_UPDATE", windowUpdate],
    ["PRIORITY", priority],
  ])("should keep serving honest peers through a %s flood, at a measured cost", async (name, make) => {
    const peer = await createTestPeer(`control-${name}-${process.pid}@example.com`);
    const honest = await registeredClient(relay, peer);
    const connection = await rawConnect({ port: relay.port, caPem: relay.caPem });
    const frames = 500_000;
    const rssBefore = rssMiBOf(relay.pid);
    const cpuBefore = cpuMsOf(relay.pid);
    const started = performance.now();
    const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => make(i)));
    for (let i = 0; i < frames && !connection.socket.destroyed; i += 1000) {
      if (!connection.socket.write(batch)) await new Promise((resolve) => connection.socket.once("drain", resolve));
    }
    // A PING behind the flood: its ACK means the relay has read every frame before it.
    connection.socket.write(ping(424242));
    const acked = await waitFor(() => connection.frames.some((f) => f.type === FrameType.Ping && (f.flags & 1) === 1), 30_000);
    expect(acked).toBeDefined();
    // An honest call right behind the flood.
    const answer = await honest.lookup({ email: peer.email }).catch((error: unknown) => error);
    const cpuMs = cpuMsOf(relay.pid) - cpuBefore;
    const seconds = (performance.now() - started) / 1000;
    const rssGrowth = rssMiBOf(relay.pid) - rssBefore;
    figure(`${name} flood: ${frames} frames (${((frames * 13) / 1024 / 1024).toFixed(1)} MiB) in ${seconds.toFixed(2)} s cost the relay ${cpuMs} ms of CPU (${((cpuMs * 1000) / frames).toFixed(1)} µs a frame), RSS ${rssGrowth >= 0 ? "+" : ""}${rssGrowth.toFixed(1)} MiB; connection ${connection.socket.destroyed ? "closed" : "still open"}`);
    // The peer is not online (no Ready): not_found is the relay answering.
    expect(answer).toBeInstanceOf(Error);
    expect(String(answer)).toMatch(/not online/);
    expect(rssGrowth).toBeLessThan(64);
    connection.socket.destroy();
  });
});

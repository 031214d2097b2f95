import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PeerSchema, type Peer } from "../../gen/relay/v1/relay_pb.js";
import { ManualClock, settle } from "../../shared/manual-clock.js";
import type { Dialer, DialerEvents, DialResult, PeerState } from "../dialer.js";
import type { PeerIdentity } from "../identity.js";
import type { RelayClient } from "../relay-client.js";
import { createPeerBoard, type BoardSnapshot } from "./peer-board.js";

/** A relay whose List answers from a script, and a dialer whose dials the test settles. */
function scripted() {
  const relay = { peers: [] as Peer[], failure: undefined as Error | undefined, lists: 0 };
  const client: Pick<RelayClient, "identity" | "list"> = {
    identity: { email: "bob@example.com" } as PeerIdentity,
    async *list() {
      relay.lists += 1;
      if (relay.failure) throw relay.failure;
      yield* relay.peers;
    },
  };
  const outcomes = new Map<string, Omit<DialResult, "email" | "attempts" | "elapsedMs">>();
  const dials: string[] = [];
  const emitter = new EventEmitter<DialerEvents>();
  const dialer = Object.assign(emitter, {
    async dial(peer: Peer): Promise<DialResult> {
      dials.push(peer.email);
      emitter.emit("state", peer.email, "checking");
      await Promise.resolve(); // the outcome comes later than "checking", as on a network
      const result: DialResult = { email: peer.email, attempts: [], elapsedMs: 1, ...(outcomes.get(peer.email) ?? { state: "offline" }) };
      emitter.emit("state", peer.email, result.state, result);
      return result;
    },
  }) as unknown as Dialer;
  return { relay, client, dialer, outcomes, dials };
}

function peer(email: string): Peer {
  return create(PeerSchema, { email, port: 8445, addresses: ["127.0.0.1"], fingerprint: "a".repeat(64), lastSeen: { seconds: 1_800_000_000n, nanos: 0 } });
}

// The board's rules with a scripted relay and dialer on a manual clock. The real thing (relay,
// share processes, peer TLS, a browser) is in test/house/ and test/share/.
describe("PeerBoard", () => {
  function setup() {
    const parts = scripted();
    const clock = new ManualClock();
    const board = createPeerBoard({ client: parts.client, dialer: parts.dialer, clock, refreshMs: 1_000 });
    const states: Array<Record<string, PeerState>> = [];
    board.on("change", (snapshot: BoardSnapshot) => states.push(Object.fromEntries(snapshot.peers.map((entry) => [entry.email, entry.state]))));
    return { ...parts, clock, board, states };
  }

  it("should list the relay's peers but itself, dial each, and show checking then the outcome", async () => {
    const { relay, board, outcomes, states } = setup();
    relay.peers = [peer("alice@example.com"), peer("bob@example.com"), peer("carol@example.com")];
    outcomes.set("alice@example.com", { state: "online", address: "127.0.0.1" });
    outcomes.set("carol@example.com", { state: "error", message: "carol@example.com answered /health with HTTP 403" });
    board.start();
    await settle();
    const snapshot = board.snapshot();
    expect(snapshot.self).toBe("bob@example.com");
    expect(snapshot.peers).toMatchObject([
      { email: "alice@example.com", state: "online", address: "127.0.0.1", listed: true, lastSeen: "2027-01-15T08:00:00.000Z" },
      { email: "carol@example.com", state: "error", message: expect.stringContaining("HTTP 403") },
    ]);
    expect(states[0]).toEqual({ "alice@example.com": "checking", "carol@example.com": "checking" });
    board.stop();
  });

  it("should re-check every refreshMs without flashing checking, and turn a peer offline when its dial fails", async () => {
    const { relay, board, outcomes, states, clock, dials } = setup();
    relay.peers = [peer("alice@example.com")];
    outcomes.set("alice@example.com", { state: "online", address: "127.0.0.1" });
    board.start();
    await settle();
    states.length = 0;
    outcomes.set("alice@example.com", { state: "offline" });
    await clock.advance(1_000);
    expect(dials).toEqual(["alice@example.com", "alice@example.com"]);
    expect(states.map((state) => state["alice@example.com"])).not.toContain("checking");
    expect(board.snapshot().peers[0]).toMatchObject({ state: "offline" });
    expect(board.snapshot().peers[0]!.address).toBeUndefined();
    board.stop();
  });

  it("should keep a peer the relay stops listing, as offline, and not dial it", async () => {
    const { relay, board, outcomes, clock, dials } = setup();
    relay.peers = [peer("alice@example.com")];
    outcomes.set("alice@example.com", { state: "online", address: "127.0.0.1" });
    board.start();
    await settle();
    relay.peers = [];
    await clock.advance(1_000);
    expect(board.snapshot().peers).toMatchObject([{ email: "alice@example.com", state: "offline", listed: false, message: "not online at the relay" }]);
    expect(dials).toEqual(["alice@example.com"]);
    board.stop();
  });

  it("should keep the last known peers and say so while the relay cannot be reached", async () => {
    const { relay, board, outcomes, clock } = setup();
    relay.peers = [peer("alice@example.com")];
    outcomes.set("alice@example.com", { state: "online" });
    board.start();
    await settle();
    relay.failure = new Error("connect ECONNREFUSED 127.0.0.1:8443");
    await clock.advance(1_000);
    expect(board.snapshot()).toMatchObject({ relayError: expect.stringContaining("ECONNREFUSED"), peers: [{ email: "alice@example.com", state: "online" }] });
    relay.failure = undefined;
    await clock.advance(1_000);
    expect(board.snapshot().relayError).toBeUndefined();
    board.stop();
  });

  it("should watch the listed emails, again only when they change, and stop watching when stopped", async () => {
    const parts = scripted();
    const clock = new ManualClock();
    const watches: Array<{ emails: string[]; signal: AbortSignal }> = [];
    const board = createPeerBoard({ client: parts.client, dialer: parts.dialer, clock, refreshMs: 1_000, watch: (emails, signal) => (watches.push({ emails, signal }), new Promise(() => undefined)) });
    parts.relay.peers = [peer("carol@example.com"), peer("alice@example.com")];
    board.start();
    await settle();
    await clock.advance(1_000);
    expect(watches.map((watch) => watch.emails)).toEqual([["alice@example.com", "carol@example.com"]]);
    parts.relay.peers = [peer("alice@example.com")];
    await clock.advance(1_000);
    expect(watches.map((watch) => watch.emails)).toEqual([["alice@example.com", "carol@example.com"], ["alice@example.com"]]);
    expect(watches.map((watch) => watch.signal.aborted)).toEqual([true, false]);
    board.stop();
    expect(watches[1]!.signal.aborted).toBe(true);
  });

  it("should stop asking the relay once stopped", async () => {
    const { relay, board, clock } = setup();
    board.start();
    await settle();
    board.stop();
    await clock.advance(5_000);
    expect(relay.lists).toBe(1);
  });
});

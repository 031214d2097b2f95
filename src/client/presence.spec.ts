import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../shared/manual-clock.js";
import { EmailTakenError } from "./errors.js";
import type { PeerIdentity } from "./identity.js";
import { createPresence, type PresenceStatusEvent } from "./presence.js";
import type { Broadcast, HeartbeatAck, HeartbeatStream, RelayClient } from "./relay-client.js";

/** A heartbeat stream the spec answers by hand. */
class ScriptedStream {
  beats = 0;
  /** "ended" after a half-close (end), "closed" after a reset (close). */
  finish: "ended" | "closed" | undefined;
  readonly #queue: Array<{ ack?: HeartbeatAck; error?: unknown; end?: true }> = [];
  #wake: (() => void) | undefined;
  constructor(signal?: AbortSignal) {
    signal?.addEventListener("abort", () => this.fail(new ConnectError("canceled", Code.Canceled)), { once: true });
  }
  ack(nextHeartbeatInMs: number): void {
    this.#push({ ack: { expiresAt: undefined, expiresInMs: 30_000, nextHeartbeatInMs } });
  }
  fail(error: unknown): void {
    this.#push({ error });
  }
  #push(item: { ack?: HeartbeatAck; error?: unknown; end?: true }): void {
    this.#queue.push(item);
    this.#wake?.();
  }
  get handle(): HeartbeatStream {
    const queue = this.#queue;
    const wait = () => new Promise<void>((resolve) => (this.#wake = resolve));
    return {
      beat: () => void (this.beats += 1),
      // The relay answers a half-close by ending the stream.
      end: async () => {
        this.finish ??= "ended";
        this.#push({ end: true });
      },
      close: () => {
        this.finish ??= "closed";
        this.#push({ end: true });
      },
      acks: {
        async *[Symbol.asyncIterator]() {
          for (;;) {
            while (queue.length === 0) await wait();
            const item = queue.shift()!;
            if (item.error) throw item.error;
            if (item.end) return;
            yield item.ack!;
          }
        },
      },
    };
  }
}

/** A RelayClient answering from a script, recording calls: presence's logic without a network. */
function scriptedRelay() {
  const calls: string[] = [];
  const streams: ScriptedStream[] = [];
  const failures = { connect: [] as unknown[], register: [] as unknown[], ready: [] as unknown[] };
  /** Connections being made: each resolves when the test says (open()), unless failures.connect says otherwise. */
  const connecting: Array<() => void> = [];
  let holdConnects = false;
  let broadcasts = 0;
  const client: RelayClient = {
    identity: { email: "alice@example.com" } as PeerIdentity,
    async connect() {
      calls.push("connect");
      const failure = failures.connect.shift();
      if (failure) throw failure;
      if (holdConnects) await new Promise<void>((resolve) => connecting.push(resolve));
    },
    async register() {
      calls.push("register");
      const failure = failures.register.shift();
      if (failure) throw failure;
      return { clientId: "f", registeredAt: undefined, alreadyRegistered: true };
    },
    async ready(): Promise<Broadcast> {
      calls.push("ready");
      const failure = failures.ready.shift();
      if (failure) throw failure;
      broadcasts += 1;
      return { broadcastId: `b${broadcasts}`, expiresAt: undefined, heartbeatIntervalMs: 10_000, observedAddress: "127.0.0.1" };
    },
    heartbeat(broadcastId, signal) {
      calls.push(`heartbeat ${broadcastId}`);
      const stream = new ScriptedStream(signal);
      streams.push(stream);
      return stream.handle;
    },
    async offline() {
      calls.push("offline");
      return true;
    },
    watch: async function* () {},
    lookup: async () => undefined,
    listPage: async () => ({ peers: [], nextPageToken: "" }),
    list: async function* () {},
    getRegistration: async () => undefined,
    close: () => undefined,
  };
  const connections = {
    /** From now on, connect() waits for open(). */
    hold: () => (holdConnects = true),
    /** The oldest waiting connect() resolves. */
    open: () => connecting.shift()?.(),
  };
  return { client, calls, streams, failures, connections };
}

describe("Presence", () => {
  function setup() {
    const relay = scriptedRelay();
    const clock = new ManualClock();
    const presence = createPresence({ client: relay.client, announcement: { port: 8080, addresses: ["127.0.0.1"] }, clock, random: () => 0.5, backoff: { initialMs: 1_000, maxMs: 8_000 } });
    const events: PresenceStatusEvent[] = [];
    presence.on("status", (event) => events.push(event));
    return { ...relay, clock, presence, events };
  }

  it("should register, announce, beat at once, then at the interval the relay asks", async () => {
    const { presence, calls, streams, clock, events } = setup();
    await presence.start();
    await settle();
    expect(calls).toEqual(["connect", "register", "ready", "heartbeat b1"]);
    expect(streams[0]!.beats).toBe(1);
    streams[0]!.ack(5_000);
    await settle();
    expect(clock.pending()).toEqual([5_000]);
    await clock.advance(4_999);
    expect(streams[0]!.beats).toBe(1);
    await clock.advance(1);
    expect(streams[0]!.beats).toBe(2);
    expect(events.map((event) => event.status)).toEqual(["registering", "online"]);
    await presence.stop();
  });

  it("should fall back to Ready's heartbeat_interval when an ack names none", async () => {
    const { presence, streams, clock } = setup();
    await presence.start();
    await settle();
    streams[0]!.ack(0);
    await settle();
    expect(clock.pending()).toEqual([10_000]);
    await presence.stop();
  });

  it.each([
    ["the stream breaks", new ConnectError("connection reset", Code.Unavailable)],
    ["the relay answers not_found", new ConnectError("no live broadcast", Code.NotFound)],
  ])("should register and announce again, after a backoff, when %s", async (_name, error) => {
    const { presence, calls, streams, clock, events } = setup();
    await presence.start();
    await settle();
    streams[0]!.fail(error);
    await settle();
    expect(events.at(-1)).toMatchObject({ status: "reconnecting", error, retryInMs: 500, attempt: 1 });
    await clock.advance(500);
    expect(calls).toEqual(["connect", "register", "ready", "heartbeat b1", "connect", "register", "ready", "heartbeat b2"]);
    expect(presence.status).toBe("online");
    expect(presence.broadcast?.broadcastId).toBe("b2");
    await presence.stop();
  });

  it("should back off longer while the relay stays down, and start over once back", async () => {
    const { presence, streams, clock, events, failures } = setup();
    await presence.start();
    await settle();
    const down = new ConnectError("connect ECONNREFUSED", Code.Unavailable);
    failures.register.push(down, down, down);
    streams[0]!.fail(down);
    await settle();
    await clock.advance(500); // try 2 fails
    await clock.advance(1_000); // try 3 fails
    await clock.advance(2_000); // try 4 fails
    await clock.advance(4_000); // try 5 succeeds
    const retries = events.filter((event) => event.status === "reconnecting").map((event) => event.retryInMs);
    expect(retries).toEqual([500, 1_000, 2_000, 4_000]);
    expect(presence.status).toBe("online");
    streams.at(-1)!.fail(down);
    await settle();
    expect(events.at(-1)).toMatchObject({ status: "reconnecting", retryInMs: 500, attempt: 1 });
    await presence.stop();
  });

  it("should wait for the connection before Register, however long it takes, without counting a failure", async () => {
    const { presence, streams, clock, events, calls, connections } = setup();
    await presence.start();
    await settle();
    connections.hold();
    streams[0]!.fail(new ConnectError("stream reset", Code.Unavailable));
    await settle();
    await clock.advance(500); // the retry: connecting, queued by a busy relay
    await clock.advance(60_000);
    expect(calls.at(-1)).toBe("connect");
    expect(events.filter((event) => event.status === "reconnecting")).toHaveLength(1);

    connections.open();
    await settle();

    expect(calls.slice(-4)).toEqual(["connect", "register", "ready", "heartbeat b2"]);
    expect(presence.status).toBe("online");
    await presence.stop();
  });

  it("should back off after a connection that failed, as after a failed call", async () => {
    const { presence, streams, clock, events, failures, calls } = setup();
    await presence.start();
    await settle();
    const refused = new ConnectError("could not connect to the relay", Code.Unavailable);
    failures.connect.push(refused);
    streams[0]!.fail(refused);
    await settle();
    await clock.advance(500); // the retry's connect fails

    expect(events.at(-1)).toMatchObject({ status: "reconnecting", error: refused, retryInMs: 1_000, attempt: 2 });
    expect(calls.at(-1)).toBe("connect");
    await clock.advance(1_000);
    expect(presence.status).toBe("online");
    await presence.stop();
  });

  it("should wait the relay's retry-after, plus the backoff's jitter, when rate limited", async () => {
    const { presence, streams, events } = setup();
    await presence.start();
    await settle();
    streams[0]!.fail(new ConnectError("rate limit exceeded", Code.ResourceExhausted, { "retry-after": "7" }));
    await settle();
    expect(events.at(-1)).toMatchObject({ status: "reconnecting", retryInMs: 7_000 + 500 });
    await presence.stop();
  });

  it("should stop with error, not retry, when the email turns out to be taken", async () => {
    const { presence, streams, clock, events, failures, calls } = setup();
    await presence.start();
    await settle();
    failures.register.push(new EmailTakenError("alice@example.com"));
    streams[0]!.fail(new ConnectError("relay restarted", Code.Unavailable));
    await settle();
    await clock.advance(500);
    expect(events.at(-1)).toMatchObject({ status: "error", error: expect.any(EmailTakenError) });
    await clock.advance(60_000);
    expect(calls.filter((call) => call === "register")).toHaveLength(2);
    expect(clock.pending()).toEqual([]);
    // Once the cause is fixed the app may start again.
    await presence.start();
    expect(presence.status).toBe("online");
    await presence.stop();
  });

  it.each([
    ["unimplemented (a load balancer's 404 while the relay restarts)", Code.Unimplemented],
    ["permission_denied (an HTTP/2 reset with INADEQUATE_SECURITY)", Code.PermissionDenied],
    ["internal (a relay killed mid-call, as Go clients see it)", Code.Internal],
  ])("should keep reconnecting when the connection is lost as %s, without the relay's answer", async (_name, code) => {
    const { presence, streams, clock, events, calls } = setup();
    await presence.start();
    await settle();
    streams[0]!.fail(new ConnectError("lost", code));
    await settle();
    expect(events.at(-1)).toMatchObject({ status: "reconnecting", attempt: 1 });
    await clock.advance(500);
    expect(calls.at(-1)).toBe("heartbeat b2");
    expect(presence.status).toBe("online");
    await presence.stop();
  });

  it("should stop with error when the relay itself answers a code retrying cannot fix", async () => {
    const { presence, streams, clock, events } = setup();
    await presence.start();
    await settle();
    streams[0]!.fail(new ConnectError("broadcast_id is not this peer's current broadcast", Code.FailedPrecondition, { "x-request-id": "0123456789abcdef" }));
    await settle();
    expect(events.at(-1)).toMatchObject({ status: "error" });
    expect(clock.pending()).toEqual([]);
  });

  it("should stop cleanly while waiting to reconnect", async () => {
    const { presence, streams, clock, events, calls } = setup();
    await presence.start();
    await settle();
    streams[0]!.fail(new ConnectError("reset", Code.Unavailable));
    await settle();
    await presence.stop();
    expect(events.at(-1)).toMatchObject({ status: "offline" });
    expect(clock.pending()).toEqual([]);
    await clock.advance(60_000);
    // No stream to half-close: the broadcast may still be in the relay's grace, so Offline.
    expect(calls).toEqual(["connect", "register", "ready", "heartbeat b1", "offline"]);
  });

  it("should half-close the heartbeat stream on stop, so the relay withdraws at once, and not reconnect", async () => {
    const { presence, streams, clock, events, calls } = setup();
    await presence.start();
    await settle();
    streams[0]!.ack(5_000);
    await settle();
    await presence.stop();
    expect(streams[0]!.finish).toBe("ended");
    expect(events.map((event) => event.status)).toEqual(["registering", "online", "offline"]);
    await clock.advance(60_000);
    expect(calls).toEqual(["connect", "register", "ready", "heartbeat b1"]);
    expect(streams[0]!.beats).toBe(1);
  });

  it("should stop cleanly while announcing again", async () => {
    const { presence, streams, clock, events, calls, client } = setup();
    await presence.start();
    await settle();
    // Ready hangs until its call is aborted, as a real call to a stalled relay would.
    client.ready = (_announcement, { signal } = {}) => new Promise((_resolve, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true }));
    streams[0]!.fail(new ConnectError("reset", Code.Unavailable));
    await settle();
    await clock.advance(500);
    expect(calls.at(-1)).toBe("register");
    await presence.stop();
    expect(events.at(-1)).toMatchObject({ status: "offline" });
    expect(streams).toHaveLength(1);
    expect(calls.at(-1)).toBe("offline");
  });

  it("should reject start, with status error, when the first try fails", async () => {
    const { presence, failures, events } = setup();
    const down = new ConnectError("connect ECONNREFUSED", Code.Unavailable);
    failures.register.push(down);
    await expect(presence.start()).rejects.toBe(down);
    expect(events.map((event) => event.status)).toEqual(["registering", "error"]);
    expect(presence.status).toBe("error");
  });
});

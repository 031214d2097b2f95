import { EventEmitter } from "node:events";
import { systemClock, sleep, type Clock } from "../shared/clock.js";
import { defaultBackoff, retryDelay, type BackoffOptions } from "./backoff.js";
import { isRetryable, retryAfterMs } from "./errors.js";
import type { Announcement, Broadcast, HeartbeatAck, HeartbeatStream, RelayClient } from "./relay-client.js";

/**
 * The peer's presence as an app shows it (plan section 2.3.4):
 * - registering: first Register + Ready in progress
 * - online: announced, heartbeats flowing
 * - reconnecting: the stream broke or the broadcast was lost; retrying after a backoff
 * - offline: stopped on request
 * - error: stopped on a failure retrying cannot fix (email taken, announcement rejected, another
 *   process announced with the same identity)
 */
export type PresenceStatus = "registering" | "online" | "reconnecting" | "offline" | "error";

/** Payload of the "status" event. */
export interface PresenceStatusEvent {
  status: PresenceStatus;
  /** The live broadcast when online. */
  broadcast?: Broadcast;
  /** What failed, when reconnecting or error. */
  error?: unknown;
  /** When reconnecting: delay before the next try, and how many tries failed in a row. */
  retryInMs?: number;
  attempt?: number;
}

/** Events of {@link Presence}. None is named "error", so an unobserved failure never throws. */
export interface PresenceEvents {
  status: [PresenceStatusEvent];
  heartbeat: [HeartbeatAck];
}

/** Options of {@link createPresence}. */
export interface PresenceOptions {
  client: RelayClient;
  /**
   * What to announce. A function is called before every Ready, so a reconnect after a network
   * change announces the addresses the machine has then.
   */
  announcement: Announcement | (() => Announcement);
  /** Default: {@link defaultBackoff}. */
  backoff?: Partial<BackoffOptions>;
  /**
   * Lower bound of the interval between heartbeats, whatever the relay asks, so a relay answering
   * 0 cannot make the peer spin. Default: 100 ms.
   */
  minHeartbeatIntervalMs?: number;
  /**
   * How long stop() waits for the relay to confirm the peer left (the end of the half-closed
   * stream, or Offline), ms. Default: 3000, so Ctrl-C on an unreachable relay still exits soon.
   */
  leaveTimeoutMs?: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Source of jitter in [0, 1). Default: Math.random. */
  random?: () => number;
}

/** Keeps a peer announced on the relay: Register, Ready, then heartbeats until stopped. */
export class Presence extends EventEmitter<PresenceEvents> {
  #status: PresenceStatus = "offline";
  #broadcast: Broadcast | undefined;
  #controller: AbortController | undefined;
  #loop: Promise<void> | undefined;
  /** The open Heartbeat stream, for stop() to half-close. */
  #stream: HeartbeatStream | undefined;
  /** Set by stop(): the loop ends instead of reconnecting when the stream ends. */
  #leaving = false;
  readonly #options: PresenceOptions;
  readonly #backoff: BackoffOptions;
  readonly #clock: Clock;

  constructor(options: PresenceOptions) {
    super();
    this.#options = options;
    this.#backoff = { ...defaultBackoff, ...options.backoff };
    this.#clock = options.clock ?? systemClock;
  }

  get status(): PresenceStatus {
    return this.#status;
  }

  /** The live broadcast while online. */
  get broadcast(): Broadcast | undefined {
    return this.#status === "online" ? this.#broadcast : undefined;
  }

  /**
   * Registers and announces, then keeps heartbeating in the background. Resolves with the first
   * broadcast; rejects (status "error") when that first try fails, so a misconfigured peer fails
   * fast. Failures after that are retried with backoff until {@link stop}.
   */
  async start(): Promise<Broadcast> {
    if (this.#controller) throw new Error("presence already started");
    const controller = new AbortController();
    this.#controller = controller;
    this.#setStatus({ status: "registering" });
    let broadcast: Broadcast;
    try {
      broadcast = await this.#announce(controller.signal);
    } catch (error) {
      this.#controller = undefined;
      // stop() during start() already reported offline.
      if (!controller.signal.aborted) this.#setStatus({ status: "error", error });
      throw error;
    }
    this.#loop = this.#run(broadcast, controller.signal);
    return broadcast;
  }

  /**
   * Leaves: half-closes the heartbeat stream, so the relay withdraws the broadcast at once (every
   * watcher sees the peer offline, reason withdrawn), then ends the loop; status becomes
   * "offline". Without an open stream (reconnecting) it calls Offline instead. Either is bounded
   * by leaveTimeoutMs; if the relay cannot be told, the broadcast lapses after the relay's grace.
   */
  async stop(): Promise<void> {
    const controller = this.#controller;
    if (!controller) return;
    this.#leaving = true;
    const timeoutMs = this.#options.leaveTimeoutMs ?? 3_000;
    const stream = this.#stream;
    if (stream !== undefined) {
      await stream.end(timeoutMs);
    } else if (this.#loop !== undefined && this.#broadcast !== undefined) {
      await this.#options.client.offline({ timeoutMs }).catch(() => undefined);
    }
    controller.abort(new Error("presence stopped"));
    await this.#loop;
    this.#leaving = false;
    this.#controller = undefined;
    this.#loop = undefined;
    this.#broadcast = undefined;
    this.#setStatus({ status: "offline" });
  }

  async #announce(signal: AbortSignal): Promise<Broadcast> {
    const { client } = this.#options;
    const announcement = typeof this.#options.announcement === "function" ? this.#options.announcement() : this.#options.announcement;
    // The connection first, under its own deadline: a relay admitting a storm of peers queues
    // connections before TLS, and a wait there is not a failed call (which would grow the backoff).
    await client.connect({ signal });
    // Register on every (re)connect: it is idempotent, and a relay on the in-memory store forgets
    // registrations when it restarts.
    await client.register({ signal });
    const broadcast = await client.ready(announcement, { signal });
    signal.throwIfAborted();
    this.#broadcast = broadcast;
    this.#setStatus({ status: "online", broadcast });
    return broadcast;
  }

  async #run(first: Broadcast, signal: AbortSignal): Promise<void> {
    let broadcast: Broadcast | undefined = first;
    let attempt = 0;
    while (!signal.aborted && !this.#leaving) {
      try {
        if (!broadcast) {
          broadcast = await this.#announce(signal);
          attempt = 0;
        }
        await this.#keepAlive(broadcast, signal);
      } catch (error) {
        if (signal.aborted || this.#leaving) return;
        broadcast = undefined;
        if (!isRetryable(error)) {
          // Not running any more: start() may be called again once the cause is fixed.
          this.#controller = undefined;
          this.#loop = undefined;
          this.#setStatus({ status: "error", error });
          return;
        }
        const retryInMs = retryDelay(attempt, retryAfterMs(error), this.#backoff, this.#options.random);
        attempt += 1;
        this.#setStatus({ status: "reconnecting", error, retryInMs, attempt });
        try {
          await sleep(this.#clock, retryInMs, signal);
        } catch {
          return; // stopped while waiting
        }
      }
    }
  }

  /** Heartbeats on one stream; throws when it breaks (not_found included), returns only when stopped. */
  async #keepAlive(broadcast: Broadcast, signal: AbortSignal): Promise<void> {
    const stream = this.#options.client.heartbeat(broadcast.broadcastId, signal);
    this.#stream = stream;
    const floor = this.#options.minHeartbeatIntervalMs ?? 100;
    let timer: unknown;
    const schedule = (ms: number) => {
      timer = this.#clock.setTimeout(() => stream.beat(), Math.max(ms, floor));
    };
    try {
      // Beat at once: it proves the stream works and learns the relay's next_heartbeat_in.
      stream.beat();
      for await (const ack of stream.acks) {
        this.emit("heartbeat", ack);
        schedule(ack.nextHeartbeatInMs || broadcast.heartbeatIntervalMs);
      }
      if (!signal.aborted && !this.#leaving) throw new Error("relay closed the heartbeat stream");
    } finally {
      this.#stream = undefined;
      this.#clock.clearTimeout(timer);
      stream.close();
    }
  }

  #setStatus(event: PresenceStatusEvent): void {
    this.#status = event.status;
    this.emit("status", event);
  }
}

/** Creates a {@link Presence}; nothing happens until start(). */
export function createPresence(options: PresenceOptions): Presence {
  return new Presence(options);
}

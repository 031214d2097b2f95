import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { dateOf, type Clock, type TimerHandle } from "../../shared/clock.js";
import { presenceRefreshIntervalMs } from "./broadcast-rules.js";
import type { RelayStore, StreamClaim, WithdrawResult } from "../store/store.js";

/** Options of {@link createPresenceKeeper}. */
export interface PresenceKeeperOptions {
  store: RelayStore;
  clock: Clock;
  logger: Logger;
  /**
   * How long a peer whose Heartbeat stream was lost (or whose relay instance died) stays online,
   * ms, so that it can reconnect to this instance or another one without being seen to leave.
   */
  presenceGraceMs: number;
  /** This instance's id in the store's holder field. Default: 12 random bytes. */
  instanceId?: string;
}

/**
 * Ties broadcasts to the Heartbeat streams this relay instance holds (broadcast-rules.ts): each
 * beat claims the broadcast for its stream, one batched write every few seconds keeps every held
 * broadcast's presenceUntil a grace ahead, a clean end withdraws, a lost stream is released to
 * its grace. An instance that dies stops refreshing, so its peers' grace runs out unless they
 * reconnect elsewhere.
 */
export interface PresenceKeeper {
  readonly instanceId: string;
  readonly presenceGraceMs: number;
  /** A new stream's token. */
  openStream(): string;
  /** What a beat on streamId writes so that this stream holds the broadcast. */
  claim(streamId: string): StreamClaim;
  /** The stream ended cleanly (half-close): withdraws the broadcast if the stream still holds it. */
  endStream(fingerprint: string, streamId: string): Promise<WithdrawResult | undefined>;
  /** The stream was lost (connection gone, reset, failed): its broadcast keeps the grace. */
  loseStream(streamId: string): Promise<void>;
  /** Shutdown: lets go of every broadcast this instance holds, each keeping the grace. */
  releaseAll(): Promise<number>;
  /** Stops the refresh timer. */
  stop(): void;
}

/** Creates a {@link PresenceKeeper} and starts its refresh timer (unref'd). */
export function createPresenceKeeper(options: PresenceKeeperOptions): PresenceKeeper {
  const { store, clock, logger, presenceGraceMs } = options;
  const instanceId = options.instanceId ?? randomBytes(12).toString("base64url");
  const open = new Set<string>();
  const graceFrom = (now: Date) => new Date(now.getTime() + presenceGraceMs);
  let refreshing = false;

  const timer: TimerHandle = clock.setInterval(
    () => {
      // Nothing held, nothing to write; a refresh still running (slow database) is not doubled.
      if (open.size === 0 || refreshing) return;
      refreshing = true;
      const now = dateOf(clock);
      store
        .refreshPresence(instanceId, now, graceFrom(now))
        .catch((error: unknown) => logger.warn({ err: error, streams: open.size }, "failed to refresh the presence of held heartbeat streams"))
        .finally(() => (refreshing = false));
    },
    presenceRefreshIntervalMs(presenceGraceMs),
    { unref: true },
  );

  return {
    instanceId,
    presenceGraceMs,
    openStream() {
      const streamId = randomBytes(12).toString("base64url");
      open.add(streamId);
      return streamId;
    },
    claim(streamId) {
      return { holder: instanceId, streamId, presenceUntil: graceFrom(dateOf(clock)) };
    },
    async endStream(fingerprint, streamId) {
      open.delete(streamId);
      return store.withdrawBroadcast(fingerprint, dateOf(clock), { streamId });
    },
    async loseStream(streamId) {
      if (!open.delete(streamId)) return;
      const now = dateOf(clock);
      await store.releasePresence(instanceId, [streamId], now, graceFrom(now));
    },
    async releaseAll() {
      open.clear();
      const now = dateOf(clock);
      return store.releasePresence(instanceId, undefined, now, graceFrom(now));
    },
    stop() {
      clock.clearInterval(timer);
    },
  };
}

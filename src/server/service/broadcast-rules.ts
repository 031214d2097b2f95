/**
 * Presence rules as plain functions: when a broadcast is live, why it stopped being live, and how
 * often a peer is asked to heartbeat.
 *
 * A broadcast has two deadlines. expiresAt is the ttl bound: Ready or the last heartbeat plus the
 * ttl, the only bound for a peer that announced without opening a Heartbeat stream.
 * presenceUntil follows the Heartbeat stream: while a relay instance holds the peer's stream it
 * keeps presenceUntil a grace ahead of now; when the stream is lost (or that instance dies) it
 * stops moving and the grace runs out; a clean end of the stream, or Offline, sets it to now.
 */

/** The parts of a broadcast the liveness rule reads. */
export interface Liveness {
  expiresAt: Date;
  /** Unset until a Heartbeat stream holds the broadcast (a Ready alone is bound by the ttl). */
  presenceUntil?: Date | undefined;
  /** Set when the peer withdrew the broadcast (Offline, or a clean end of its stream). */
  withdrawnAt?: Date | undefined;
}

/**
 * Whether a broadcast is live at now: the one liveness rule. Both stores apply it to every read
 * (MemoryStore calls it; MongoStore translates it into {@link liveFilter}), whatever a sweeper or
 * a TTL monitor has or has not deleted yet.
 */
export function isLive(broadcast: Liveness, now: Date): boolean {
  return isLiveAt(broadcast.expiresAt.getTime(), broadcast.presenceUntil?.getTime(), now.getTime());
}

/** {@link isLive} on epoch milliseconds: presenceUntilMs undefined (or Infinity) when unset. */
export function isLiveAt(expiresAtMs: number, presenceUntilMs: number | undefined, nowMs: number): boolean {
  return expiresAtMs > nowMs && (presenceUntilMs === undefined || presenceUntilMs > nowMs);
}

/**
 * {@link isLive} as a MongoDB query. `$not: { $lte }` also matches a document without
 * presenceUntil, and keeps `$or` free for the queries this is spread into.
 */
export function liveFilter(now: Date): { expiresAt: { $gt: Date }; presenceUntil: { $not: { $lte: Date } } } {
  return { expiresAt: { $gt: now }, presenceUntil: { $not: { $lte: now } } };
}

/** {@link isLive}'s negation at `before` as a MongoDB query: what a sweep may delete. */
export function expiredFilter(before: Date): { $or: [{ expiresAt: { $lte: Date } }, { presenceUntil: { $lte: Date } }] } {
  return { $or: [{ expiresAt: { $lte: before } }, { presenceUntil: { $lte: before } }] };
}

/** Why a broadcast that is not live at now stopped being live, in the words of OfflineReason. */
export type OfflineCause = "withdrawn" | "lost" | "expired";

/**
 * Why broadcast is not live at now: withdrawn by the peer, lost (its stream went away and the
 * grace ran out before the ttl), or expired (the ttl ran out first, or no stream ever held it).
 */
export function offlineCauseOf(broadcast: Liveness, now: Date): OfflineCause {
  if (broadcast.withdrawnAt !== undefined) return "withdrawn";
  const { presenceUntil, expiresAt } = broadcast;
  if (presenceUntil !== undefined && presenceUntil.getTime() <= now.getTime() && presenceUntil.getTime() < expiresAt.getTime()) return "lost";
  return "expired";
}

/** When a live broadcast stops being live unless something extends it: its nearer deadline. */
export function deadlineOf(broadcast: Liveness): number {
  const expires = broadcast.expiresAt.getTime();
  return broadcast.presenceUntil === undefined ? expires : Math.min(expires, broadcast.presenceUntil.getTime());
}

/** Expiry of a broadcast announced or kept alive at now. */
export function expiresAtFrom(now: Date, broadcastTtlSeconds: number): Date {
  return new Date(now.getTime() + broadcastTtlSeconds * 1000);
}

/**
 * How often an instance moves presenceUntil forward for the streams it holds: a sixth of the
 * grace, at most 5 s, at least 100 ms. A lost stream (or a dead instance) thus leaves its peers
 * online for between five sixths of the grace and the whole grace, and each refresh is one write
 * for all the instance's streams.
 */
export function presenceRefreshIntervalMs(presenceGraceMs: number): number {
  return Math.max(100, Math.min(5_000, Math.floor(presenceGraceMs / 6)));
}

/**
 * The heartbeat interval the relay asks for: a third of the ttl, so two heartbeats in a row
 * can be lost before the broadcast expires, with ±10% jitter so peers that started together
 * (after a relay restart, say) do not heartbeat in lockstep. random is in [0, 1).
 */
export function heartbeatIntervalMs(broadcastTtlSeconds: number, random: number): number {
  const base = (broadcastTtlSeconds * 1000) / 3;
  return Math.round(base * (0.9 + 0.2 * random));
}

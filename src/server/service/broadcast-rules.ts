/**
 * Presence rules as plain functions: when a broadcast expires and how often a peer is asked
 * to heartbeat.
 */

/**
 * Whether a broadcast is live at now: the one liveness rule. Both stores apply it to every read
 * (MemoryStore calls it; MongoStore translates it into {@link liveFilter}), whatever a sweeper or
 * a TTL monitor has or has not deleted yet.
 */
export function isLive(broadcast: { expiresAt: Date }, now: Date): boolean {
  return broadcast.expiresAt.getTime() > now.getTime();
}

/** {@link isLive} as a MongoDB query on the broadcast's expiresAt field. */
export function liveFilter(now: Date): { expiresAt: { $gt: Date } } {
  return { expiresAt: { $gt: now } };
}

/** {@link isLive}'s negation as a MongoDB query: what a sweep may delete. */
export function expiredFilter(now: Date): { expiresAt: { $lte: Date } } {
  return { expiresAt: { $lte: now } };
}

/** Expiry of a broadcast announced or kept alive at now. */
export function expiresAtFrom(now: Date, broadcastTtlSeconds: number): Date {
  return new Date(now.getTime() + broadcastTtlSeconds * 1000);
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

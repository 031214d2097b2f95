/**
 * Presence rules as plain functions: when a broadcast expires and how often a peer is asked
 * to heartbeat.
 */

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

/** Exponential backoff between reconnect tries. */
export interface BackoffOptions {
  /** First delay. Default: 500 ms. */
  initialMs: number;
  /** Cap. Default: 30 s, so a peer notices a relay that came back within half a minute. */
  maxMs: number;
  /** Growth per failed try. Default: 2. */
  multiplier: number;
}

export const defaultBackoff: BackoffOptions = { initialMs: 500, maxMs: 30_000, multiplier: 2 };

/**
 * Delay before retry number `attempt` (0-based): "full jitter", uniform between 0 and the capped
 * exponential base. After a relay restart every peer reconnects at once; spread over the whole
 * base, the retries arrive at an even rate the relay can admit, where half-fixed delays would
 * bring half of them back in bursts (bench/scale.ts).
 */
export function backoffDelay(attempt: number, options: BackoffOptions = defaultBackoff, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.initialMs * options.multiplier ** attempt);
  return Math.round(random() * base);
}

/**
 * The wait before a retry: the relay's retry-after hint when it gave one (a retry sooner is
 * refused again), plus the backoff's jitter so peers refused together do not come back together.
 */
export function retryDelay(attempt: number, hintMs: number | undefined, options: BackoffOptions = defaultBackoff, random: () => number = Math.random): number {
  return (hintMs ?? 0) + backoffDelay(attempt, options, random);
}

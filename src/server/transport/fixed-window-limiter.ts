import { LRUCache } from "lru-cache";
import type { Clock } from "../../shared/clock.js";

/** Options of {@link createFixedWindowLimiter}. */
export interface FixedWindowLimiterOptions {
  /** Most takes per key per window; 0 or less turns the limiter off (every take is allowed). */
  limit: number;
  /** Length of a window, ms. A key's window starts at its first take after the previous one ended. */
  windowMs: number;
  /** Windows run on it. */
  clock: Clock;
  /**
   * Most keys tracked at once; the least recently used is forgotten beyond it (and starts a fresh
   * window when it comes back). Bounds the limiter's memory whatever number of sources floods it:
   * about 150 bytes a key, so the default 100 000 is near 15 MB.
   */
  maxKeys?: number;
}

/** Answer of {@link FixedWindowLimiter.take}. */
export type TakeResult = { allowed: true } | { allowed: false; /** ms until the key's window ends. */ retryAfterMs: number };

/** Counts takes per key in fixed windows. */
export interface FixedWindowLimiter {
  readonly limit: number;
  readonly windowMs: number;
  /** Counts one take for key, unless its window's budget is spent. */
  take(key: string): TakeResult;
  /** Gives back one take of key's current window (work that was counted turned out free). */
  refund(key: string): void;
  /** Keys tracked now. */
  readonly size: number;
}

interface Window {
  startedAt: number;
  count: number;
}

/**
 * A fixed-window counter per key on an injected clock, with a bounded number of keys. Fixed
 * windows allow up to twice the limit across a window boundary; that is the price of one counter
 * and one timestamp per key, and what the relay's limits are written for.
 */
export function createFixedWindowLimiter(options: FixedWindowLimiterOptions): FixedWindowLimiter {
  const { limit, windowMs, clock } = options;
  const windows = new LRUCache<string, Window>({ max: options.maxKeys ?? 100_000 });
  const current = (key: string, now: number): Window | undefined => {
    const window = windows.get(key);
    return window !== undefined && now < window.startedAt + windowMs ? window : undefined;
  };
  return {
    limit,
    windowMs,
    take(key) {
      if (limit <= 0) return { allowed: true };
      const now = clock.now();
      let window = windows.get(key);
      if (window === undefined) {
        window = { startedAt: now, count: 0 };
        windows.set(key, window);
      } else if (now >= window.startedAt + windowMs) {
        // A new window in the same object: one made per window lived for the window, long
        // enough to be promoted to the old generation and die there.
        window.startedAt = now;
        window.count = 0;
      }
      if (window.count >= limit) return { allowed: false, retryAfterMs: window.startedAt + windowMs - now };
      window.count++;
      return { allowed: true };
    },
    refund(key) {
      const window = current(key, clock.now());
      if (window !== undefined && window.count > 0) window.count--;
    },
    get size() {
      return windows.size;
    },
  };
}

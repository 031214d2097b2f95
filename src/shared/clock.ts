/**
 * Time, injected. Expiry, intervals, sweeps, heartbeat deadlines, rate-limit windows, backoff
 * and dial timeouts all read time and set timers through a Clock, so tests move time by hand
 * ({@link ManualClock}) instead of waiting for it.
 */

/** An opaque timer handle, from {@link Clock.setTimeout} or {@link Clock.setInterval}. */
export type TimerHandle = unknown;

/** Options of a timer. */
export interface TimerOptions {
  /**
   * Do not keep the process alive for this timer alone (Node's `timer.unref()`). Background
   * work (sweeps, pings) sets it; a peer's heartbeat does not. Default false.
   */
  unref?: boolean;
}

/** The source of time and timers. */
export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
  setTimeout(callback: () => void, ms: number, options?: TimerOptions): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  setInterval(callback: () => void, ms: number, options?: TimerOptions): TimerHandle;
  clearInterval(handle: TimerHandle | undefined): void;
}

/** The machine's clock and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms, options) => {
    const timer = setTimeout(callback, ms);
    if (options?.unref) timer.unref();
    return timer;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
  setInterval: (callback, ms, options) => {
    const timer = setInterval(callback, ms);
    if (options?.unref) timer.unref();
    return timer;
  },
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout | undefined),
};

/** The clock's time as a Date. */
export function dateOf(clock: Clock): Date {
  return new Date(clock.now());
}

/** Resolves after ms on clock, or rejects with the signal's reason when it aborts first. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

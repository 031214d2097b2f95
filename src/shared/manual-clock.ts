import type { Clock, TimerHandle } from "./clock.js";

interface Timer {
  at: number;
  callback: () => void;
  /** Set for intervals: the period, ms. */
  every?: number;
}

/**
 * A clock whose time moves only when told to, and whose timers fire only then: tests of
 * expiry, grace, sweeps, rate-limit windows and backoff run on it with no real waits.
 */
export class ManualClock implements Clock {
  #now: number;
  #nextId = 1;
  readonly #timers = new Map<number, Timer>();

  /** Starts at startMs (default: the real time now, so certificates' validity checks hold). */
  constructor(startMs: number = Date.now()) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    this.#timers.delete(handle as number);
  }

  setInterval(callback: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    const every = Math.max(1, ms);
    this.#timers.set(id, { at: this.#now + every, callback, every });
    return id;
  }

  clearInterval(handle: TimerHandle | undefined): void {
    this.#timers.delete(handle as number);
  }

  /** Delays of the pending timers from now, shortest first. */
  pending(): number[] {
    return [...this.#timers.values()].map((timer) => timer.at - this.#now).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by ms, firing due timers in time order and letting promises settle
   * after each, so work a timer starts (a store call, a stream write) finishes before the next.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      let due: [number, Timer] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= target && (due === undefined || entry[1].at < due[1].at)) due = entry;
      if (due === undefined) break;
      const [id, timer] = due;
      this.#now = timer.at;
      if (timer.every === undefined) this.#timers.delete(id);
      else timer.at += timer.every;
      timer.callback();
      await settle();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets pending promise callbacks and I/O callbacks already queued run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

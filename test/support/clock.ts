import { systemClock, type Clock } from "../../src/shared/clock.js";

/**
 * A clock that tests move forward by hand, starting at the real time, with real timers: for
 * integration tests whose relay runs real sockets (a ManualClock would stop those timers).
 */
export class TestClock implements Clock {
  private offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
  setTimeout = systemClock.setTimeout;
  clearTimeout = systemClock.clearTimeout;
  setInterval = systemClock.setInterval;
  clearInterval = systemClock.clearInterval;
}

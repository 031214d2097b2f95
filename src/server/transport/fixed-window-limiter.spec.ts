import { describe, expect, it } from "vitest";
import { ManualClock } from "../../shared/manual-clock.js";
import { createFixedWindowLimiter } from "./fixed-window-limiter.js";

describe("createFixedWindowLimiter", () => {
  it("should allow limit takes per window, then refuse with the time left in the window", async () => {
    const clock = new ManualClock(0);
    const limiter = createFixedWindowLimiter({ limit: 3, windowMs: 10_000, clock });
    expect([1, 2, 3].map(() => limiter.take("a").allowed)).toEqual([true, true, true]);
    await clock.advance(4_000);
    expect(limiter.take("a")).toEqual({ allowed: false, retryAfterMs: 6_000 });
    expect(limiter.take("b")).toEqual({ allowed: true });
  });

  it("should start a fresh window once the key's window has passed", async () => {
    const clock = new ManualClock(0);
    const limiter = createFixedWindowLimiter({ limit: 1, windowMs: 1_000, clock });
    expect(limiter.take("a").allowed).toBe(true);
    await clock.advance(999);
    expect(limiter.take("a")).toEqual({ allowed: false, retryAfterMs: 1 });
    await clock.advance(1);
    expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take("a").allowed).toBe(false);
  });

  it("should give back a refunded take within the window", () => {
    const clock = new ManualClock(0);
    const limiter = createFixedWindowLimiter({ limit: 1, windowMs: 1_000, clock });
    expect(limiter.take("a").allowed).toBe(true);
    limiter.refund("a");
    expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take("a").allowed).toBe(false);
  });

  it("should allow everything when the limit is 0", () => {
    const limiter = createFixedWindowLimiter({ limit: 0, windowMs: 1_000, clock: new ManualClock(0) });
    expect(Array.from({ length: 100 }, () => limiter.take("a").allowed).every(Boolean)).toBe(true);
    expect(limiter.size).toBe(0);
  });

  it("should track at most maxKeys keys, however many sources take", () => {
    const limiter = createFixedWindowLimiter({ limit: 1, windowMs: 60_000, clock: new ManualClock(0), maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(100);
    // The most recent keys are still counted; the oldest were forgotten.
    expect(limiter.take("10.0.39.15").allowed).toBe(false);
    expect(limiter.take("10.0.0.0").allowed).toBe(true);
  });
});

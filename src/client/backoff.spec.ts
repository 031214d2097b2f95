import { describe, expect, it } from "vitest";
import { backoffDelay, defaultBackoff, retryDelay } from "./backoff.js";

describe("backoffDelay", () => {
  const options = { initialMs: 100, maxMs: 1_000, multiplier: 2 };
  it.each([
    // attempt, random, expected: min(max, initial * 2^attempt) scaled by random (full jitter)
    [0, 0, 0],
    [0, 0.999999, 100],
    [1, 0.5, 100],
    [2, 0, 0],
    [3, 1, 800],
    [4, 0.25, 250],
    [10, 0.5, 500],
    [50, 1, 1_000],
  ])("should wait, on attempt %d with random %d, %d ms", (attempt, random, expected) => {
    expect(backoffDelay(attempt, options, () => random)).toBe(expected);
  });

  it("should never wait longer than the cap with the defaults", () => {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      expect(backoffDelay(attempt, defaultBackoff, () => 0.999)).toBeLessThanOrEqual(defaultBackoff.maxMs);
    }
  });
});

describe("retryDelay", () => {
  const options = { initialMs: 100, maxMs: 1_000, multiplier: 2 };
  it.each([
    // attempt, relay's hint, random, expected: the hint plus the backoff's jitter
    [0, undefined, 0.5, 50],
    [0, 7_000, 0.5, 7_050],
    [3, 2_000, 0, 2_000],
    [3, 2_000, 1, 2_800],
  ])("should wait, on attempt %d with hint %s and random %d, %d ms", (attempt, hint, random, expected) => {
    expect(retryDelay(attempt, hint, options, () => random)).toBe(expected);
  });
  it("should use the default backoff when given none", () => {
    expect(retryDelay(0, undefined, undefined, () => 1)).toBe(defaultBackoff.initialMs);
  });
});

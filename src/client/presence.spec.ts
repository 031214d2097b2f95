import { describe, expect, it } from "vitest";
import { backoffDelay, defaultBackoff } from "./presence.js";

describe("backoffDelay", () => {
  const options = { initialMs: 100, maxMs: 1_000, multiplier: 2 };
  it.each([
    // attempt, random, expected: half of min(max, initial * 2^attempt) fixed, half scaled by random
    [0, 0, 50],
    [0, 0.999999, 100],
    [1, 0.5, 150],
    [2, 0, 200],
    [3, 1, 800],
    [4, 0, 500],
    [10, 0.5, 750],
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

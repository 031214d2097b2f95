import { describe, expect, it } from "vitest";
import { expiresAtFrom, heartbeatIntervalMs } from "./broadcast-rules.js";

describe("presence rules", () => {
  it("should expire a broadcast ttl seconds after now", () => {
    expect(expiresAtFrom(new Date("2030-01-01T00:00:00Z"), 3600)).toEqual(new Date("2030-01-01T01:00:00Z"));
  });
  it.each([
    [0, 1_080_000],
    [0.5, 1_200_000],
    [0.999_999, 1_320_000],
  ])("should ask for a heartbeat every third of the ttl, ±10%% jitter (random %d)", (random, expected) => {
    expect(heartbeatIntervalMs(3600, random)).toBeCloseTo(expected, -1);
  });
});

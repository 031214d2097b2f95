import { describe, expect, it } from "vitest";
import { deadlineOf, expiredFilter, expiresAtFrom, heartbeatIntervalMs, isLive, liveFilter, offlineCauseOf, presenceRefreshIntervalMs, type Liveness } from "./broadcast-rules.js";

const t = (seconds: number) => new Date(Date.UTC(2030, 0, 1) + seconds * 1000);

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

describe("liveness", () => {
  // [case, broadcast, now in seconds, live, why not live]
  it.each<[string, Liveness, number, boolean, string]>([
    ["before its expiry, no stream", { expiresAt: t(60) }, 59, true, ""],
    ["at its expiry, no stream", { expiresAt: t(60) }, 60, false, "expired"],
    ["held by a stream, within the grace", { expiresAt: t(60), presenceUntil: t(30) }, 29, true, ""],
    ["its stream lost, the grace run out first", { expiresAt: t(60), presenceUntil: t(30) }, 30, false, "lost"],
    ["its stream lost, the ttl run out first", { expiresAt: t(60), presenceUntil: t(90) }, 60, false, "expired"],
    ["both deadlines at once", { expiresAt: t(60), presenceUntil: t(60) }, 60, false, "expired"],
    ["withdrawn (presenceUntil set to now)", { expiresAt: t(60), presenceUntil: t(10), withdrawnAt: t(10) }, 10, false, "withdrawn"],
    ["withdrawn, after its ttl too", { expiresAt: t(60), presenceUntil: t(10), withdrawnAt: t(10) }, 70, false, "withdrawn"],
  ])("a broadcast %s", (_, broadcast, now, live, cause) => {
    expect(isLive(broadcast, t(now))).toBe(live);
    expect(live ? "" : offlineCauseOf(broadcast, t(now))).toBe(cause);
  });

  it.each<[Liveness, number]>([
    [{ expiresAt: t(60) }, t(60).getTime()],
    [{ expiresAt: t(60), presenceUntil: t(30) }, t(30).getTime()],
    [{ expiresAt: t(60), presenceUntil: t(90) }, t(60).getTime()],
  ])("should name the nearer deadline of %j", (broadcast, deadline) => expect(deadlineOf(broadcast)).toBe(deadline));

  it("should translate liveness into MongoDB filters at a point in time", () => {
    expect(liveFilter(t(5))).toEqual({ expiresAt: { $gt: t(5) }, presenceUntil: { $not: { $lte: t(5) } } });
    expect(expiredFilter(t(5))).toEqual({ $or: [{ expiresAt: { $lte: t(5) } }, { presenceUntil: { $lte: t(5) } }] });
  });

  it.each([
    [30_000, 5_000],
    [12_000, 2_000],
    [600, 100],
    [60, 100],
    [6_005, 1_000],
  ])("should refresh presence of a %i ms grace every %i ms (a sixth, 100 ms to 5 s)", (grace, interval) => {
    expect(presenceRefreshIntervalMs(grace)).toBe(interval);
  });
});

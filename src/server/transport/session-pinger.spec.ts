// The pinger's schedule on a manual clock, with stand-in sessions that count pings and answer
// when told to (test/admission.test.ts runs it on real HTTP/2 sessions).
import { EventEmitter } from "node:events";
import type { ServerHttp2Session } from "node:http2";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../shared/manual-clock.js";
import { createSessionPinger } from "./session-pinger.js";

class StandInSession extends EventEmitter {
  closed = false;
  destroyed = false;
  pings = 0;
  answer: ((error: Error | null) => void) | undefined;
  ping(callback: (error: Error | null) => void): boolean {
    this.pings++;
    this.answer = callback;
    return true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

function setUp(count: number) {
  const clock = new ManualClock(0);
  let next = 0;
  // Phases in the middle of each slice of the interval: one session per slice.
  const pinger = createSessionPinger({ intervalMs: 1000, clock, logger: pino({ level: "silent" }), random: () => (next++ + 0.5) / count });
  const sessions = Array.from({ length: count }, () => new StandInSession());
  for (const session of sessions) pinger.add(session as unknown as ServerHttp2Session);
  return { clock, pinger, sessions };
}

describe("createSessionPinger", () => {
  it("should ping each session at its own phase, never all at once", async () => {
    const { clock, sessions } = setUp(10);
    const perSlice: number[] = [];
    for (let slice = 0; slice < 10; slice++) {
      const before = sessions.reduce((sum, session) => sum + session.pings, 0);
      await clock.advance(100);
      perSlice.push(sessions.reduce((sum, session) => sum + session.pings, 0) - before);
      for (const session of sessions) session.answer?.(null);
    }
    expect(perSlice).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(sessions.every((session) => session.pings === 1)).toBe(true);
  });

  it("should ping every interval and destroy a session that left the last ping unanswered", async () => {
    const { clock, sessions } = setUp(2);
    const [answering, silent] = sessions as [StandInSession, StandInSession];
    for (let round = 0; round < 3; round++) {
      await clock.advance(1000);
      answering.answer?.(null);
    }
    expect(answering.pings).toBe(3);
    expect(answering.destroyed).toBe(false);
    expect(silent.destroyed).toBe(true);
    expect(silent.pings).toBe(1);
  });

  it("should stop pinging a closed session and every session on stop()", async () => {
    const { clock, pinger, sessions } = setUp(2);
    const [closing, other] = sessions as [StandInSession, StandInSession];
    closing.closed = true;
    closing.emit("close");
    pinger.stop();
    await clock.advance(5000);
    expect(closing.pings).toBe(0);
    expect(other.pings).toBe(0);
    expect(clock.pending()).toEqual([]);
  });
});

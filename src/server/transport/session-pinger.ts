/**
 * HTTP/2 PINGs on every session, so dead connections are found and destroyed. Node's HTTP/2
 * server sends no pings and has no timeout of its own, so without them a peer that vanished
 * (power cut, NAT dropped the mapping) would hold its session for ever (nodejs #27556, #42710).
 *
 * Each session is pinged on its own schedule, at a random phase of the interval: one pass over
 * every session at once stalled every stream for up to 157 ms at 2,000 peers (bench/scale.ts),
 * and the stall grows with the number of peers. Spread out, the same pings cost a few µs each,
 * evenly over time.
 */
import type { ServerHttp2Session } from "node:http2";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";

/** Options of {@link createSessionPinger}. */
export interface SessionPingerOptions {
  /**
   * How often each session is pinged, ms. A session that has not answered the previous ping
   * when the next one is due (so within one interval) is destroyed.
   */
  intervalMs: number;
  clock: Clock;
  logger: Logger;
  /** Source of each session's phase, [0, 1). Default Math.random. */
  random?: () => number;
}

/** Pings the sessions given to {@link SessionPinger.add} until they close or it stops. */
export interface SessionPinger {
  add(session: ServerHttp2Session): void;
  /** Stops every session's timer (shutdown). */
  stop(): void;
}

export function createSessionPinger(options: SessionPingerOptions): SessionPinger {
  const { intervalMs, clock, logger } = options;
  const random = options.random ?? Math.random;
  const timers = new Map<ServerHttp2Session, SessionTimer>();

  const forget = (session: ServerHttp2Session) => {
    const timer = timers.get(session);
    if (timer === undefined) return;
    if (timer.repeating) clock.clearInterval(timer.handle);
    else clock.clearTimeout(timer.handle);
    timers.delete(session);
  };

  return {
    add(session) {
      let awaiting = false;
      // One answer callback and one timer for the session's whole life, not a new closure and a
      // new timer per ping: made every interval and kept for a whole interval, those outlived
      // scavenges, were promoted, and died in the old generation, which filled between
      // mark-compacts (at 4,000 idle peers, half of what the relay promoted: docs/BENCHMARKS.md).
      const answered = (error: Error | null) => {
        awaiting = false;
        if (error && !session.destroyed) session.destroy();
      };
      const ping = () => {
        if (session.closed || session.destroyed) return forget(session);
        if (awaiting) {
          logger.debug({ intervalMs }, "destroying an HTTP/2 session that did not answer a ping");
          forget(session);
          session.destroy();
          return;
        }
        awaiting = session.ping(answered);
      };
      // The first ping at a random point of the first interval, then every interval from there.
      const timer: SessionTimer = {
        repeating: false,
        handle: clock.setTimeout(
          () => {
            timer.repeating = true;
            timer.handle = clock.setInterval(ping, intervalMs, { unref: true });
            ping();
          },
          Math.floor(random() * intervalMs),
          { unref: true },
        ),
      };
      timers.set(session, timer);
      session.once("close", () => forget(session));
    },
    stop() {
      for (const session of [...timers.keys()]) forget(session);
    },
  };
}

/** A session's timer: the first ping's timeout, then the interval of every later one. */
interface SessionTimer {
  handle: TimerHandle;
  repeating: boolean;
}

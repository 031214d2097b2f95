/**
 * Where the relay's log lines go: stdout, written so that logging can never hold the process.
 *
 * pino's own destination (sonic-boom) does not fit a server that must stop when asked: its exit
 * hook flushes synchronously and retries a broken pipe (EPIPE) forever, so `relay | tee log` with
 * Ctrl-C could hang for good, and its asynchronous writes run in libuv's thread pool, where one
 * blocked write to a pipe nobody reads holds process.exit(). Node's own process.stdout writes to
 * a pipe without blocking (queued in the stream) and to a file or terminal synchronously, and
 * reports a broken pipe, a closed descriptor or a full disk as an 'error' event.
 *
 * So: lines are written to process.stdout; once it fails, or while more than maxBufferedBytes are
 * queued behind a reader that does not read, lines are dropped and counted, never waited for.
 * Lost log lines, never a hang.
 */
import type { Writable } from "node:stream";
import { systemClock, type Clock } from "../../shared/clock.js";

/** Options of {@link createLogDestination}. */
export interface LogDestinationOptions {
  /** Default process.stdout. */
  stream?: Writable;
  /**
   * Bytes that may wait in the stream's queue; lines beyond it are dropped. Default 4 MiB: a
   * few seconds of debug logging under load, and a bound on what a stalled reader can pin.
   */
  maxBufferedBytes?: number;
  /** flush()'s timer runs on it. Default: the system clock. */
  clock?: Clock;
}

/** A pino destination (it has write) that never blocks and never throws. */
export interface LogDestination {
  write(line: string): void;
  /** Resolves once queued lines are written, the stream failed, or timeoutMs passed. */
  flush(timeoutMs: number): Promise<void>;
  /** Lines dropped so far (stream failed or queue full). */
  readonly dropped: number;
  /** The stream's error once it failed (EPIPE, EBADF, ENOSPC…), else undefined. */
  readonly failure: Error | undefined;
}

export function createLogDestination(options: LogDestinationOptions = {}): LogDestination {
  const stream = options.stream ?? process.stdout;
  const maxBufferedBytes = options.maxBufferedBytes ?? 4 * 1024 * 1024;
  const clock = options.clock ?? systemClock;
  let failure: Error | undefined;
  let dropped = 0;
  // Writes not yet acknowledged by the stream, and flushes waiting for that count to reach 0.
  let pending = 0;
  const idle = new Set<() => void>();
  const written = () => {
    pending--;
    if (pending === 0) for (const resolve of idle) resolve();
  };
  // Without a listener an EPIPE on stdout is an uncaught exception that kills the relay.
  stream.on("error", (error: Error) => {
    failure ??= error;
  });
  return {
    write(line) {
      if (failure !== undefined || stream.destroyed || stream.writableLength > maxBufferedBytes) {
        dropped++;
        return;
      }
      try {
        pending++;
        stream.write(line, written);
      } catch (error) {
        // A synchronous stream (a file, a terminal) may throw rather than emit.
        failure ??= error instanceof Error ? error : new Error(String(error));
        written();
        dropped++;
      }
    },
    flush(timeoutMs) {
      if (failure !== undefined || stream.destroyed || pending === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          clock.clearTimeout(timer);
          idle.delete(done);
          stream.off("error", done);
          resolve();
        };
        const timer = clock.setTimeout(done, timeoutMs, { unref: true });
        idle.add(done);
        stream.once("error", done);
      });
    },
    get dropped() {
      return dropped;
    },
    get failure() {
      return failure;
    },
  };
}

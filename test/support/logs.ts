import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

/** One JSON log line as pino writes it. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger whose lines are kept in `lines`, for tests that check what is logged. */
export function capturedLogger(level = "debug"): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString().split("\n")) if (text !== "") lines.push(JSON.parse(text) as LogLine);
      callback();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/** pino's number for the warn level. */
export const warnLevel = 40;

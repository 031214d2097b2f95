import { pino, stdTimeFunctions, type DestinationStream, type Logger, type LevelWithSilent } from "pino";

/** Options of {@link createRelayLogger}. */
export interface RelayLoggerOptions {
  level: LevelWithSilent;
  /** Where JSON lines go (see createLogDestination: never blocks, never throws). */
  destination: DestinationStream;
}

/**
 * The relay's logger: JSON lines with an ISO 8601 `time` (readable by a person and sortable as
 * text, where pino's default is epoch milliseconds), the service name and the process id (the PID
 * a supervisor signals).
 */
export function createRelayLogger(options: RelayLoggerOptions): Logger {
  return pino({ level: options.level, base: { service: "relay", pid: process.pid }, timestamp: stdTimeFunctions.isoTime }, options.destination);
}

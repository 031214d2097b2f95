import { Code, ConnectError } from "@connectrpc/connect";
import { interceptStoreFailures, type RelayStore, type StoreOperation } from "./store/store.js";

/**
 * The one place where foreign errors become ConnectErrors. Clients get a code and a generic
 * message; the original error stays as `cause` and goes to the log, never to the client.
 */

/** Thrown by stores when the database cannot be reached or does not answer in time. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Wraps a store so that every failure of its methods is a StoreUnavailableError (cause kept),
 * telling onFailure which operation failed (metrics). The driver does not always wrap its
 * errors: a query on a socket the server just closed can throw a bare Node EPIPE error, which
 * must reach clients as `unavailable` like any other database failure, not as `internal`.
 */
export function withStoreErrors(store: RelayStore, onFailure?: (operation: StoreOperation) => void): RelayStore {
  return interceptStoreFailures(store, (operation, error) => {
    onFailure?.(operation);
    return error instanceof StoreUnavailableError ? error : new StoreUnavailableError(`store ${operation} failed`, { cause: error });
  });
}

/**
 * Maps any error leaving a handler to a ConnectError, keeping the original as `cause`. Nothing is
 * logged here: the request-log interceptor writes one line per failed RPC, with briefCause.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof StoreUnavailableError || isMongoError(error)) {
    return new ConnectError("the relay's database is unavailable; retry shortly", Code.Unavailable, undefined, undefined, error);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/**
 * An error as one short line for the log: each message along its `cause` chain, joined, at most
 * 300 characters, no stack. A driver's server-selection error alone runs to kilobytes (its
 * topology description); the stack is worth its size only at debug level.
 */
export function briefCause(error: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  for (let current: unknown = error; current !== undefined && current !== null && !seen.has(current) && parts.length < 4; current = (current as { cause?: unknown }).cause) {
    seen.add(current);
    if (current instanceof ConnectError) parts.push(current.rawMessage);
    else if (current instanceof Error) parts.push(`${current.name}: ${current.message.split("\n")[0]}`);
    else parts.push(String(current));
    if (!(current instanceof Error)) break;
  }
  const line = parts.join(": ");
  return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}

/**
 * True for an error of the MongoDB driver (every one of its classes is named Mongo…). Told by
 * name, not instanceof: importing the driver here would load it, and its 17 MiB serialisation
 * buffer, into every relay, the in-memory ones included (main.ts loads it only for --mongodb-uri).
 */
function isMongoError(error: unknown): error is Error & { code?: unknown } {
  return error instanceof Error && error.name.startsWith("Mongo");
}

/** True for MongoDB's duplicate-key error (E11000). */
export function isDuplicateKeyError(error: unknown): boolean {
  return isMongoError(error) && error.code === 11000;
}

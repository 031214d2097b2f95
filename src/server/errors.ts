import { Code, ConnectError } from "@connectrpc/connect";
import { MongoError } from "mongodb";
import type { Logger } from "pino";
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

/** Maps any error leaving a handler to a ConnectError. */
export function toConnectError(error: unknown, logger: Logger, rpc: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof StoreUnavailableError || error instanceof MongoError) {
    logger.error({ err: error instanceof StoreUnavailableError ? (error.cause ?? error) : error, rpc }, "failed to reach the store");
    return new ConnectError("the relay's database is unavailable; retry shortly", Code.Unavailable, undefined, undefined, error);
  }
  logger.error({ err: error, rpc }, "failed to handle request");
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** True for MongoDB's duplicate-key error (E11000). */
export function isDuplicateKeyError(error: unknown): boolean {
  return error instanceof MongoError && error.code === 11000;
}

import { Code, ConnectError } from "@connectrpc/connect";
import { MongoError } from "mongodb";
import type { Logger } from "pino";

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

/** Maps any error leaving a handler to a ConnectError. */
export function toConnectError(error: unknown, logger: Logger, rpc: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof StoreUnavailableError || error instanceof MongoError) {
    logger.error({ err: error, rpc }, "failed to reach the store");
    return new ConnectError("the relay's database is unavailable; retry shortly", Code.Unavailable, undefined, undefined, error);
  }
  logger.error({ err: error, rpc }, "failed to handle request");
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** True for MongoDB's duplicate-key error (E11000). */
export function isDuplicateKeyError(error: unknown): boolean {
  return error instanceof MongoError && error.code === 11000;
}

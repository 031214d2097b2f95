import { Code, ConnectError } from "@connectrpc/connect";
import { codeName } from "../shared/code-name.js";

/**
 * The peer client's error types. Relay answers arrive as `ConnectError`; the few a peer app must
 * tell apart (an email owned by another certificate, an unusable identity directory) become a
 * named subclass here so callers can branch on `instanceof` instead of reading codes.
 */

/** Root of the peer client's own errors. */
export class PeerClientError extends Error {
  override readonly name: string = "PeerClientError";
}

/** Why an identity directory cannot be used. */
export type IdentityProblem =
  /** The directory holds no identity and no email was given to create one. */
  | "missing_email"
  /** The directory's certificate names another email than the one asked for. */
  | "email_mismatch"
  /** The private key is not the key of the certificate. */
  | "key_mismatch"
  /** Only one of the two files exists, or a file does not parse. */
  | "corrupt";

/** The identity directory cannot be loaded or created as asked. */
export class IdentityError extends PeerClientError {
  override readonly name = "IdentityError";
  constructor(
    readonly problem: IdentityProblem,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * Register answered `already_exists`: the email is bound to another certificate (or this
 * certificate to another email). Not retryable: the user must pick another email or reuse the
 * identity that owns it.
 */
export class EmailTakenError extends PeerClientError {
  override readonly name = "EmailTakenError";
  constructor(
    readonly email: string,
    options?: ErrorOptions,
  ) {
    super(`${email} is taken by another certificate: use the identity that registered it, or another email`, options);
  }
}

/**
 * Codes after which retrying the same request cannot succeed, when the relay itself answered
 * them: the presence loop stops on them instead of reconnecting forever. failed_precondition on
 * Heartbeat means another process announced with this identity since (a later Ready replaced our
 * broadcast): announcing again would only take the broadcast back and make the two processes flap.
 */
const permanentCodes = new Set<Code>([Code.InvalidArgument, Code.PermissionDenied, Code.AlreadyExists, Code.FailedPrecondition, Code.Unimplemented]);

/**
 * The header the relay puts on every answer, errors included (docs/PROTOCOL.md). An error
 * without it did not come from the relay: a lost connection (a killed relay surfaces as
 * canceled, internal or unavailable depending on the moment), a load balancer with no backend
 * during a restart (HTTP 404 reads as unimplemented, 403 as permission_denied), an HTTP/2 reset
 * (INADEQUATE_SECURITY reads as permission_denied).
 */
const relayAnswerHeader = "x-request-id";

/**
 * Whether a failed relay call is worth retrying with backoff: always, unless the relay itself
 * answered a code retrying cannot fix. Whatever code a lost connection surfaces as, it is retried.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof PeerClientError) return false;
  if (error instanceof ConnectError) return !(permanentCodes.has(error.code) && error.metadata.has(relayAnswerHeader));
  return true;
}

/** One line a person can act on, for the CLI and status events. */
export function describeError(error: unknown): string {
  if (error instanceof ConnectError) {
    // rawMessage is the relay's (or the transport's) text without the "[code]" prefix.
    return `relay call failed (${codeName(error.code)}): ${error.rawMessage}`.replaceAll("\n", " ");
  }
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.message}${cause}`.replaceAll("\n", " ");
  }
  return String(error);
}


/**
 * The relay's `retry-after` (whole seconds, RFC 9110) on a `resource_exhausted` answer, in ms;
 * undefined when the error carries none. A retry sooner than that is refused again.
 */
export function retryAfterMs(error: unknown): number | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const seconds = Number(error.metadata.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

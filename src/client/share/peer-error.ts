import { PeerClientError } from "../errors.js";

/**
 * Why talking to a peer's server failed, as dialers report it per candidate address:
 * - refused: nothing listens there (connection refused, host or network unreachable)
 * - timeout: no answer within the deadline (a blackholed address, a stalled server)
 * - wrong_peer: a server answered with a certificate whose fingerprint is not the peer's: another
 *   machine at that address (the same private IP on another LAN), so the next candidate is tried
 * - redirect_refused: the peer redirected to a place that is not the peer (another host, plain http)
 * - too_many_redirects: more redirects than allowed
 * - too_large: a body bigger than the caller accepts read whole
 * - cancelled: the caller aborted
 * - failed: anything else (TLS alert, connection reset, malformed HTTP)
 */
export type PeerFailure = "refused" | "timeout" | "wrong_peer" | "redirect_refused" | "too_many_redirects" | "too_large" | "cancelled" | "failed";

/** A failed connection or request to a peer's server. */
export class PeerConnectionError extends PeerClientError {
  override readonly name = "PeerConnectionError";
  constructor(
    readonly failure: PeerFailure,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Maps a socket, TLS or HTTP error to a {@link PeerConnectionError}; the one place that reads errno codes. */
export function peerConnectionErrorOf(error: unknown, where: string, signal?: AbortSignal): PeerConnectionError {
  if (error instanceof PeerConnectionError) return error;
  if (signal?.aborted) return new PeerConnectionError("cancelled", `${where}: cancelled`, { cause: error });
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ECONNREFUSED":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EADDRNOTAVAIL":
      return new PeerConnectionError("refused", `${where}: connection refused`, { cause: error });
    case "ETIMEDOUT":
      return new PeerConnectionError("timeout", `${where}: ${(error as Error).message}`, { cause: error });
    default:
      return new PeerConnectionError("failed", `${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

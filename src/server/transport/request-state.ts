import type { Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import { createContextKey } from "@connectrpc/connect";

/**
 * Whether the client reset or dropped the request's stream (HTTP/2 RST_STREAM, a closed
 * connection), as opposed to ending its half cleanly. Presence needs the difference: a clean end
 * withdraws the broadcast, a lost stream leaves the grace.
 */
export const kRequestReset = createContextKey<() => boolean>(() => false, { description: "relay request reset probe" });

/** The reset probe of a Node request (HTTP/2 or HTTP/1.1). */
export function resetProbeOf(request: Http2ServerRequest | IncomingMessage): () => boolean {
  const stream = (request as Http2ServerRequest).stream;
  if (stream !== undefined) return () => (stream.rstCode !== undefined && stream.rstCode !== 0) || stream.destroyed || stream.session?.destroyed === true;
  return () => (request as IncomingMessage).socket?.destroyed === true;
}

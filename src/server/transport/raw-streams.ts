/**
 * What the relay's own transports (held-heartbeats.ts, direct-unary.ts) share: taking HTTP/2
 * streams from the server before its request handler (connect-node) sees them, the checks
 * connect-node's requests get before the handler, and gRPC's status trailers.
 */
import { constants as http2Constants, type Http2SecureServer, type Http2Server, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "pino";
import { encodeGrpcMessage } from "./grpc-message.js";
import { headerListSize, type ConnectionLimitReason } from "./connection-limits.js";

/** Offered each new stream; true when it took the stream, false to leave it to the server's handler. */
export type StreamTaker = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) => boolean;

/**
 * Offers every stream of server to take first; the streams it declines go on to the one 'stream'
 * listener the server had (Node's compatibility layer, added with the request handler, or an
 * earlier taker's). Call after the server was created with its request handler.
 */
export function takeStreams(server: Http2SecureServer | Http2Server, take: StreamTaker): void {
  const listeners = server.listeners("stream");
  if (listeners.length !== 1) throw new Error(`expected the HTTP/2 server's request handler as its one 'stream' listener, found ${listeners.length}`);
  const next = listeners[0] as (...args: unknown[]) => void;
  server.removeListener("stream", next);
  server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (!take(stream, headers, rawHeaders)) next.call(server, stream, headers, flags, rawHeaders);
  });
}

/** What {@link admitStream} needs: the connection guard's header limit and its reporting. */
export interface StreamAdmission {
  /** The largest header block a request may carry, bytes. */
  maxHeaderListBytes: number;
  onLimited?: (reason: ConnectionLimitReason) => void;
  logger: Logger;
}

/**
 * The checks requests get before they reach the request handler (refuseLargeHeaderLists,
 * skipResetStreams): false when the stream is already gone, or was reset here because its header
 * block is over the limit. Then there is nothing to serve.
 */
export function admitStream(stream: ServerHttp2Stream, rawHeaders: readonly string[], options: StreamAdmission): boolean {
  if (stream.destroyed || stream.closed) return false;
  const size = headerListSize(rawHeaders);
  if (size <= options.maxHeaderListBytes) return true;
  options.onLimited?.("header_list_size");
  options.logger.debug({ size, limit: options.maxHeaderListBytes }, "refused a request whose header block is over the limit");
  stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
  return false;
}

/** gRPC's status trailers for error (none: OK), grpc-message encoded as the gRPC spec says. */
export function grpcTrailers(error: ConnectError | undefined): OutgoingHttpHeaders {
  const trailers: OutgoingHttpHeaders = {};
  setTrailerStatus(new Headers(), error).forEach((value, key) => (trailers[key] = value));
  trailers["grpc-status"] ??= "0";
  if (error !== undefined) trailers["grpc-message"] = encodeGrpcMessage(error.rawMessage);
  return trailers;
}

/** The first value of a request header Node may have given as a list. */
export function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Frame flag of a compressed message (gRPC, Connect streaming). */
export const compressedFlag = 0b01;

/** Bytes before each framed message: a flag byte and a 32-bit length. */
export const envelopeHeaderBytes = 5;

/** The longest delay a timer can hold, ms (about 24.8 days): a deadline past it is none. */
export const maxTimerMs = 2 ** 31 - 1;

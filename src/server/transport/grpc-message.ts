/**
 * gRPC's `grpc-message` as the gRPC over HTTP/2 spec writes it: percent-encoding only for bytes
 * outside 0x20–0x7E and for "%" itself (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md,
 * "Status-Message"). connect-es encodes it with encodeURIComponent, which also encodes "@", ":",
 * "/", "?"… ; grpc-js decodes with decodeURI, which leaves those encoded, so its users read
 * "nobody%40example.com". Re-encoding the header on its way out gives every gRPC client the
 * plain message, and clients that fully decode (connect, grpc-go, Python) read the same text.
 */
import { Http2ServerResponse, type Http2ServerRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";

const header = "grpc-message";

/** Percent-encodes message as the gRPC spec says: bytes outside 0x20–0x7E, and "%". */
export function encodeGrpcMessage(message: string): string {
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(byte);
  }
  return encoded;
}

/** A grpc-message value as encodeURIComponent wrote it, re-encoded as the spec says. */
export function reencodeGrpcMessage(value: string): string {
  let message: string;
  try {
    message = decodeURIComponent(value);
  } catch {
    return value; // not percent-encoding we wrote: leave it
  }
  return encodeGrpcMessage(message);
}

function rewrite(headers: OutgoingHttpHeaders | IncomingHttpHeaders | undefined): void {
  const value = headers?.[header];
  if (typeof value === "string") headers![header] = reencodeGrpcMessage(value);
}

/**
 * The relay's HTTP/2 response class (createSecureServer's `Http2ServerResponse` option): it
 * spec-encodes `grpc-message` wherever a gRPC response carries it, in trailers or in the headers
 * of a trailers-only response; connect-node writes both through writeHead and addTrailers.
 * (gRPC-Web carries its trailers in the body, where browsers' clients decode them fully: it is
 * left as it is.) A class rather than wrapping both methods on every response: that cost two
 * bound functions and two closures per call.
 */
export class GrpcMessageEncodingResponse extends Http2ServerResponse {
  override writeHead(statusCode: number, headers?: OutgoingHttpHeaders): this;
  override writeHead(statusCode: number, statusMessage: string, headers?: OutgoingHttpHeaders): this;
  override writeHead(statusCode: number, statusMessageOrHeaders?: string | OutgoingHttpHeaders, headers?: OutgoingHttpHeaders): this {
    if (speaksGrpc(this.req)) rewrite(typeof statusMessageOrHeaders === "string" ? headers : statusMessageOrHeaders);
    return typeof statusMessageOrHeaders === "string" ? super.writeHead(statusCode, statusMessageOrHeaders, headers) : super.writeHead(statusCode, statusMessageOrHeaders);
  }

  override addTrailers(trailers: OutgoingHttpHeaders): void {
    if (speaksGrpc(this.req)) rewrite(trailers);
    super.addTrailers(trailers);
  }
}

/** gRPC over HTTP/2, not gRPC-Web. */
function speaksGrpc(request: Http2ServerRequest | undefined): boolean {
  const contentType = request?.headers["content-type"];
  return typeof contentType === "string" && contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web");
}

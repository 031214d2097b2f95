/**
 * Unary calls served on the raw HTTP/2 stream, in gRPC and in the Connect protocol with the
 * binary codec (POST): the forms the relay's own client library, Go and Python peers use.
 *
 * Through connect-node, each unary call builds Node's request and response compatibility
 * objects, web Headers, an async-iterable pipeline, linked AbortControllers whose abort at the
 * end of every call builds a stack-traced DOMException, and a handler context. For Lookup, the
 * call the relay answers most, that machinery was most of the CPU a call cost, before any of the
 * relay's own work (bench/scale.ts, the Lookup phase with --profile). A call served here reads its
 * one message, runs the same handler, and writes its answer on the stream.
 *
 * Everything else goes to connect-node as before: the JSON codec, gRPC-Web, Connect GET
 * requests, compressed requests and malformed deadline headers. Both paths run the same handlers
 * (UnaryHandler), rate limits, metrics and logs; test/unary-transports.test.ts holds them to the
 * same answers. Responses are sent uncompressed, which every protocol allows whatever the client
 * accepts; the relay's unary answers served here are a few hundred bytes.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import type { UnaryHandler } from "../service/relay-service.js";
import type { CallerContext } from "../identity/caller-identity.js";
import { requestIdHeader, type CallObserver, type ObservedCall } from "./observe-interceptor.js";
import type { RateLimiter } from "./rate-limit.js";
import type { ConnectionLimitReason } from "./connection-limits.js";
import { admitStream, compressedFlag, envelopeHeaderBytes, firstValue, grpcTrailers, maxTimerMs, takeStreams } from "./raw-streams.js";

/** What {@link serveDirectUnary} needs. */
export interface DirectUnaryOptions {
  /** The methods served here. */
  handlers: readonly UnaryHandler[];
  observer: CallObserver;
  rateLimiter: RateLimiter;
  /** The caller of a stream, as connect-node's calls see it (able to mark itself authenticated). */
  callerOf: (stream: ServerHttp2Stream) => CallerContext;
  /** The largest header block a request may carry, bytes (the connection guard's limit). */
  maxHeaderListBytes: number;
  onLimited?: (reason: ConnectionLimitReason) => void;
  /** Deadlines the client sets (grpc-timeout, connect-timeout-ms) run on it. */
  clock: Clock;
  logger: Logger;
}

type Protocol = "grpc" | "connect";

/** The protocols served here, by request content type. */
const protocols: Record<string, Protocol | undefined> = {
  "application/grpc": "grpc",
  "application/grpc+proto": "grpc",
  "application/proto": "connect",
};

interface Route {
  readonly handler: UnaryHandler;
  /** "package.Service/Method", as metrics and logs name it. */
  readonly rpc: string;
}

/**
 * Takes unary calls of handlers' methods in the forms above from server before its request
 * handler (connect-node) sees them; every other stream goes on to it. Call once, after the server
 * was created with its request handler.
 */
export function serveDirectUnary(server: Parameters<typeof takeStreams>[0], options: DirectUnaryOptions): void {
  const routes = new Map<string, Route>(options.handlers.map((handler) => [`/${handler.method.parent.typeName}/${handler.method.name}`, { handler, rpc: `${handler.method.parent.typeName}/${handler.method.name}` }]));
  takeStreams(server, (stream, headers, rawHeaders) => {
    const route = headers[":method"] === "POST" ? routes.get(headers[":path"] ?? "") : undefined;
    const protocol = route === undefined ? undefined : protocolOf(headers);
    if (route === undefined || protocol === undefined) return false;
    const timeout = protocol === "grpc" ? parseGrpcTimeout(firstValue(headers["grpc-timeout"]) ?? null, Number.MAX_SAFE_INTEGER) : parseConnectTimeout(firstValue(headers["connect-timeout-ms"]) ?? null, Number.MAX_SAFE_INTEGER);
    // A malformed deadline is connect-node's to refuse, in its words.
    if (timeout.error !== undefined) return false;
    if (admitStream(stream, rawHeaders, options)) serveUnary(stream, headers, protocol, timeout.timeoutMs, route, options);
    return true;
  });
}

/** grpc or connect when this module serves the request as it stands, else undefined. */
function protocolOf(headers: IncomingHttpHeaders): Protocol | undefined {
  const protocol = protocols[String(headers["content-type"] ?? "").toLowerCase()];
  if (protocol === undefined) return undefined;
  // Compressed requests are connect-node's to serve; peers send none.
  const encoding = headers[protocol === "grpc" ? "grpc-encoding" : "content-encoding"];
  return encoding === undefined || encoding === "identity" ? protocol : undefined;
}

/** Serves one unary call: reads its message, runs its handler, answers. */
function serveUnary(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, protocol: Protocol, timeoutMs: number | undefined, route: Route, options: DirectUnaryOptions): void {
  const { handler } = route;
  const caller = options.callerOf(stream);
  const call: ObservedCall = options.observer.begin(route.rpc, false, firstValue(headers[requestIdHeader]), () => caller);
  const readMaxBytes = handler.readMaxBytes;
  // gRPC frames its one message; a Connect unary body is the message.
  const maxBodyBytes = protocol === "grpc" ? envelopeHeaderBytes + readMaxBytes : readMaxBytes;
  const chunks: Buffer[] = [];
  let received = 0;
  let sized = false;
  let done = false;
  let deadline: TimerHandle | undefined;

  stream.on("error", (error) => options.logger.debug({ err: error }, "unary call stream error"));
  stream.once("close", () => {
    // Reset by the client or lost with its connection before the answer.
    if (!done) end(new ConnectError("stream closed before its end", Code.Canceled), undefined, false);
  });
  try {
    options.rateLimiter.take(caller.observedAddress, caller.identity?.fingerprint);
  } catch (error) {
    end(error, undefined, true);
    return;
  }
  const declared = protocol === "connect" ? Number(firstValue(headers["content-length"]) ?? Number.NaN) : Number.NaN;
  // Refused from its header, before its bytes are buffered (as connect-node does).
  if (declared > readMaxBytes) return end(new ConnectError(`message size ${declared} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted), undefined, true);
  if (timeoutMs !== undefined && timeoutMs <= maxTimerMs) deadline = options.clock.setTimeout(() => end(new ConnectError("the operation timed out", Code.DeadlineExceeded), undefined, true), timeoutMs, { unref: true });
  stream.on("data", onData);
  stream.once("end", onEnd);

  function onData(chunk: Buffer): void {
    if (done) return;
    received += chunk.length;
    chunks.push(chunk);
    // A gRPC message too large is refused from its envelope header, before its bytes arrive.
    if (protocol === "grpc" && !sized && received >= envelopeHeaderBytes) {
      sized = true;
      const length = (chunks.length === 1 ? chunk : Buffer.concat(chunks)).readUInt32BE(1);
      if (length > readMaxBytes) return end(new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted), undefined, true);
    }
    if (received <= maxBodyBytes) return;
    if (protocol === "connect") return end(new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted), undefined, true);
    end(new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented), undefined, true);
  }

  function onEnd(): void {
    if (done) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    let request;
    try {
      request = fromBinary(handler.method.input, protocol === "grpc" ? unwrap(body) : body);
    } catch (error) {
      return end(error instanceof ConnectError ? error : new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal), undefined, true);
    }
    handler.handle(request, caller).then(
      (response) => {
        if (done) return;
        let message: Uint8Array;
        try {
          message = toBinary(handler.method.output, create(handler.method.output, response));
        } catch (error) {
          return end(new ConnectError(`serialize binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal), undefined, true);
        }
        end(undefined, message, true);
      },
      (error: unknown) => end(error, undefined, true),
    );
  }

  /**
   * Ends the call once: reports it and, when answer, answers the message (error undefined) or the
   * error. A request body not yet read is read and dropped, so that it does not hold the window.
   */
  function end(error: unknown, message: Uint8Array | undefined, answer: boolean): void {
    if (done) return;
    done = true;
    chunks.length = 0;
    if (deadline !== undefined) options.clock.clearTimeout(deadline);
    stream.removeListener("data", onData);
    // As connect-node's unary handlers: a foreign error is an internal one, its cause kept for the log.
    const connectError = error === undefined ? undefined : error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error);
    connectError?.metadata.set(requestIdHeader, call.requestId);
    call.finish(connectError);
    if (!answer || stream.destroyed || stream.closed) return;
    if (!stream.readableEnded) stream.resume();
    try {
      if (connectError !== undefined) answerError(connectError);
      else if (protocol === "grpc") {
        stream.respond({ ":status": 200, "content-type": "application/grpc+proto", [requestIdHeader]: call.requestId }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        send(encodeEnvelope(0, message!));
      } else {
        stream.respond({ ":status": 200, "content-type": "application/proto", "content-length": message!.byteLength, [requestIdHeader]: call.requestId });
        send(message!);
      }
    } catch (failure) {
      // The stream closed between the check and the answer: nobody is left to tell.
      options.logger.debug({ err: failure }, "failed to answer a unary call");
    }
  }

  function answerError(error: ConnectError): void {
    if (protocol === "grpc") {
      // Trailers-only: the status, and the error's metadata, in the one header block.
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto", ...grpcTrailers(error) }, { endStream: true });
      return;
    }
    const body = errorToJsonBytes(error, {});
    const head: Record<string, string | number> = { ":status": codeToHttpStatus(error.code), "content-type": "application/json", "content-length": body.byteLength };
    error.metadata.forEach((value, key) => (head[key] = value));
    stream.respond(head);
    send(body);
  }

  /**
   * Writes the answer's body and ends the stream. Through write, not end(body): the connection
   * guard's write watch wraps the stream's write, and bounds how long an answer may wait unsent.
   */
  function send(body: Uint8Array): void {
    stream.write(body);
    stream.end();
  }
}

/** The one message of a gRPC unary request body, or the error connect-node answers for it. */
function unwrap(body: Buffer): Uint8Array {
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  if (body.length < envelopeHeaderBytes || body.length < envelopeHeaderBytes + body.readUInt32BE(1)) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (body.length > envelopeHeaderBytes + body.readUInt32BE(1)) throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  if ((body[0]! & compressedFlag) !== 0) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  return body.subarray(envelopeHeaderBytes);
}

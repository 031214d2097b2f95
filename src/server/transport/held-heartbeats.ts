/**
 * Heartbeat streams served on the raw HTTP/2 stream, in gRPC and in the Connect protocol with the
 * binary codec: the forms the relay's own client library, Go and Python peers use.
 *
 * Every peer holds one Heartbeat stream for as long as it is online, so what a held stream costs
 * is multiplied by every connected peer. Through connect-node, one held stream kept about 43 KiB
 * of live objects (Node's request and response compatibility objects, web streams, and a chain of
 * async generators and promises per stream); a stream served here keeps its HTTP/2 stream, a few
 * listeners and one small state (bench/scale.ts, the memory phase, relay against its floors).
 *
 * Everything else on the port, and Heartbeat in the forms this does not serve (JSON codecs,
 * gRPC-Web, compressed messages, a malformed deadline header), goes to connect-node as before. Both paths
 * run the same Heartbeat service (HeartbeatService), limits, metrics and logs; the test
 * test/heartbeat-transports.test.ts holds them to the same answers.
 */
import type { Http2SecureServer, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { endStreamFlag, endStreamToJson, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import { HeartbeatRequestSchema, HeartbeatResponseSchema, RelayService } from "../../gen/relay/v1/relay_pb.js";
import type { HeartbeatEnd, HeartbeatService, HeartbeatStream } from "../service/relay-service.js";
import { callerOfStream, type CallerContext } from "../identity/caller-identity.js";
import { heartbeatRpc, requestIdHeader, type CallObserver, type ObservedCall } from "./observe-interceptor.js";
import type { RateLimiter } from "./rate-limit.js";
import type { StreamLimiter } from "./stream-limit.js";
import type { ConnectionLimitReason } from "./connection-limits.js";
import { admitStream, compressedFlag, envelopeHeaderBytes, firstValue, grpcTrailers, maxTimerMs, takeStreams } from "./raw-streams.js";

/** What {@link serveHeldHeartbeats} needs. */
export interface HeldHeartbeatsOptions {
  heartbeats: HeartbeatService;
  observer: CallObserver;
  rateLimiter: RateLimiter;
  streamLimiter: StreamLimiter;
  /** Tells the connection guard the caller's certificate is registered (as connect-node's calls do). */
  markAuthenticated: (caller: CallerContext, stream: ServerHttp2Stream) => void;
  /** The largest header block a request may carry, bytes (the connection guard's limit). */
  maxHeaderListBytes: number;
  onLimited?: (reason: ConnectionLimitReason) => void;
  /** Deadlines the client sets (grpc-timeout, connect-timeout-ms) run on it. */
  clock: Clock;
  logger: Logger;
}

const heartbeatPath = `/${RelayService.typeName}/${RelayService.method.heartbeat.name}`;

/** The protocols served here, by request content type. */
const protocols: Record<string, "grpc" | "connect" | undefined> = {
  "application/grpc": "grpc",
  "application/grpc+proto": "grpc",
  "application/connect+proto": "connect",
};


/**
 * Takes Heartbeat streams in the forms above from server before its request handler (Node's
 * compatibility layer, which connect-node is) sees them; every other stream goes on to it. Call
 * once, after the server was created with its request handler.
 */
export function serveHeldHeartbeats(server: Http2SecureServer | Http2Server, options: HeldHeartbeatsOptions): void {
  takeStreams(server, (stream, headers, rawHeaders) => {
    const protocol = headers[":path"] === heartbeatPath && headers[":method"] === "POST" ? protocolOf(headers) : undefined;
    const timeout = protocol === undefined ? undefined : protocol === "grpc" ? parseGrpcTimeout(firstValue(headers["grpc-timeout"]) ?? null, Number.MAX_SAFE_INTEGER) : parseConnectTimeout(firstValue(headers["connect-timeout-ms"]) ?? null, Number.MAX_SAFE_INTEGER);
    // A malformed deadline is connect-node's to refuse, in its words.
    if (protocol === undefined || timeout === undefined || timeout.error !== undefined) return false;
    if (admitStream(stream, rawHeaders, options)) serveHeartbeat(stream, headers, protocol, timeout.timeoutMs, options);
    return true;
  });
}

/** grpc or connect when this module serves the request as it stands, else undefined. */
function protocolOf(headers: IncomingHttpHeaders): "grpc" | "connect" | undefined {
  const protocol = protocols[String(headers["content-type"] ?? "").toLowerCase()];
  if (protocol === undefined) return undefined;
  // Compressed messages are connect-node's to serve; peers send none.
  const encoding = headers[protocol === "grpc" ? "grpc-encoding" : "connect-content-encoding"];
  return encoding === undefined || encoding === "identity" ? protocol : undefined;
}

/** Serves one Heartbeat stream until it ends. */
function serveHeartbeat(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, protocol: "grpc" | "connect", timeoutMs: number | undefined, options: HeldHeartbeatsOptions): void {
  const caller = callerOfStream(stream);
  const call: ObservedCall = options.observer.begin(heartbeatRpc, true, firstValue(headers[requestIdHeader]), () => caller);
  const readMaxBytes = options.heartbeats.readMaxBytes;
  // undefined until authenticated; then the stream the service opened.
  let opened: HeartbeatStream | undefined;
  let release: (() => void) | undefined;
  let forgetShutdown: (() => void) | undefined;
  let responded = false;
  let done = false;
  let busy = false;
  let halfClosed = false;
  let first = true;
  let pending: Buffer | undefined;
  let deadline: TimerHandle | undefined;

  stream.on("error", (error) => options.logger.debug({ err: error }, "heartbeat stream error"));
  stream.once("close", () => {
    if (done) return;
    // Reset by the client or lost with its connection, before an end of its own.
    finishWith(new ConnectError("stream closed before its end", Code.Canceled), "lost", false);
  });

  const fingerprint = caller.identity?.fingerprint;
  try {
    options.rateLimiter.take(caller.observedAddress, fingerprint);
    if (fingerprint !== undefined) release = options.streamLimiter.acquire(RelayService.method.heartbeat.name, fingerprint);
  } catch (error) {
    finishWith(error, undefined, true);
    return;
  }
  // A deadline past what a timer can hold (about 24.8 days) is no deadline for a heartbeat stream.
  if (timeoutMs !== undefined && timeoutMs <= maxTimerMs) deadline = options.clock.setTimeout(() => finishWith(new ConnectError("the operation timed out", Code.DeadlineExceeded), "lost", true), timeoutMs, { unref: true });
  forgetShutdown = options.heartbeats.shutdownHooks.add(() => finishWith(new ConnectError("the relay is shutting down: reconnect and announce again", Code.Unavailable), "shutdown", true));
  // Nothing is read until the caller is known: the messages wait in the stream's window.
  stream.pause();
  options.heartbeats.open(caller).then(
    (heartbeat) => {
      if (done) {
        void heartbeat.settle("lost");
        return;
      }
      opened = heartbeat;
      if (caller.identity !== undefined) options.markAuthenticated(caller, stream);
      respond();
      stream.on("data", onData);
      stream.once("end", onEnd);
      stream.resume();
    },
    (error: unknown) => finishWith(error, undefined, true),
  );

  function respond(): void {
    if (responded || stream.destroyed || stream.closed) return;
    responded = true;
    stream.respond({ ":status": 200, "content-type": protocol === "grpc" ? "application/grpc+proto" : "application/connect+proto", [requestIdHeader]: call.requestId }, { waitForTrailers: protocol === "grpc" });
  }

  function onData(chunk: Buffer): void {
    pending = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    next();
  }

  /** Handles the next complete message unless one is being handled. */
  function next(): void {
    while (!busy && !done && pending !== undefined && pending.length >= envelopeHeaderBytes) {
      const flags = pending[0]!;
      const length = pending.readUInt32BE(1);
      // Refused from its header, before its bytes are buffered.
      if (length > readMaxBytes) return fail(new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
      if (pending.length < envelopeHeaderBytes + length) return;
      const bytes = pending.subarray(envelopeHeaderBytes, envelopeHeaderBytes + length);
      pending = pending.length === envelopeHeaderBytes + length ? undefined : pending.subarray(envelopeHeaderBytes + length);
      if ((flags & compressedFlag) !== 0) return fail(new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal));
      if (protocol === "connect" && (flags & endStreamFlag) === endStreamFlag) return fail(new ConnectError("unexpected end flag", Code.InvalidArgument));
      let request;
      try {
        request = fromBinary(HeartbeatRequestSchema, bytes);
        // The first message was paid for with the call; each later one pays on arrival.
        if (!first) options.rateLimiter.take(caller.observedAddress, fingerprint);
      } catch (error) {
        return fail(error instanceof ConnectError ? error : new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal));
      }
      first = false;
      busy = true;
      // One message at a time, as connect-node iterates them: the rest wait in the window.
      stream.pause();
      opened!.beat(request).then(
        (message) => {
          busy = false;
          if (done) return;
          const frame = encodeEnvelope(0, toBinary(HeartbeatResponseSchema, create(HeartbeatResponseSchema, message)));
          // A client that does not read its answers is not read from either.
          if (stream.write(frame)) resume();
          else stream.once("drain", resume);
        },
        (error: unknown) => {
          busy = false;
          fail(error);
        },
      );
    }
  }

  function resume(): void {
    if (done) return;
    if (halfClosed) return onEnd();
    stream.resume();
    next();
  }

  function onEnd(): void {
    halfClosed = true;
    if (busy || done) return;
    if (pending !== undefined) return fail(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
    // A reset first ends the request body just as a half-close does; the reset reaches the
    // stream an event-loop turn later. Let that turn pass, then ask.
    setImmediate(() => {
      if (done) return;
      if (stream.destroyed || (stream.rstCode !== undefined && stream.rstCode !== 0) || stream.session?.destroyed === true) finishWith(new ConnectError("the heartbeat stream was lost", Code.Canceled), "lost", false);
      else finishWith(undefined, "clean", true);
    });
  }

  /** Ends the stream with error after it was opened: presence keeps its grace. */
  function fail(error: unknown): void {
    finishWith(error, "lost", true);
  }

  /**
   * Ends the stream once: reports it, settles its presence (unless it never opened), and, when
   * answer, tells the client how it ended (gRPC trailers, or Connect's end-of-stream message).
   */
  function finishWith(error: unknown, end: HeartbeatEnd | undefined, answer: boolean): void {
    if (done) return;
    done = true;
    const connectError = error === undefined ? undefined : ConnectError.from(error);
    connectError?.metadata.set(requestIdHeader, call.requestId);
    call.finish(connectError);
    release?.();
    forgetShutdown?.();
    if (deadline !== undefined) options.clock.clearTimeout(deadline);
    stream.removeListener("data", onData);
    // Presence is settled before the client hears the end: a peer that half-closed and got its
    // answer is already offline for everyone who looks.
    const settled = opened !== undefined && end !== undefined ? opened.settle(end) : undefined;
    if (!answer) return;
    if (settled === undefined) answerEnd(connectError);
    else void settled.then(() => answerEnd(connectError));
  }

  function answerEnd(connectError: ConnectError | undefined): void {
    if (stream.destroyed || stream.closed) return;
    endStream(connectError);
    // Whatever the client still sends is read and dropped, so that a paused stream does not hold
    // its window (the stream closes when the client ends or resets its half).
    if (!halfClosed) stream.resume();
  }

  function endStream(error: ConnectError | undefined): void {
    if (protocol === "grpc") {
      const trailers = grpcTrailers(error);
      if (!responded) {
        // Trailers-only: the status in the one header block.
        responded = true;
        stream.respond({ ":status": 200, "content-type": "application/grpc+proto", ...trailers }, { endStream: true });
        return;
      }
      stream.once("wantTrailers", () => stream.sendTrailers(trailers));
      stream.end();
      return;
    }
    respond();
    // Through write, not end(message): the connection guard's write watch wraps the stream's
    // write, and bounds how long the message may wait unsent.
    stream.write(encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), error, undefined)))));
    stream.end();
  }
}

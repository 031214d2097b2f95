/**
 * One interceptor that observes every RPC: counts its outcome and duration on the relay's
 * metrics and writes one structured log line when it ends. Request and response messages are
 * never logged (a Register carries a certificate PEM); the caller is named by its fingerprint
 * prefix and the email its certificate claims.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import type { RelayMetrics } from "../ops/metrics.js";
import { codeName } from "../../shared/code-name.js";
import { kCaller, type CallerContext } from "../identity/caller-identity.js";
import { briefCause } from "../errors.js";

/** Options of {@link createObserveInterceptor}. */
export interface ObserveInterceptorOptions {
  metrics: RelayMetrics;
  logger: Logger;
  /**
   * Aborted when the relay shuts down. Calls it ends (heartbeat streams answered `unavailable`
   * with no foreign cause) are the relay's own doing, not faults: they are logged at debug, not
   * as errors. A store failure during the drain is still an error.
   */
  shutdownSignal?: AbortSignal;
}

/** Header carrying the request id, read from the request when well-formed and always answered. */
export const requestIdHeader = "x-request-id";

/** Codes that mean the caller got something wrong: logged at debug. The rest are the relay's. */
const clientFaults = new Set<Code>([
  Code.Canceled,
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.Aborted,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

/** Heartbeat's name in metrics and logs. */
export const heartbeatRpc = `${RelayService.typeName}/${RelayService.method.heartbeat.name}`;

/** One observed call: its request id, and how to report its end. */
export interface ObservedCall {
  readonly requestId: string;
  /** Reports the call's end (undefined: success) once; later reports are ignored. */
  finish(error: unknown): void;
}

/** Starts observing calls; shared by the interceptor and the held Heartbeat transport. */
export interface CallObserver {
  /**
   * Observes one call of rpc ("package.Service/Method"): givenRequestId is the caller's
   * x-request-id header (kept when well-formed), caller is read only when a line is logged.
   */
  begin(rpc: string, stream: boolean, givenRequestId: string | null | undefined, caller: () => CallerContext): ObservedCall;
}

/** Creates the observer of {@link createObserveInterceptor}. */
export function createCallObserver(options: ObserveInterceptorOptions): CallObserver {
  const { metrics, logger } = options;
  // Request ids: 8 random hex digits per process, then a counter. Unique is all an id must be;
  // 8 bytes from the system's random source per call cost more than the rest of this
  // interceptor (bench/scale.ts, Lookup profile).
  const idPrefix = randomBytes(4).toString("hex");
  let sequence = 0;
  const nextRequestId = () => idPrefix + ((sequence = (sequence + 1) >>> 0) >>> 0).toString(16).padStart(8, "0");
  return {
    begin(rpc, stream, given, callerOf) {
      const started = performance.now();
      const requestId = given && /^[\w.:-]{1,64}$/.test(given) ? given : nextRequestId();
      const isHeartbeat = rpc === heartbeatRpc;
      if (isHeartbeat) metrics.heartbeatStreamsOpen.inc();
      let finished = false;
      return {
        requestId,
        finish(error) {
          if (finished) return;
          finished = true;
          const seconds = (performance.now() - started) / 1000;
          const connectError = error === undefined ? undefined : ConnectError.from(error);
          const code = connectError?.code;
          const outcome = codeName(code);
          metrics.countRequest(rpc, outcome);
          (stream ? metrics.streamDuration : metrics.duration).observe(rpc, seconds);
          if (isHeartbeat) metrics.heartbeatStreamsOpen.dec();
          // Most calls succeed and the debug level is usually off: then there is nothing to log.
          if (connectError === undefined && !logger.isLevelEnabled("debug")) return;

          const caller = callerOf();
          const identity = caller.identity;
          const fields = {
            requestId,
            rpc,
            code: outcome,
            durationMs: Math.round(seconds * 1e4) / 10,
            // The source address as the relay saw it (behind a NAT: the NAT's).
            address: caller.observedAddress,
            // 16 hex digits (64 bits) tell peers apart in a log without printing the whole identity.
            fingerprint: identity?.fingerprint.slice(0, 16),
            // What the certificate claims (CN or SAN), for reading logs; identity is the fingerprint.
            email: identity?.facts.emails[0],
          };
          if (connectError === undefined) {
            logger.debug(fields, "rpc finished");
          } else if ((code !== undefined && clientFaults.has(code)) || (options.shutdownSignal?.aborted && code === Code.Unavailable && connectError.cause === undefined)) {
            logger.debug({ ...fields, reason: connectError.rawMessage }, "rpc refused");
          } else if (connectError.cause === undefined) {
            logger.error({ ...fields, reason: connectError.rawMessage }, "rpc failed");
          } else {
            // One short line: what the client was told and why. The cause (a driver error, a bug) is
            // for the log only; its stack, and a driver error's kilobytes of detail, only at debug.
            const detail = logger.isLevelEnabled("debug") ? { err: connectError.cause } : {};
            logger.error({ ...fields, reason: connectError.rawMessage, cause: briefCause(connectError.cause), ...detail }, "rpc failed");
          }
        },
      };
    },
  };
}

/** Creates the metrics-and-logging interceptor; install it first so it sees every outcome. */
export function createObserveInterceptor(options: ObserveInterceptorOptions | { observer: CallObserver }): Interceptor {
  const observer = "observer" in options ? options.observer : createCallObserver(options);
  // One name string per method, not one built per call and held by every open stream.
  const rpcNames = new WeakMap<object, string>();
  const rpcNameOf = (method: { parent: { typeName: string }; name: string }) => {
    let name = rpcNames.get(method);
    if (name === undefined) rpcNames.set(method, (name = `${method.parent.typeName}/${method.name}`));
    return name;
  };
  return (next) => async (request) => {
    const call = observer.begin(rpcNameOf(request.method), request.stream, request.header.get(requestIdHeader), () => request.contextValues.get(kCaller));
    const { requestId, finish } = call;
    const tag = (error: unknown): unknown => {
      if (error instanceof ConnectError) error.metadata.set(requestIdHeader, requestId);
      return error;
    };

    let response: UnaryResponse | StreamResponse;
    try {
      response = await next(request);
    } catch (error) {
      finish(error);
      throw tag(error);
    }
    response.header.set(requestIdHeader, requestId);
    if (!response.stream) {
      finish(undefined);
      return response;
    }
    return { ...response, message: observed(response.message, finish, tag) };
  };
}

/**
 * Yields a streaming response's messages and reports how it ended. At module level, not declared
 * per call: a generator function declared inside the interceptor is a new closure per stream,
 * with its own prototype object and hidden class, held as long as the stream.
 */
async function* observed<T>(messages: AsyncIterable<T>, finish: (error: unknown) => void, tag: (error: unknown) => unknown): AsyncGenerator<T> {
  try {
    yield* messages;
    finish(undefined);
  } catch (error) {
    finish(error);
    throw tag(error);
  } finally {
    // The generator was closed early: the client went away or the relay is stopping.
    finish(new ConnectError("stream closed before its end", Code.Canceled));
  }
}

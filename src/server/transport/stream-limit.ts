/**
 * A cap on the long-lived streams (Heartbeat, Watch) one client certificate may hold open at
 * once, per RPC. A peer needs one Heartbeat stream; each open stream costs the relay a handler,
 * its buffers and a slot on a connection, so without a cap one certificate could hold thousands.
 */
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import type { DescMessage } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { kCaller } from "../identity/caller-identity.js";

/** Options of {@link createStreamLimitInterceptor}. */
export interface StreamLimitInterceptorOptions {
  /** Most open streams of one RPC per certificate; 0: no limit. */
  maxStreamsPerCertificate: number;
  logger: Logger;
  /** Called each time a stream is refused (metrics). */
  onLimited?: () => void;
}

/**
 * Refuses a new RelayService stream beyond the cap with `resource_exhausted`, before its handler
 * runs; the streams already open are left alone (closing the oldest instead would let a stolen
 * or misconfigured copy of a certificate knock the real peer offline in a loop).
 */
export function createStreamLimitInterceptor(options: StreamLimitInterceptorOptions): Interceptor {
  const { maxStreamsPerCertificate: max, logger } = options;
  const open = new Map<string, number>();
  // Unary calls go straight to next, without an async function's promise and microtask.
  return (next) => (request) => (max <= 0 || !request.stream || request.service.typeName !== RelayService.typeName ? next(request) : limited(next, request));

  async function limited(next: Parameters<Interceptor>[0], request: StreamRequest<DescMessage, DescMessage>): Promise<UnaryResponse | StreamResponse> {
    const fingerprint = request.contextValues.get(kCaller).identity?.fingerprint;
    // Without a certificate the handler refuses the call at once: nothing to count.
    if (fingerprint === undefined) return next(request);
    const key = `${request.method.name} ${fingerprint}`;
    const count = open.get(key) ?? 0;
    if (count >= max) {
      options.onLimited?.();
      logger.debug({ rpc: request.method.name, fingerprint: fingerprint.slice(0, 16), limit: max }, "refused a stream over the per-certificate limit");
      throw new ConnectError(`too many open ${request.method.name} streams for this client certificate: at most ${max}; close one first`, Code.ResourceExhausted);
    }
    open.set(key, count + 1);
    // The call's signal aborts when the call ends, however it ends (a normal end included), even
    // when the response was never iterated.
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    };
    if (request.signal.aborted) release();
    else request.signal.addEventListener("abort", release, { once: true });
    try {
      return await next(request);
    } catch (error) {
      release();
      throw error;
    }
  }
}

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

/** Options of {@link createStreamLimiter}. */
export interface StreamLimitInterceptorOptions {
  /** Most open streams of one RPC per certificate; 0: no limit. */
  maxStreamsPerCertificate: number;
  logger: Logger;
  /** Called each time a stream is refused (metrics). */
  onLimited?: () => void;
}

/** Counts open streams per RPC and certificate; shared by the interceptor and the held Heartbeat transport. */
export interface StreamLimiter {
  /**
   * Counts one more open stream of rpc for fingerprint, and returns the function that counts it
   * closed (call it once, however the stream ends). Throws `resource_exhausted` over the cap.
   */
  acquire(rpc: string, fingerprint: string): () => void;
}

/**
 * Creates the limiter. A new stream beyond the cap is refused before its handler runs; the streams
 * already open are left alone (closing the oldest instead would let a stolen or misconfigured copy
 * of a certificate knock the real peer offline in a loop).
 */
export function createStreamLimiter(options: StreamLimitInterceptorOptions): StreamLimiter {
  const { maxStreamsPerCertificate: max, logger } = options;
  const open = new Map<string, number>();
  return {
    acquire(rpc, fingerprint) {
      if (max <= 0) return () => {};
      const key = `${rpc} ${fingerprint}`;
      const count = open.get(key) ?? 0;
      if (count >= max) {
        options.onLimited?.();
        logger.debug({ rpc, fingerprint: fingerprint.slice(0, 16), limit: max }, "refused a stream over the per-certificate limit");
        throw new ConnectError(`too many open ${rpc} streams for this client certificate: at most ${max}; close one first`, Code.ResourceExhausted);
      }
      open.set(key, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(key) ?? 1) - 1;
        if (left <= 0) open.delete(key);
        else open.set(key, left);
      };
    },
  };
}

/** Refuses a new RelayService stream beyond the cap of limiter with `resource_exhausted`. */
export function createStreamLimitInterceptor(limiter: StreamLimiter): Interceptor {
  // Unary calls go straight to next, without an async function's promise and microtask.
  return (next) => (request) => (!request.stream || request.service.typeName !== RelayService.typeName ? next(request) : limited(next, request));

  async function limited(next: Parameters<Interceptor>[0], request: StreamRequest<DescMessage, DescMessage>): Promise<UnaryResponse | StreamResponse> {
    const fingerprint = request.contextValues.get(kCaller).identity?.fingerprint;
    // Without a certificate the handler refuses the call at once: nothing to count.
    if (fingerprint === undefined) return next(request);
    const release = limiter.acquire(request.method.name, fingerprint);
    // The call's signal aborts when the call ends, however it ends (a normal end included), even
    // when the response was never iterated.
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

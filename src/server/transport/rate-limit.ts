/**
 * Request rate limits per source IP and per client certificate, as one interceptor around the
 * relay service's RPCs. Every heartbeat message on an open stream counts as a request too: a
 * stream is not a way around the limit.
 *
 * Counting is a fixed window per key on the relay's clock, in this process's memory, so each
 * relay instance limits on its own: N instances behind a load balancer allow up to N times the
 * configured rate. Sources are keyed by network (IPv4 address, IPv6 /64: see sourceNetworkOf).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { kCaller } from "../identity/caller-identity.js";
import { createFixedWindowLimiter, type FixedWindowLimiter } from "./fixed-window-limiter.js";
import { sourceNetworkOf } from "./source-network.js";

/** Rate limits; 0 turns a limit off. Defaults in {@link defaultRateLimits}. */
export interface RateLimits {
  /** Length of one counting window, seconds. */
  windowSeconds: number;
  /**
   * Requests (and heartbeat messages) one client certificate may make per window. An honest peer
   * makes a handful per window: Register, Ready, a heartbeat every few minutes, some lookups.
   */
  perCertificate: number;
  /**
   * Requests one source network (an IPv4 address, an IPv6 /64) may make per window, certificate
   * or not. Many peers can share an IPv4 address behind a NAT, so this is several times the
   * per-certificate limit.
   */
  perIp: number;
}

export const defaultRateLimits: RateLimits = {
  windowSeconds: 10,
  perCertificate: 50,
  perIp: 500,
};

/** Response header of a `resource_exhausted` answer: whole seconds until the window resets (RFC 9110 Retry-After). */
export const retryAfterHeader = "retry-after";

/** Options of {@link createRateLimiter}. */
export interface RateLimitInterceptorOptions {
  limits: RateLimits;
  /** Windows run on it. */
  clock: Clock;
  logger: Logger;
  /** Called with "ip" or "certificate" each time a limit refuses a request (metrics). */
  onLimited?: (by: "ip" | "certificate") => void;
}

/** Counts requests against the limits; shared by the interceptor and the held Heartbeat transport. */
export interface RateLimiter {
  /** Counts one request (or heartbeat message); throws `resource_exhausted` with a retry hint when over a limit. */
  take(address: string, fingerprint: string | undefined): void;
}

/**
 * Creates the limiter: over a limit, a request is refused with `resource_exhausted`, a message
 * naming when to retry and a `retry-after` header (a trailer in gRPC).
 */
export function createRateLimiter(options: RateLimitInterceptorOptions): RateLimiter {
  const { limits, clock, logger } = options;
  const windowMs = limits.windowSeconds * 1000;
  const byIp = createFixedWindowLimiter({ limit: limits.perIp, windowMs, clock });
  const byCertificate = createFixedWindowLimiter({ limit: limits.perCertificate, windowMs, clock });

  function consume(limiter: FixedWindowLimiter, key: string, by: "ip" | "certificate"): void {
    const result = limiter.take(key);
    if (result.allowed) return;
    options.onLimited?.(by);
    const retryAfterSeconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
    logger.debug({ by, key: by === "certificate" ? key.slice(0, 16) : key, retryAfterSeconds }, "rate limit hit");
    const subject = by === "ip" ? "this source network" : "this client certificate";
    throw new ConnectError(`rate limit exceeded for ${subject}: at most ${limiter.limit} requests per ${limits.windowSeconds} s; retry in ${retryAfterSeconds} s`, Code.ResourceExhausted, { [retryAfterHeader]: String(retryAfterSeconds) });
  }

  return {
    take(address, fingerprint) {
      consume(byIp, sourceNetworkOf(address), "ip");
      if (fingerprint !== undefined) consume(byCertificate, fingerprint, "certificate");
    },
  };
}

/**
 * Refuses relay service calls over the limits of limiter. Other services on the port (health,
 * reflection) are not limited: a load balancer's health checks come from one IP.
 */
export function createRateLimitInterceptor(limiter: RateLimiter): Interceptor {
  // Not an async function: a unary call within the limits goes straight to next, without a
  // promise and a microtask of its own (a refusal is still a rejected promise).
  return (next) => (request) => {
    if (request.service.typeName !== RelayService.typeName) return next(request);
    const caller = request.contextValues.get(kCaller);
    const fingerprint = caller.identity?.fingerprint;
    try {
      limiter.take(caller.observedAddress, fingerprint);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!request.stream) return next(request);
    // The first message was paid for with the call; each later one pays on arrival.
    return next({ ...request, message: chargedAfterFirst(request.message, () => limiter.take(caller.observedAddress, fingerprint)) });
  };
}

/**
 * Yields messages, calling charge before each one but the first (a throw ends the stream). A
 * generator function at module level, not one declared per call: a function declared inside the
 * interceptor is a new closure per stream, with its own prototype object and hidden class, held
 * as long as the stream (a Heartbeat stream, for hours).
 */
async function* chargedAfterFirst<T>(messages: AsyncIterable<T>, charge: () => void): AsyncGenerator<T> {
  let first = true;
  for await (const message of messages) {
    if (!first) charge();
    first = false;
    yield message;
  }
}

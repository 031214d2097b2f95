/**
 * Request rate limits per source IP and per client certificate, as one interceptor around the
 * relay service's RPCs. Every heartbeat message on an open stream counts as a request too: a
 * stream is not a way around the limit.
 *
 * Counting is rate-limiter-flexible's in-memory fixed window, so each relay instance limits on its
 * own: N instances behind a load balancer allow up to N times the configured rate.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import type { Logger } from "pino";
import { RelayService } from "../../../gen/relay/v1/relay_pb.js";
import { kCaller } from "../identity/caller-identity.js";

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
   * Requests one source IP may make per window, certificate or not. Many peers can share an IP
   * behind a NAT, so this is several times the per-certificate limit.
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

/** Options of {@link createRateLimitInterceptor}. */
export interface RateLimitInterceptorOptions {
  limits: RateLimits;
  logger: Logger;
  /** Called with "ip" or "certificate" each time a limit refuses a request (metrics). */
  onLimited?: (by: "ip" | "certificate") => void;
}

/**
 * Refuses relay service calls over the limits with `resource_exhausted`, a message naming when to
 * retry and a `retry-after` header (a trailer in gRPC). Other services on the port (health,
 * reflection) are not limited: a load balancer's health checks come from one IP.
 */
export function createRateLimitInterceptor(options: RateLimitInterceptorOptions): Interceptor {
  const { limits, logger } = options;
  const byIp = limits.perIp > 0 ? new RateLimiterMemory({ keyPrefix: "ip", points: limits.perIp, duration: limits.windowSeconds }) : undefined;
  const byCertificate = limits.perCertificate > 0 ? new RateLimiterMemory({ keyPrefix: "cert", points: limits.perCertificate, duration: limits.windowSeconds }) : undefined;

  async function take(ip: string, fingerprint: string | undefined): Promise<void> {
    await consume(byIp, ip, "ip");
    if (fingerprint !== undefined) await consume(byCertificate, fingerprint, "certificate");
  }

  async function consume(limiter: RateLimiterMemory | undefined, key: string, by: "ip" | "certificate"): Promise<void> {
    if (limiter === undefined) return;
    try {
      await limiter.consume(key);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      options.onLimited?.(by);
      const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      logger.debug({ by, key: by === "certificate" ? key.slice(0, 16) : key, retryAfterSeconds }, "rate limit hit");
      const subject = by === "ip" ? "this source address" : "this client certificate";
      throw new ConnectError(`rate limit exceeded for ${subject}: at most ${limiter.points} requests per ${limits.windowSeconds} s; retry in ${retryAfterSeconds} s`, Code.ResourceExhausted, { [retryAfterHeader]: String(retryAfterSeconds) });
    }
  }

  return (next) => async (request) => {
    if (request.service.typeName !== RelayService.typeName) return next(request);
    const caller = request.contextValues.get(kCaller);
    const fingerprint = caller.identity?.fingerprint;
    await take(caller.observedAddress, fingerprint);
    if (!request.stream) return next(request);
    // The first message was paid for with the call; each later one pays on arrival.
    const messages = request.message;
    async function* counted() {
      let first = true;
      for await (const message of messages) {
        if (!first) await take(caller.observedAddress, fingerprint);
        first = false;
        yield message;
      }
    }
    return next({ ...request, message: counted() });
  };
}

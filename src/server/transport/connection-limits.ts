/**
 * Bounds on what one connection, or one source IP, can hold open on the relay: connections per
 * IP, HTTP/2 streams per connection, how long a connection may sit idle without a stream, and how
 * long a unary request may take to arrive. Together with the per-RPC readMaxBytes and HTTP/2 flow
 * control they bound the memory a slow or stalled client can pin.
 */
import { constants as http2Constants, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type Settings as Http2Settings, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import { canonicalAddress } from "../service/validation.js";

/** Connection limits; defaults in {@link defaultConnectionLimits}. */
export interface ConnectionLimits {
  /**
   * Most open connections from one source IP; later ones are closed before the TLS handshake.
   * 0: no limit. Peers behind one NAT (an office, a carrier-grade NAT) share an IP, each with one
   * connection held open by its heartbeat stream, so the default leaves room for a few hundred;
   * a connection costs roughly 200 KiB of native memory (bench/soak.ts), so 256 from one address
   * bound it near 50 MiB.
   */
  maxConnectionsPerIp: number;
  /**
   * HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open. A peer needs
   * one heartbeat stream and a few unary calls. Node's default is 2^32-1.
   */
  maxConcurrentStreams: number;
  /**
   * A connection with no open stream (so no heartbeat stream) is sent GOAWAY after this long, ms.
   * 0: never. The relay's HTTP/2 pings keep a connection "active" at the socket level, so
   * Node's own session timeout cannot tell an idle connection from a live one.
   */
  idleTimeoutMs: number;
  /** A TLS handshake not finished in this time is dropped, ms. Node's default is 120 000. */
  handshakeTimeoutMs: number;
  /**
   * A unary request whose body has not fully arrived this long after its headers is reset
   * (RST_STREAM CANCEL), ms. 0: never. Streaming calls (Heartbeat) are not bounded by it.
   */
  requestTimeoutMs: number;
  /** Node's http2 maxSessionMemory per connection, MiB (default there: 10). Beyond it new streams are refused. */
  maxSessionMemoryMiB: number;
  /**
   * HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE, bytes, counted as HTTP/2 does (name + value + 32 per
   * field, uncompressed). Larger header blocks are refused. Node enforces the setting only once
   * the client has acknowledged it, and a client may send its first requests before that, so
   * {@link refuseLargeHeaderLists} checks every request too.
   */
  maxHeaderListBytes: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  maxConnectionsPerIp: 256,
  maxConcurrentStreams: 32,
  idleTimeoutMs: 120_000,
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  maxSessionMemoryMiB: 4,
  maxHeaderListBytes: 16 * 1024,
};

/** The createSecureServer options that carry the limits. */
export function serverOptionsFor(limits: ConnectionLimits): Pick<SecureServerOptions, "settings" | "maxSessionMemory" | "handshakeTimeout"> {
  const settings: Http2Settings = { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListBytes };
  return { settings, maxSessionMemory: limits.maxSessionMemoryMiB, handshakeTimeout: limits.handshakeTimeoutMs };
}

/** Why a connection limit closed a connection or a stream (the `reason` label of relay_connection_limited_total). */
export type ConnectionLimitReason = "connections_per_ip" | "idle" | "request_timeout" | "header_list_size";

/** The size of a header list as HTTP/2 counts it (RFC 9113 6.5.2): name + value + 32 per field. */
export function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (const field of rawHeaders) size += field.length;
  return size + 32 * (rawHeaders.length / 2);
}

/**
 * Wraps a request handler so that an HTTP/2 request whose header block is over
 * maxHeaderListBytes is reset with ENHANCE_YOUR_CALM, as Node's own check does, and never
 * reaches the handler. Node's own check, from the SETTINGS the
 * relay sends, applies only after the client has acknowledged them: a client that sends its
 * requests at once got header blocks of up to 64 KiB through. (HTTP/1.1 requests are bounded by
 * Node's HTTP/1 parser, 16 KiB by default.)
 */
export function refuseLargeHeaderLists(
  handler: (request: Http2ServerRequest, response: Http2ServerResponse) => void,
  options: { limits: Pick<ConnectionLimits, "maxHeaderListBytes">; logger: Logger; onLimited?: (reason: ConnectionLimitReason) => void },
): (request: Http2ServerRequest, response: Http2ServerResponse) => void {
  const limit = options.limits.maxHeaderListBytes;
  return (request, response) => {
    if (request.httpVersionMajor === 2) {
      const size = headerListSize(request.rawHeaders);
      if (size > limit) {
        options.onLimited?.("header_list_size");
        options.logger.debug({ size, limit }, "refused a request whose header block is over the limit");
        request.stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
        return;
      }
    }
    handler(request, response);
  };
}

/** Options of {@link guardConnections}. */
export interface GuardConnectionsOptions {
  limits: ConnectionLimits;
  /** Idle and request timers run on it. */
  clock: Clock;
  logger: Logger;
  /** Request paths of unary methods ("/relay.v1.RelayService/Ready"): bounded by requestTimeoutMs. */
  unaryPaths: ReadonlySet<string>;
  /** Called with the reason each time a limit closes a connection or a stream (metrics). */
  onLimited?: (reason: ConnectionLimitReason) => void;
}

/** Installs the per-IP connection count, idle timeout and request timeout on server. */
export function guardConnections(server: Http2SecureServer, options: GuardConnectionsOptions): void {
  const { limits, clock, logger } = options;
  const connectionsByIp = new Map<string, number>();

  // Before TLS (prepended, so before tls.Server's own listener wraps the socket): a refused
  // connection costs no handshake.
  server.prependListener("connection", (socket: Socket) => {
    if (limits.maxConnectionsPerIp <= 0) return;
    const ip = canonicalAddress(socket.remoteAddress ?? "") ?? "";
    const count = (connectionsByIp.get(ip) ?? 0) + 1;
    if (count > limits.maxConnectionsPerIp) {
      options.onLimited?.("connections_per_ip");
      logger.debug({ ip, limit: limits.maxConnectionsPerIp }, "refused a connection over the per-IP limit");
      socket.destroy();
      return;
    }
    connectionsByIp.set(ip, count);
    socket.once("close", () => {
      const left = (connectionsByIp.get(ip) ?? 1) - 1;
      if (left <= 0) connectionsByIp.delete(ip);
      else connectionsByIp.set(ip, left);
    });
  });

  server.on("session", (session: ServerHttp2Session) => {
    let open = 0;
    let idle: TimerHandle | undefined;
    const armIdle = () => {
      if (limits.idleTimeoutMs <= 0) return;
      idle = clock.setTimeout(
        () => {
        if (open > 0 || session.closed || session.destroyed) return;
        options.onLimited?.("idle");
        logger.debug({ idleTimeoutMs: limits.idleTimeoutMs }, "closing an HTTP/2 connection idle without a stream");
        session.close();
        },
        limits.idleTimeoutMs,
        { unref: true },
      );
    };
    armIdle();
    session.on("close", () => clock.clearTimeout(idle));
    session.on("stream", (stream: ServerHttp2Stream, headers) => {
      open++;
      clock.clearTimeout(idle);
      let timer: TimerHandle | undefined;
      const path = String(headers[":path"] ?? "");
      if (limits.requestTimeoutMs > 0 && options.unaryPaths.has(path)) {
        timer = clock.setTimeout(
          () => {
          if (stream.destroyed || stream.closed) return;
          options.onLimited?.("request_timeout");
          logger.debug({ path, requestTimeoutMs: limits.requestTimeoutMs }, "reset a unary request whose body did not arrive in time");
          stream.close(http2Constants.NGHTTP2_CANCEL);
          },
          limits.requestTimeoutMs,
          { unref: true },
        );
        stream.once("end", () => clock.clearTimeout(timer));
      }
      stream.once("close", () => {
        clock.clearTimeout(timer);
        open--;
        if (open === 0 && !session.closed && !session.destroyed) armIdle();
      });
    });
  });
}

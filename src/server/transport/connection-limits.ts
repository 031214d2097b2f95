/**
 * Bounds on what one connection, one source network or one certificate can hold on the relay, in
 * time, memory and count, whatever the client does:
 *
 * - a connection must make its first HTTP request within the handshake timeout of its TCP accept
 *   (TLS handshake and HTTP/2 preface included), or it is destroyed;
 * - connections whose certificate is not yet known to be registered ("unauthenticated") are
 *   counted per source network with a small cap, the oldest closed first, so half-open sockets
 *   from an address cannot lock an honest peer behind the same NAT out; once authenticated, a
 *   connection counts against its certificate instead;
 * - a session that resets too many of its own streams (rapid reset) or floods PING/SETTINGS is
 *   sent GOAWAY and destroyed with its sockets: on Node 20, after about 1,000 client resets
 *   nghttp2 stops reading a connection and Node never emits close, error or goaway for it;
 * - a response the client does not read within the write timeout is reset, and the bytes a
 *   session may hold unsent are capped;
 * - a session that closes takes its TLS and TCP sockets with it.
 *
 * Together with the per-RPC readMaxBytes, List's page byte budget and HTTP/2 flow control they
 * bound the memory a slow, stalled or hostile client can pin.
 */
import { constants as http2Constants, type Http2SecureServer, type Http2Session, type Http2ServerRequest, type Http2ServerResponse, type Settings as Http2Settings, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import type { HandshakeRefusal } from "./handshake-admission.js";
import { sourceNetworkOfSocket } from "./source-network.js";
import { forEachInSlices } from "../../shared/in-slices.js";

/** Connection limits; defaults in {@link defaultConnectionLimits}. 0 turns a count or timeout off. */
export interface ConnectionLimits {
  /**
   * Most unauthenticated connections from one source network (an IPv4 address, an IPv6 /64):
   * past TLS but not yet past a call with a registered certificate. One more closes the oldest
   * that has said nothing yet, else the oldest (never the newcomer). 32 leaves room for a NAT's
   * peers reconnecting together after a relay restart, each unauthenticated for one round trip.
   * Connections still in their TCP or TLS handshake are capped apart, at 8 times this, the oldest
   * closed first too. A flood of silent sockets from an address thus only evicts itself: an honest
   * peer behind the same NAT is newer than every silent socket, and is out of both pools within
   * one round trip of finishing TLS; to push it out, a flooder would have to open 8 × this many
   * connections (or finish this many TLS handshakes) during that peer's own handshake.
   */
  maxUnauthenticatedPerSource: number;
  /**
   * Most connections authenticated with one certificate. One more sends GOAWAY to the oldest: a
   * restarted peer replaces its stale connection. A peer needs one, a CLI call a second.
   */
  maxConnectionsPerCertificate: number;
  /**
   * HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open. A peer needs
   * one heartbeat stream and a few unary calls. Node's default is 2^32-1.
   */
  maxConcurrentStreams: number;
  /**
   * A connection with no open stream (so no heartbeat stream) is sent GOAWAY after this long, ms.
   * The relay's HTTP/2 pings keep a connection "active" at the socket level, so Node's own
   * session timeout cannot tell an idle connection from a live one.
   */
  idleTimeoutMs: number;
  /**
   * From TCP accept to the connection's first HTTP request (TLS handshake and HTTP/2 preface
   * included), ms; past it the socket is destroyed. Node's TLS handshake timeout (default 120 s)
   * stops at the end of TLS, and nothing bounds the HTTP/2 preface.
   */
  handshakeTimeoutMs: number;
  /**
   * A unary request whose body has not fully arrived this long after its headers is reset
   * (RST_STREAM CANCEL), ms. Streaming calls (Heartbeat) are not bounded by it.
   */
  requestTimeoutMs: number;
  /**
   * A response with bytes the client has not taken for this long is reset (RST_STREAM CANCEL),
   * and a connection whose socket has not written for this long with bytes waiting is
   * destroyed, ms. Without it, clients that never open their receive window pin every response.
   */
  writeTimeoutMs: number;
  /**
   * Bytes of responses one connection may hold unsent; the stream whose write goes over it is
   * reset with ENHANCE_YOUR_CALM. A List page is at most about 1 MiB.
   */
  maxSessionBufferBytes: number;
  /**
   * Streams the client may reset (RST_STREAM) per connection per minute; one more ends the
   * connection (GOAWAY ENHANCE_YOUR_CALM, then destroyed). Honest clients reset a stream only to
   * cancel a call. Must stay well under nghttp2's own limit (1,000 in a burst), past which it
   * stops reading the connection without telling Node.
   */
  maxClientResetsPerMinute: number;
  /** PING and SETTINGS frames the client may send per connection per minute; one more ends the connection. */
  maxControlFramesPerMinute: number;
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
  maxUnauthenticatedPerSource: 32,
  maxConnectionsPerCertificate: 8,
  maxConcurrentStreams: 32,
  idleTimeoutMs: 120_000,
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  writeTimeoutMs: 20_000,
  maxSessionBufferBytes: 2 * 1024 * 1024,
  maxClientResetsPerMinute: 200,
  maxControlFramesPerMinute: 600,
  maxSessionMemoryMiB: 4,
  maxHeaderListBytes: 16 * 1024,
};

/** Why a limit closed a connection or a stream (the `reason` label of relay_connection_limited_total). */
export type ConnectionLimitReason = "unauthenticated_per_source" | "connections_per_certificate" | "handshake_timeout" | "idle" | "request_timeout" | "write_timeout" | "session_buffer" | "client_resets" | "control_frames" | "streams_per_certificate" | "header_list_size" | HandshakeRefusal;

export const limitReasons: readonly ConnectionLimitReason[] = ["unauthenticated_per_source", "connections_per_certificate", "handshake_timeout", "idle", "request_timeout", "write_timeout", "session_buffer", "client_resets", "control_frames", "streams_per_certificate", "header_list_size", "handshake_queue_full", "handshake_queue_wait"];

/** The createSecureServer options that carry the limits. */
export function serverOptionsFor(limits: ConnectionLimits): Pick<SecureServerOptions, "settings" | "maxSessionMemory" | "handshakeTimeout"> {
  const settings: Http2Settings = { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListBytes };
  // Node's TLS timeout as a second line: ours covers the same span and more.
  return { settings, maxSessionMemory: limits.maxSessionMemoryMiB, handshakeTimeout: limits.handshakeTimeoutMs > 0 ? limits.handshakeTimeoutMs : 120_000 };
}


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

/**
 * Wraps a request handler so that an HTTP/2 request whose stream is already gone never reaches
 * it. Node emits a stream's request on the next tick, after nghttp2 has read the whole chunk: in a
 * rapid-reset burst the stream was reset in the same chunk, and building a call for it anyway is
 * most of what such a burst costs the relay.
 */
export function skipResetStreams(handler: (request: Http2ServerRequest, response: Http2ServerResponse) => void): (request: Http2ServerRequest, response: Http2ServerResponse) => void {
  return (request, response) => {
    if (request.httpVersionMajor === 2 && (request.stream.destroyed || request.stream.closed)) return;
    handler(request, response);
  };
}

/** What names a connection: a request (HTTP/2 or HTTP/1.1), or an HTTP/2 stream as `{ stream }`. */
export type ConnectionOf = Http2ServerRequest | IncomingMessage | { stream: ServerHttp2Stream; socket?: undefined };

/** Options of {@link guardConnections}. */
export interface GuardConnectionsOptions {
  limits: ConnectionLimits;
  /** Every timer runs on it. */
  clock: Clock;
  logger: Logger;
  /** Request paths of unary methods ("/relay.v1.RelayService/Ready"): bounded by requestTimeoutMs. */
  unaryPaths: ReadonlySet<string>;
  /** Called each time a limit closes a connection or a stream (metrics). */
  onLimited?: (reason: ConnectionLimitReason) => void;
  /**
   * The longest a connection may wait for its TLS handshake to start (handshake admission), ms.
   * The handshake timeout then counts from the start ({@link ConnectionGuard.handshakeStarted}),
   * and from the accept only as handshakeTimeoutMs + this. Default 0: from the accept.
   */
  admissionWaitMs?: number;
}

/** What the relay keeps on the connections it guards. */
export interface ConnectionGuard {
  /**
   * The connection of request presented a registered certificate (fingerprint): from now on it
   * counts against that certificate, not its source network. Called by the relay service.
   */
  authenticated(request: ConnectionOf, fingerprint: string): void;
  /**
   * The TLS handshake of raw (the accepted TCP socket) starts now, after its wait for admission:
   * the handshake timeout counts from here.
   */
  handshakeStarted(raw: Socket): void;
  /** Destroys every connection still open (TLS and TCP sockets): the last step of shutdown. */
  destroyAll(): void;
  /** Open connections, as counted by the guard. */
  readonly size: number;
  /** Stops the guard's timers. */
  stop(): void;
}

interface Tracked {
  readonly raw: Socket;
  readonly key: string;
  readonly source: string;
  tls?: TLSSocket;
  session?: ServerHttp2Session;
  /** Set once authenticated: the certificate it counts against. */
  fingerprint?: string;
  firstRequest: boolean;
  /** The client has said something past TLS: HTTP/2 SETTINGS (its preface) or a request. */
  spoke: boolean;
  handshakeTimer?: TimerHandle;
  /** Socket bytes written when the write watch last saw progress, and when. */
  lastBytesWritten: number;
  stalledSince?: number;
  readonly streams: Set<WatchedStream>;
}

interface WatchedStream {
  readonly stream: ServerHttp2Stream;
  /** Since when it has held unsent bytes without a 'drain'. */
  pendingSince?: number;
}

/** Installs every connection limit on server; returns what the relay needs to reach them. */
export function guardConnections(server: Http2SecureServer, options: GuardConnectionsOptions): ConnectionGuard {
  const { limits, clock, logger } = options;
  const limited = (reason: ConnectionLimitReason) => options.onLimited?.(reason);
  // Connections by "address|port" of the client: a TLS socket, an HTTP/2 session's socket (a
  // proxy) and a request's socket all answer remoteAddress and remotePort, so each finds its
  // TCP connection without reaching into Node's private fields.
  const connections = new Map<string, Tracked>();
  // Connections by source network, oldest first: still in the TCP or TLS handshake, and past TLS
  // but not yet authenticated.
  const handshakingBySource = new Map<string, Tracked[]>();
  const unauthenticatedBySource = new Map<string, Tracked[]>();
  const maxHandshakingPerSource = 8 * limits.maxUnauthenticatedPerSource;

  /** Adds connection to its source's pool; over max, closes the pool's oldest. */
  function admit(pool: Map<string, Tracked[]>, connection: Tracked, max: number, what: string): void {
    const waiting = pool.get(connection.source) ?? [];
    waiting.push(connection);
    pool.set(connection.source, waiting);
    if (max > 0 && waiting.length > max) {
      // The oldest silent one goes first (nothing said past TLS: the likeliest to be a flood),
      // then the oldest at all (an honest peer authenticates one round trip after it speaks, so
      // the longest-waiting speaker is the likeliest to be a flood too); never the newcomer, which
      // may be an honest peer. An honest client sends its preface with its TLS Finished.
      const silent = waiting.findIndex((candidate) => !candidate.spoke && candidate !== connection);
      const [victim] = waiting.splice(silent >= 0 ? silent : 0, 1);
      limited("unauthenticated_per_source");
      logger.debug({ source: connection.source, limit: max }, `closed the oldest ${what} connection of a source over its limit`);
      destroy(victim!);
    }
  }
  const byCertificate = new Map<string, Tracked[]>();

  const keyOf = (socket: { remoteAddress?: string; remotePort?: number } | undefined | null) => (socket?.remoteAddress === undefined ? undefined : `${socket.remoteAddress}|${socket.remotePort}`);

  function remove<T>(map: Map<string, T[]>, key: string, item: T): void {
    const list = map.get(key);
    if (list === undefined) return;
    const at = list.indexOf(item);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) map.delete(key);
  }

  function destroy(connection: Tracked): void {
    connection.session?.destroy();
    connection.tls?.destroy();
    connection.raw.destroy();
  }

  /** GOAWAY with code, then the connection is destroyed on the next turn (time for the frame to leave). */
  function endSession(connection: Tracked, code: number): void {
    const session = connection.session;
    if (session !== undefined && !session.destroyed) {
      try {
        session.goaway(code);
      } catch {
        // already closing
      }
    }
    setImmediate(() => destroy(connection));
  }

  function armHandshakeTimer(connection: Tracked, ms: number): void {
    if (limits.handshakeTimeoutMs <= 0) return;
    clock.clearTimeout(connection.handshakeTimer);
    connection.handshakeTimer = clock.setTimeout(
      () => {
        if (connection.firstRequest) return;
        limited("handshake_timeout");
        logger.debug({ source: connection.source, handshakeTimeoutMs: limits.handshakeTimeoutMs }, "destroyed a connection that made no request within the handshake timeout");
        destroy(connection);
      },
      ms,
      { unref: true },
    );
  }

  // Prepended, so it runs before tls.Server wraps the socket.
  server.prependListener("connection", (raw: Socket) => {
    const key = keyOf(raw);
    if (key === undefined) {
      raw.destroy();
      return;
    }
    const source = sourceNetworkOfSocket(raw);
    const connection: Tracked = { raw, key, source, firstRequest: false, spoke: false, lastBytesWritten: 0, streams: new Set() };
    connections.set(key, connection);
    admit(handshakingBySource, connection, maxHandshakingPerSource, "handshaking");
    armHandshakeTimer(connection, limits.handshakeTimeoutMs + (options.admissionWaitMs ?? 0));
    raw.once("close", () => {
      clock.clearTimeout(connection.handshakeTimer);
      connections.delete(key);
      remove(handshakingBySource, source, connection);
      remove(unauthenticatedBySource, source, connection);
      if (connection.fingerprint !== undefined) remove(byCertificate, connection.fingerprint, connection);
      // A session whose TCP socket is gone is done, whatever nghttp2 thinks.
      connection.session?.destroy();
      connection.tls?.destroy();
    });
  });

  server.on("secureConnection", (tls: TLSSocket) => {
    const connection = connections.get(keyOf(tls) ?? "");
    if (connection === undefined) return;
    connection.tls = tls;
    tls.once("close", () => connection.raw.destroy());
    remove(handshakingBySource, connection.source, connection);
    admit(unauthenticatedBySource, connection, limits.maxUnauthenticatedPerSource, "unauthenticated");
  });

  // HTTP/1.1 is served (Connect and gRPC-Web clients without HTTP/2), bounded by the same
  // handshake timeout until its first request; the relay's clientError listener ends a socket
  // whose request breaks the parser or its header timeout.

  server.prependListener("request", (request: Http2ServerRequest | IncomingMessage) => {
    // An HTTP/2 connection's first stream counts (below): the relay serves some streams without
    // the request handler (held-heartbeats.ts, direct-unary.ts), so they never become requests.
    if (request.httpVersionMajor === 2) return;
    const connection = connectionOf(request);
    if (connection !== undefined) madeRequest(connection);
  });

  /** The connection made its first request: the handshake timeout no longer applies. */
  function madeRequest(connection: Tracked): void {
    if (connection.firstRequest) return;
    connection.firstRequest = true;
    connection.spoke = true;
    clock.clearTimeout(connection.handshakeTimer);
    // A cleared timer is still an object: not kept for the life of the connection.
    connection.handshakeTimer = undefined;
  }

  // Each HTTP/2 session's connection, so that a request finds it without building its key from
  // the socket's address (a proxy and a string per request: a request listener asks per call).
  const bySession = new WeakMap<Http2Session, Tracked>();

  function connectionOf(request: ConnectionOf): Tracked | undefined {
    const session = (request as { stream?: ServerHttp2Stream }).stream?.session;
    const known = session === undefined ? undefined : bySession.get(session);
    // Still tracked: a connection that closed is forgotten, as a lookup by its key would find.
    if (known !== undefined) return connections.get(known.key) === known ? known : undefined;
    return connections.get(keyOf(session?.socket ?? request.socket) ?? "");
  }

  server.on("session", (session: ServerHttp2Session) => {
    const connection = connections.get(keyOf(session.socket) ?? "");
    if (connection !== undefined) {
      connection.session = session;
      bySession.set(session, connection);
      // The client's preface ends with its SETTINGS: it speaks HTTP/2, unlike a silent socket.
      session.once("remoteSettings", () => (connection.spoke = true));
    }
    // A closed or failed session takes its sockets with it: Node 20 can leave the TLS socket
    // open after a client's TCP reset, costing a descriptor for ever.
    session.once("close", () => {
      if (connection !== undefined) {
        connection.tls?.destroy();
        connection.raw.destroy();
      } else {
        session.socket?.destroy();
      }
    });

    // The per-minute windows of this session, in one object: a time written to a closure
    // variable is a new heap number on each write (kept by the session's closures, so promoted to
    // the old generation, and dead at the next window), while a field of an object that has only
    // held numbers is overwritten in place.
    const windows = { resets: 0, resetsStart: clock.now(), controlFrames: 0, controlStart: clock.now() };
    const countControlFrame = () => {
      if (limits.maxControlFramesPerMinute <= 0 || connection === undefined) return;
      const now = clock.now();
      if (now - windows.controlStart >= 60_000) {
        windows.controlStart = now;
        windows.controlFrames = 0;
      }
      if (++windows.controlFrames === limits.maxControlFramesPerMinute + 1) {
        limited("control_frames");
        logger.debug({ source: connection.source, limit: limits.maxControlFramesPerMinute }, "ended a connection flooding PING or SETTINGS frames");
        endSession(connection, http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
      }
    };
    session.on("ping", countControlFrame);
    session.on("remoteSettings", countControlFrame);

    let open = 0;
    let idle: TimerHandle | undefined;
    const armIdle = () => {
      if (limits.idleTimeoutMs <= 0) return;
      idle = clock.setTimeout(
        () => {
          if (open > 0 || session.closed || session.destroyed) return;
          limited("idle");
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
      if (connection !== undefined && !connection.firstRequest) madeRequest(connection);
      clock.clearTimeout(idle);
      idle = undefined;
      let timer: TimerHandle | undefined;
      const path = String(headers[":path"] ?? "");
      // A stream reset in the same read as its HEADERS (a rapid-reset burst) is already gone:
      // no timers or write watch for it, only the count when it closes.
      const gone = stream.destroyed || stream.closed;
      if (!gone && limits.requestTimeoutMs > 0 && options.unaryPaths.has(path)) {
        // No 'end' listener to clear it: a listener per call costs more than this check, and
        // the timer is cleared when the stream closes.
        timer = clock.setTimeout(
          () => {
            if (stream.destroyed || stream.closed || stream.readableEnded) return;
            limited("request_timeout");
            logger.debug({ path, requestTimeoutMs: limits.requestTimeoutMs }, "reset a unary request whose body did not arrive in time");
            stream.close(http2Constants.NGHTTP2_CANCEL);
          },
          limits.requestTimeoutMs,
          { unref: true },
        );
      }
      const watched: WatchedStream | undefined = connection === undefined || gone ? undefined : watchWrites(connection, stream);
      // Checked before the work: a connection already holding its cap of unsent bytes gets no new
      // answer built for it (the reset stream never reaches the handler).
      if (!gone && connection !== undefined && limits.maxSessionBufferBytes > 0 && unsentBytes(connection) >= limits.maxSessionBufferBytes) {
        limited("session_buffer");
        logger.debug({ source: connection.source, limit: limits.maxSessionBufferBytes }, "refused a stream on a connection holding its cap of unsent bytes");
        resetStream(stream, http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
      }
      stream.once("close", () => {
        clock.clearTimeout(timer);
        if (watched !== undefined) connection!.streams.delete(watched);
        open--;
        if (open === 0 && !session.closed && !session.destroyed) armIdle();
        // A stream the client reset: its code is not NO_ERROR and the relay did not close it.
        if (stream.rstCode !== undefined && stream.rstCode !== http2Constants.NGHTTP2_NO_ERROR && connection !== undefined && limits.maxClientResetsPerMinute > 0 && !resetByRelay.has(stream)) {
          const now = clock.now();
          if (now - windows.resetsStart >= 60_000) {
            windows.resetsStart = now;
            windows.resets = 0;
          }
          if (++windows.resets === limits.maxClientResetsPerMinute + 1) {
            limited("client_resets");
            logger.debug({ source: connection.source, limit: limits.maxClientResetsPerMinute }, "ended a connection resetting too many streams (rapid reset)");
            endSession(connection, http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
          }
        }
      });
    });
  });

  function unsentBytes(connection: Tracked): number {
    let bytes = 0;
    for (const watched of connection.streams) bytes += watched.stream.writableLength;
    return bytes;
  }

  // Streams the relay reset itself, so the rapid-reset count sees only the client's.
  const resetByRelay = new WeakSet<ServerHttp2Stream>();
  function resetStream(stream: ServerHttp2Stream, code: number): void {
    resetByRelay.add(stream);
    if (!stream.destroyed && !stream.closed) stream.close(code);
  }

  /**
   * Follows what a stream's writes leave unsent: Node's writable counts a chunk until nghttp2 has
   * taken it, which it does only as the client's flow-control window allows.
   */
  function watchWrites(connection: Tracked, stream: ServerHttp2Stream): WatchedStream {
    const watched: WatchedStream = { stream };
    connection.streams.add(watched);
    const write = stream.write;
    // Wrapped on the instance: Node emits no event per write, and the cap must be checked when a
    // write makes the session's buffers grow, not on the next sweep.
    stream.write = function (this: ServerHttp2Stream, ...args: Parameters<ServerHttp2Stream["write"]>) {
      const flushed = write.apply(this, args);
      if (stream.writableLength > 0) watched.pendingSince ??= clock.now();
      if (limits.maxSessionBufferBytes > 0) {
        const buffered = unsentBytes(connection);
        if (buffered > limits.maxSessionBufferBytes) {
          limited("session_buffer");
          logger.debug({ source: connection.source, buffered, limit: limits.maxSessionBufferBytes }, "reset a response over the connection's unsent-bytes cap");
          resetStream(stream, http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
        }
      }
      return flushed;
    } as ServerHttp2Stream["write"];
    stream.on("drain", () => {
      watched.pendingSince = stream.writableLength > 0 ? clock.now() : undefined;
    });
    return watched;
  }

  /** The write watch of one connection: resets responses and destroys sockets past the write timeout. */
  function checkWrites(connection: Tracked): void {
    const now = clock.now();
    for (const watched of connection.streams) {
      if (watched.stream.writableLength === 0) watched.pendingSince = undefined;
      else if (watched.pendingSince !== undefined && now - watched.pendingSince >= limits.writeTimeoutMs) {
        watched.pendingSince = undefined;
        limited("write_timeout");
        logger.debug({ source: connection.source, unsent: watched.stream.writableLength, writeTimeoutMs: limits.writeTimeoutMs }, "reset a response the client did not read in time");
        resetStream(watched.stream, http2Constants.NGHTTP2_CANCEL);
      }
    }
    // The socket itself: HTTP/1.1 responses, or an HTTP/2 connection whose TCP window is shut.
    const socket = connection.tls;
    if (socket === undefined || socket.destroyed) return;
    // Nothing waiting is the common case, and the cheap one: bytesWritten is a getter that
    // copies the socket's write buffer (about 0.2 µs, so 2 ms of every sweep at 10,000
    // connections), read only when bytes are waiting.
    if (socket.writableLength === 0) {
      connection.stalledSince = undefined;
      return;
    }
    const written = socket.bytesWritten;
    if (written !== connection.lastBytesWritten || connection.stalledSince === undefined) {
      connection.lastBytesWritten = written;
      connection.stalledSince = now;
    } else if (now - connection.stalledSince >= limits.writeTimeoutMs) {
      limited("write_timeout");
      logger.debug({ source: connection.source, unsent: socket.writableLength }, "destroyed a connection whose socket did not drain in time");
      destroy(connection);
    }
  }

  // One sweep for every write deadline, instead of a timer per write. In slices (in-slices.ts):
  // over 10,000 connections at once it held every call for 6–11 ms each second. A sweep still
  // running when the next is due (a busy process) is not doubled.
  const sweepMs = Math.max(50, Math.min(1000, Math.floor(limits.writeTimeoutMs / 4)));
  let sweeping = false;
  const sweeper =
    limits.writeTimeoutMs > 0
      ? clock.setInterval(
          () => {
            if (sweeping) return;
            sweeping = true;
            void forEachInSlices(connections.values(), checkWrites).finally(() => (sweeping = false));
          },
          sweepMs,
          { unref: true },
        )
      : undefined;

  return {
    handshakeStarted(raw) {
      const key = keyOf(raw);
      const connection = key === undefined ? undefined : connections.get(key);
      if (connection !== undefined && connection.raw === raw && !connection.firstRequest) armHandshakeTimer(connection, limits.handshakeTimeoutMs);
    },
    authenticated(request, fingerprint) {
      const connection = connectionOf(request);
      if (connection === undefined || connection.fingerprint !== undefined) return;
      remove(handshakingBySource, connection.source, connection);
      remove(unauthenticatedBySource, connection.source, connection);
      connection.fingerprint = fingerprint;
      const same = byCertificate.get(fingerprint) ?? [];
      same.push(connection);
      byCertificate.set(fingerprint, same);
      if (limits.maxConnectionsPerCertificate > 0 && same.length > limits.maxConnectionsPerCertificate) {
        const oldest = same.shift()!;
        limited("connections_per_certificate");
        logger.debug({ fingerprint: fingerprint.slice(0, 16), limit: limits.maxConnectionsPerCertificate }, "sent GOAWAY to a certificate's oldest connection over its limit");
        if (oldest.session !== undefined) oldest.session.close();
        else oldest.tls?.end();
      }
    },
    destroyAll() {
      for (const connection of connections.values()) destroy(connection);
    },
    get size() {
      return connections.size;
    },
    stop() {
      clock.clearInterval(sweeper);
    },
  };
}

import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { dateOf, sleep, systemClock, type Clock, type TimerHandle } from "../../shared/clock.js";
import { briefCause, withStoreErrors } from "../errors.js";
import { defaultLimits, type Limits } from "../service/request-limits.js";
import { callerOf, callerOfStream, kCaller, type CallerContext } from "../identity/caller-identity.js";
import { kRequestReset, resetProbeOf } from "./request-state.js";
import { createRelayService, toPeer } from "../service/relay-service.js";
import { createPresenceKeeper } from "../service/presence-keeper.js";
import { createWatchHub } from "../service/watch-hub.js";
import { defaultLookupCacheSize, type RelayStore } from "../store/store.js";
import { cacheLookups } from "../store/lookup-cache.js";
import { defaultConnectionLimits, guardConnections, refuseLargeHeaderLists, skipResetStreams, type ConnectionGuard, type ConnectionLimits, type ConnectionOf } from "./connection-limits.js";
import { createFixedWindowLimiter } from "./fixed-window-limiter.js";
import { createRateLimiter, createRateLimitInterceptor, defaultRateLimits, type RateLimits } from "./rate-limit.js";
import { RelayService, file_relay_v1_relay } from "../../gen/relay/v1/relay_pb.js";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { createHealthRoutes, createReadiness, startStoreProbe, type Readiness } from "../ops/health.js";
import { createRelayMetrics, type RelayMetrics } from "../ops/metrics.js";
import { createCallObserver, createObserveInterceptor } from "./observe-interceptor.js";
import { serveHeldHeartbeats } from "./held-heartbeats.js";
import { serveDirectUnary } from "./direct-unary.js";
import { GrpcMessageEncodingResponse } from "./grpc-message.js";
import { createStreamLimiter, createStreamLimitInterceptor } from "./stream-limit.js";
import { admitHandshakes, defaultHandshakeAdmission, type HandshakeAdmissionLimits } from "./handshake-admission.js";
import { createSessionPinger } from "./session-pinger.js";
import { defaultListenBacklog, secureServerOptions } from "./secure-server-options.js";
import { createReflectionRoutes } from "../ops/reflection.js";

/** A registration that has not announced for 30 days is deleted. */
export const defaultRegistrationRetentionMs = 30 * 86_400_000;

/**
 * New registrations per source network per hour. A peer registers once per certificate, and
 * registering again is free, so this bounds how fast one network can mint identities (each costs
 * a stored certificate) while leaving room for an office behind one NAT to enrol its machines.
 */
export const defaultRegistrationsPerNetworkPerHour = 30;

/** Options of {@link createRelayServer}. */
export interface RelayServerOptions {
  /** Where to listen. Default host "127.0.0.1"; port 0 picks a free port. */
  host?: string;
  port?: number;
  /** The relay's own certificate and key, PEM. */
  tls: { certificatePem: string; privateKeyPem: string };
  store: RelayStore;
  /** Lifetime of a broadcast after Ready or a heartbeat, seconds. Default 3600. */
  broadcastTtlSeconds?: number;
  /**
   * How long a peer whose Heartbeat stream was lost stays online, ms: time to reconnect to this
   * or another instance without being seen to leave. Default 30 000: a peer's client notices a
   * dead connection within its HTTP/2 ping interval plus timeout (20 s by default) and reconnects
   * within its first backoff step.
   */
  presenceGraceMs?: number;
  /**
   * How long broadcasts whose presence ended (withdrawn, lost, expired) stay in the store before
   * the sweep deletes them, ms. Default 60 000: other instances' change polls read withdraws from
   * the store, and must find them there.
   */
  sweepRetentionMs?: number;
  /**
   * Messages one Watch stream may have waiting for a slow reader before it is told to resync
   * (`aborted`). Default 1024 (see WatchHubOptions.maxPendingMessages).
   */
  watchMaxPendingMessages?: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: a silent logger. */
  logger?: Logger;
  /** Default: {@link defaultLimits}. */
  limits?: Partial<Limits>;
  /** How long a registration is served from memory before the store is asked again, ms. Default 60 000. */
  registrationCacheTtlMs?: number;
  /**
   * Most live broadcasts Lookup keeps in memory, coherent with the store through its change feed
   * (cacheLookups); 0: every Lookup reads the store. Default {@link defaultLookupCacheSize}.
   * Not used with the in-memory store, whose reads are in memory already.
   */
  lookupCacheSize?: number;
  /**
   * How long a registration is kept after its last Register or Ready, ms. Default 30 days
   * ({@link defaultRegistrationRetentionMs}).
   */
  registrationRetentionMs?: number;
  /**
   * New registrations one source network (IPv4 address, IPv6 /64) may make per hour; 0: no limit.
   * Default {@link defaultRegistrationsPerNetworkPerHour}.
   */
  registrationsPerNetworkPerHour?: number;
  /** "none" refuses List with permission_denied; Lookup still works. Default "all". */
  listVisibility?: "all" | "none";
  /** How often expired broadcasts are deleted, ms. Default 60 000 (MongoDB's TTL monitor period). */
  sweepIntervalMs?: number;
  /**
   * How often each HTTP/2 session is pinged, ms; a session whose ping is not answered within
   * the same period is destroyed. Default 30 000. Node's HTTP/2 server sends no pings and has no
   * timeout, so without this dead sessions stay in memory (nodejs #27556, #42710).
   */
  sessionPingIntervalMs?: number;
  /**
   * Pending connections the kernel queues before the relay accepts them (listen backlog). Node's
   * default, 511, overflowed in every reconnect storm of bench/scale.ts: a dropped SYN is
   * retried after 1, 3 and 7 s. Default 4096; Linux caps it at net.core.somaxconn.
   */
  listenBacklog?: number;
  /** TLS handshakes and onboardings at once, and connections waiting for one. Default: {@link defaultHandshakeAdmission}. */
  handshakeAdmission?: Partial<HandshakeAdmissionLimits>;
  /**
   * Keys that encrypt TLS session tickets, 48 bytes. Peers that reconnect with a ticket resume
   * their TLS session and skip the certificate exchange and signatures. Keys that outlive the
   * process (main.ts keeps them in --data-dir) let peers resume after a restart too, and keys
   * shared by several instances let them resume on any. Default: random, for this process only.
   */
  tlsTicketKeys?: Buffer;
  /** How long a TLS session ticket can be resumed, seconds. Default 86 400 (TLS 1.3 allows up to 7 days). */
  tlsSessionTimeoutSeconds?: number;
  /** How long close() lets sessions finish after GOAWAY before destroying them, ms. Default 5000 (at most shutdownTimeoutMs). */
  shutdownGraceMs?: number;
  /**
   * The longest close() takes after its drain delay, ms: whatever is still open then (a socket
   * Node lost track of, a session that never answers) is destroyed and close() resolves. Default 10 000.
   */
  shutdownTimeoutMs?: number;
  /**
   * How long close() keeps serving after it starts, ms, before GOAWAY: time for a load balancer to
   * see the relay go NOT_SERVING and stop sending it new connections. Default 0.
   */
  drainDelayMs?: number;
  /** Connection counts, handshake, idle, request and write timeouts, reset and buffer caps. Default: {@link defaultConnectionLimits}. */
  connectionLimits?: Partial<ConnectionLimits>;
  /**
   * Most open streams of one streaming RPC (Heartbeat, Watch) per client certificate; more are
   * refused with resource_exhausted. Default 4: a peer needs one, a restart briefly two.
   */
  maxStreamsPerCertificate?: number;
  /** Requests per certificate and per source IP. Default: {@link defaultRateLimits}. */
  rateLimits?: Partial<RateLimits>;
  /** More routes served on the same port (reflection, health). */
  extraRoutes?: Array<(router: ConnectRouter) => void>;
  /**
   * Interceptors around every RPC, inside the metrics and request-log interceptor. With any, every
   * Heartbeat stream goes through connect-node too (see held-heartbeats.ts), at its memory cost.
   */
  interceptors?: Interceptor[];
  /** Metrics the relay records on. Default: new ones in a registry of their own. */
  metrics?: RelayMetrics;
  /** Readiness behind grpc.health.v1.Health and /readyz. Default: a new one, NOT_SERVING until the store answers. */
  readiness?: Readiness;
  /** How often the store is pinged to update readiness, ms. Default 5000. */
  healthProbeIntervalMs?: number;
}

/** A running relay. */
export interface RelayServer {
  /** https://host:port */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The relay's metrics, for the admin listener's /metrics. */
  readonly metrics: RelayMetrics;
  /** The relay's readiness, for the admin listener's /readyz. */
  readonly readiness: Readiness;
  /**
   * Stops gracefully: readiness goes NOT_SERVING first: no new sessions, heartbeat streams end with `unavailable`, GOAWAY on every
   * session, destroy after the grace period. Does not close the store.
   */
  close(): Promise<void>;
}

/** Starts a relay listening with mutual TLS; resolves once it is listening. */
export async function createRelayServer(options: RelayServerOptions): Promise<RelayServer> {
  const logger = options.logger ?? pino({ level: "silent" });
  const clock = options.clock ?? systemClock;
  // Not given to connect-node, which would link every call's signal to it: each call would add
  // and remove a listener on this one signal, and Node's EventTarget scans those already there,
  // one per held Heartbeat stream. The relay service and health routes end their held streams
  // through one listener each (shutdown-hooks.ts); unary calls end on their own.
  const shutdown = new AbortController();
  const sessionPingIntervalMs = options.sessionPingIntervalMs ?? 30_000;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  const shutdownGraceMs = Math.min(options.shutdownGraceMs ?? 5_000, shutdownTimeoutMs);
  const connectionLimits: ConnectionLimits = { ...defaultConnectionLimits, ...options.connectionLimits };
  const unaryPaths = new Set<string>();
  const metrics = options.metrics ?? createRelayMetrics({ store: options.store, clock });
  const readiness = options.readiness ?? createReadiness();
  const mappedStore = withStoreErrors(options.store, (operation) => metrics.storeErrors.inc({ operation }));
  const lookupCacheSize = options.lookupCacheSize ?? defaultLookupCacheSize;
  const lookupCache =
    lookupCacheSize > 0 && options.store.kind !== "memory"
      ? cacheLookups(mappedStore, { maxEntries: lookupCacheSize, presenceGraceMs: options.presenceGraceMs ?? 30_000, onLookup: metrics.countLookupCache })
      : undefined;
  const store = lookupCache ?? mappedStore;
  const probe = startStoreProbe({ store, readiness, clock, logger, intervalMs: options.healthProbeIntervalMs ?? 5_000 });
  const presence = createPresenceKeeper({ store, clock, logger, presenceGraceMs: options.presenceGraceMs ?? 30_000 });
  const sweepRetentionMs = options.sweepRetentionMs ?? 60_000;
  const watchHub = createWatchHub({ store, clock, logger, toPeer, presenceGraceMs: presence.presenceGraceMs, onWatcher: (delta) => metrics.watchStreamsOpen.inc(delta), ...(options.watchMaxPendingMessages === undefined ? {} : { maxPendingMessages: options.watchMaxPendingMessages }) });

  const relayService = createRelayService({
    store,
    clock,
    logger,
    limits: { ...defaultLimits, ...options.limits },
    broadcastTtlSeconds: options.broadcastTtlSeconds ?? 3600,
    registrationCacheTtlMs: options.registrationCacheTtlMs ?? 60_000,
    registrationCacheSize: 100_000,
    registrationRetentionMs: options.registrationRetentionMs ?? defaultRegistrationRetentionMs,
    registrationLimiter: createFixedWindowLimiter({ limit: options.registrationsPerNetworkPerHour ?? defaultRegistrationsPerNetworkPerHour, windowMs: 3_600_000, clock }),
    listVisibility: options.listVisibility ?? "all",
    onRegistrationLimited: () => metrics.rateLimited.inc({ by: "registrations" }),
    shutdownSignal: shutdown.signal,
    presence,
    watchHub,
  });
  const authenticatedCallers = new WeakSet<object>();
  const markCallerAuthenticated = (caller: CallerContext, request: ConnectionOf) => {
    if (caller.identity === undefined || authenticatedCallers.has(caller)) return;
    authenticatedCallers.add(caller);
    guard.authenticated(request, caller.identity.fingerprint);
  };
  // Shared by connect-node's interceptors and the held Heartbeat transport: one count per peer.
  const observer = createCallObserver({ metrics, logger, shutdownSignal: shutdown.signal });
  const rateLimiter = createRateLimiter({ limits: { ...defaultRateLimits, ...options.rateLimits }, clock, logger, onLimited: (by) => metrics.rateLimited.inc({ by }) });
  const streamLimiter = createStreamLimiter({ maxStreamsPerCertificate: options.maxStreamsPerCertificate ?? 4, logger, onLimited: () => metrics.connectionLimited.inc({ reason: "streams_per_certificate" }) });
  const handler = connectNodeAdapter({
    routes: (router) => {
      relayService.routes(router);
      createHealthRoutes(readiness, { shutdownSignal: shutdown.signal })(router);
      createReflectionRoutes({ files: [file_relay_v1_relay, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection] })(router);
      for (const extra of options.extraRoutes ?? []) extra(router);
      for (const route of router.handlers) if (route.method.methodKind === "unary") unaryPaths.add(route.requestPath);
    },
    interceptors: [
      createObserveInterceptor({ observer }), ...(options.interceptors ?? []), createRateLimitInterceptor(rateLimiter),
      createStreamLimitInterceptor(streamLimiter),
    ],
    contextValues: (request) => {
      // One caller object per connection (callerOf). Once its certificate is known to be
      // registered, later calls skip telling the guard again: that built a key from the socket's
      // address and looked the connection up on every call, to find it already authenticated.
      const caller = callerOf(request);
      const markAuthenticated = caller.identity === undefined || authenticatedCallers.has(caller) ? undefined : () => markCallerAuthenticated(caller, request);
      return createContextValues().set(kCaller, markAuthenticated === undefined ? caller : { ...caller, markAuthenticated }).set(kRequestReset, resetProbeOf(request));
    },
    // Bounds for routes registered without their own (relay's routes set smaller ones).
    readMaxBytes: 64 * 1024,
    writeMaxBytes: 4 * 1024 * 1024,
  });

  const server: Http2SecureServer = createSecureServer(
    { ...secureServerOptions({ tls: options.tls, connectionLimits, ticketKeys: options.tlsTicketKeys, sessionTimeoutSeconds: options.tlsSessionTimeoutSeconds }), Http2ServerResponse: GrpcMessageEncodingResponse },
    refuseLargeHeaderLists(skipResetStreams(handler), { limits: connectionLimits, logger, onLimited: (reason) => metrics.connectionLimited.inc({ reason }) }),
  );

  // Extra interceptors must see every call, so with them every call stays with connect-node.
  if ((options.interceptors ?? []).length === 0) {
    serveDirectUnary(server, {
      // List's pages run to hundreds of KiB, which connect-node compresses for clients that accept it.
      handlers: relayService.unary.filter((handler) => handler.method !== RelayService.method.list),
      observer,
      rateLimiter,
      callerOf: (stream) => {
        const caller = callerOfStream(stream);
        return caller.identity === undefined || authenticatedCallers.has(caller) ? caller : { ...caller, markAuthenticated: () => markCallerAuthenticated(caller, { stream }) };
      },
      maxHeaderListBytes: connectionLimits.maxHeaderListBytes,
      onLimited: (reason) => metrics.connectionLimited.inc({ reason }),
      clock,
      logger,
    });
    serveHeldHeartbeats(server, {
      heartbeats: relayService.heartbeats,
      observer,
      rateLimiter,
      streamLimiter,
      markAuthenticated: (caller, stream) => markCallerAuthenticated(caller, { stream }),
      maxHeaderListBytes: connectionLimits.maxHeaderListBytes,
      onLimited: (reason) => metrics.connectionLimited.inc({ reason }),
      clock,
      logger,
    });
  }

  // First, so that it holds tls.Server's own 'connection' listener (see handshake-admission.ts).
  const admissionLimits = { ...defaultHandshakeAdmission, ...options.handshakeAdmission };
  admitHandshakes(server, {
    limits: admissionLimits,
    handshakeTimeoutMs: connectionLimits.handshakeTimeoutMs,
    onboardingPaths: new Set([RelayService.method.register, RelayService.method.ready].map((method) => `/${RelayService.typeName}/${method.name}`)),
    clock,
    logger,
    onRefused: (reason) => metrics.connectionLimited.inc({ reason }),
    // The handshake timeout counts from the start of the handshake, not from a wait in the queue.
    onStarted: (socket) => guard.handshakeStarted(socket),
  });

  server.on("secureConnection", (socket: TLSSocket) => metrics.tlsHandshakes.inc({ resumed: String(socket.isSessionReused()) }));

  const pinger = createSessionPinger({ intervalMs: sessionPingIntervalMs, clock, logger });
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    pinger.add(session);
    session.on("close", () => sessions.delete(session));
    // Without these, a reset connection raises an uncaught 'error' (nodejs #45244).
    session.on("error", (error) => logger.debug({ err: error }, "http2 session error"));
    session.socket?.on("error", (error) => logger.debug({ err: error }, "tls socket error"));
  });
  const guard: ConnectionGuard = guardConnections(server, { limits: connectionLimits, admissionWaitMs: admissionLimits.maxQueueWaitMs, clock, logger, unaryPaths, onLimited: (reason) => metrics.connectionLimited.inc({ reason }) });
  server.on("tlsClientError", (error) => logger.debug({ err: error }, "failed TLS handshake"));
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug({ err: error }, "http/1.1 client error");
    // With a listener here Node neither answers nor closes the socket: without this, a request
    // over the HTTP/1 parser's limits (16 KiB of headers) would hold its connection open.
    if (socket.writable) socket.write(`HTTP/1.1 ${error.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\nconnection: close\r\n\r\n`);
    socket.destroy();
  });

  const sweeper = clock.setInterval(() => {
    const now = dateOf(clock);
    store.sweepExpired(new Date(clock.now() - sweepRetentionMs)).then(
      (swept) => swept > 0 && logger.debug({ swept }, "swept expired broadcasts"),
      (error: unknown) => logger.warn({ cause: briefCause(error) }, "failed to sweep expired broadcasts"),
    );
    store.sweepRegistrations(now).then(
      (swept) => swept > 0 && logger.info({ swept }, "deleted registrations that stopped announcing (registration retention)"),
      (error: unknown) => logger.warn({ cause: briefCause(error) }, "failed to sweep stale registrations"),
    );
  }, options.sweepIntervalMs ?? 60_000, { unref: true });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1", backlog: options.listenBacklog ?? defaultListenBacklog }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    // Not listening (EADDRINUSE…): leave no timers or store pings behind.
    probe.stop();
    guard.stop();
    presence.stop();
    pinger.stop();
    clock.clearInterval(sweeper);
    await lookupCache?.stopCache();
    throw error;
  }
  server.on("error", (error) => logger.error({ err: error }, "server error"));
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  return {
    url: `https://${host}:${address.port}`,
    host: address.address,
    port: address.port,
    metrics,
    readiness,
    close() {
      closing ??= (async () => {
        // NOT_SERVING first, so health watchers and load balancers move away before GOAWAY.
        probe.stop();
        pinger.stop();
        clock.clearInterval(sweeper);
        if ((options.drainDelayMs ?? 0) > 0) await sleep(clock, options.drainDelayMs!);
        // Shutdown is not the peers leaving: their broadcasts keep the grace, time to reconnect
        // to another instance (or to this one restarted). One write for all of them.
        presence.stop();
        await watchHub.stop();
        await lookupCache?.stopCache();
        await presence.releaseAll().then(
          (released) => logger.info({ released, presenceGraceMs: presence.presenceGraceMs }, "released held presence to its grace for shutdown"),
          (error: unknown) => logger.warn({ err: error }, "failed to release held presence at shutdown; it lapses within the grace"),
        );
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        shutdown.abort();
        for (const session of sessions) session.close();
        const grace = clock.setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, shutdownGraceMs);
        // server.close() waits for every connection; one Node lost track of (a session nghttp2
        // stopped reading) would hold it for ever, so the timeout destroys what is left and stops.
        let timedOut: TimerHandle | undefined;
        const deadline = new Promise<void>((resolve) => {
          timedOut = clock.setTimeout(() => {
            if (guard.size > 0) logger.warn({ connections: guard.size, shutdownTimeoutMs }, "destroyed connections still open at the shutdown timeout");
            guard.destroyAll();
            resolve();
          }, shutdownTimeoutMs);
        });
        await Promise.race([closed, deadline]);
        clock.clearTimeout(grace);
        clock.clearTimeout(timedOut);
        guard.stop();
      })();
      return closing;
    },
  };
}

/**
 * Admission control for TLS handshakes and the onboarding that follows: at most `maxHandshakes`
 * connections are handshaking or onboarding (Register, Ready, up to the first other stream) at
 * once, accepted connections beyond that wait their turn in arrival order, and when the wait is
 * already long a new connection is closed at once (before any TLS work) so its client backs off
 * and comes back.
 *
 * Why: a TLS handshake is the most expensive thing a peer asks of the relay (asymmetric crypto
 * and connection setup on the one JavaScript thread), and Register, Ready and the Heartbeat
 * stream cost about as much again. Node starts every accepted connection's handshake at once, so
 * after a relay restart thousands progress together, each slowly; clients reach their deadline
 * before theirs finishes, give up, reconnect, and the relay redoes work nobody waits for any more:
 * the storm collapses (bench/scale.ts measured 4 connection attempts per peer at 10,000 peers
 * without this). With a cap, peers onboard in arrival order at the rate the machine can onboard
 * them, and the wait of the others costs a queued socket, not CPU.
 *
 * How: tls.Server starts a handshake from its own 'connection' listener. That listener is taken
 * off the server and called when a slot frees. A socket waiting for its turn keeps the bytes its
 * client sent (the ClientHello); TLSSocket replays a wrapped socket's buffered bytes.
 */
import type { Http2SecureServer, IncomingHttpHeaders, ServerHttp2Session } from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import { sourceNetworkOfSocket } from "./source-network.js";

/** Bounds of {@link admitHandshakes}; defaults in {@link defaultHandshakeAdmission}. */
export interface HandshakeAdmissionLimits {
  /**
   * TLS handshakes in progress at once. Handshakes share one thread, so more in flight do not go
   * faster; enough must be in flight to cover network round trips (a TLS 1.3 handshake with a
   * client certificate spans about two).
   */
  maxHandshakes: number;
  /**
   * Connections waiting for a handshake slot. A connection arriving when this many wait is closed
   * at once: a transport error on the client, which backs off and retries. 0: no queue, refuse
   * every connection beyond maxHandshakes. A waiting connection costs a socket and the few
   * hundred bytes of its ClientHello, no CPU.
   */
  maxQueued: number;
  /**
   * The longest wait for a slot, ms. A connection arriving when, at the rate slots have been
   * freeing up since the queue formed (measured for at least a sixth of this bound), its turn would come later than this is closed at
   * once, like one over maxQueued; one whose turn comes later anyway is closed then, instead of
   * handshaken. The handshake timeout counts from the end of the wait.
   *
   * Why 60 s: a refused connection comes back after the client's backoff, which grows with each
   * refusal, so a storm that outlasts the wait bound costs its late peers several attempts each,
   * while a connection that waits is made once. Clients keep connecting past their call deadline:
   * connect-node's session manager (the client library's), grpc-go and the load generator all go
   * on with a connection attempt after the call that started it gave up, and the next call uses
   * it; the client library also waits for its connection under a 90 s deadline of its own, which
   * 60 s plus the 10 s handshake timeout stays under. A storm longer than the bound still gets
   * refusals past it; 10,000 peers on this project's 2-core machine came online within it, in
   * 44.0 s with 1.00 attempts per peer (bench/scale.ts).
   */
  maxQueueWaitMs: number;
  /**
   * How long, ms, an HTTP/2 connection keeps its slot after its TLS handshake while its peer
   * onboards: until the connection opens a stream other than the onboarding calls (Register,
   * Ready), which is a peer's Heartbeat stream or a tool's first real call, or closes. 0: the slot
   * frees at the end of the handshake.
   *
   * Why: the handshake is only a third of a peer's onboarding; Register, Ready and the Heartbeat
   * stream follow on the same thread. Freed at the handshake, slots admitted peers faster than
   * they could onboard, and they queued after TLS instead, where a wait costs the handshake
   * already done and ends at the client's 10 s call deadline, with everything redone
   * (bench/scale.ts at 10,000 peers: 6.7 connection attempts per peer). Held until onboarded, the
   * wait stays before TLS, where it costs a queued socket. 10 s, the client's call deadline: a
   * connection still onboarding after it is likely stalled or abandoned.
   */
  maxOnboardingMs: number;
  /**
   * Connections from one source network (an IPv4 address, an IPv6 /64) that keep their slot past
   * TLS while onboarding; beyond it, a connection's slot frees at the end of its handshake, as with
   * maxOnboardingMs 0.
   *
   * Why: a client that completes TLS and then sends only Register and Ready, or nothing, keeps
   * its slot for maxOnboardingMs; without a share, one address could hold every slot that long,
   * again and again, and stall admission for everyone. 16, an eighth of the default slots: the
   * peers behind one NAT keep the hold 16 at a time, and holding every slot takes eight addresses.
   * Handshakes themselves are not shared out: a connection's slot through its handshake is bounded
   * by the handshake timeout, and a peer behind a flooding address must not wait behind the flood.
   */
  maxOnboardingPerSource: number;
}

export const defaultHandshakeAdmission: HandshakeAdmissionLimits = {
  maxHandshakes: 128,
  maxQueued: 16_384,
  maxQueueWaitMs: 60_000,
  maxOnboardingMs: 10_000,
  maxOnboardingPerSource: 16,
};

/** Why a connection was closed before its handshake (the `reason` label of relay_connection_limited_total). */
export type HandshakeRefusal = "handshake_queue_full" | "handshake_queue_wait";

/** Options of {@link admitHandshakes}. */
export interface HandshakeAdmissionOptions {
  limits: HandshakeAdmissionLimits;
  /**
   * The longest a started handshake can take (the server's handshakeTimeout), ms: a slot whose
   * end was not seen is freed after it, so a lost event cannot shrink the pool for good.
   */
  handshakeTimeoutMs: number;
  /**
   * Request paths of the onboarding calls (Register, Ready): a stream on any other path ends a
   * connection's onboarding (see maxOnboardingMs).
   */
  onboardingPaths: ReadonlySet<string>;
  clock: Clock;
  logger: Logger;
  /** Called as a connection's TLS handshake starts, after its wait (the handshake timeout counts from here). */
  onStarted?: (socket: Socket) => void;
  /** Called each time a connection is closed before its handshake (metrics). */
  onRefused?: (reason: HandshakeRefusal) => void;
}

/** What {@link admitHandshakes} reports. */
export interface HandshakeAdmission {
  /** Connections holding a slot: handshaking, or onboarding past their handshake. */
  readonly inFlight: number;
  /** Connections waiting for a slot. */
  readonly queued: number;
}

/**
 * Installs admission control on server. Call it right after createSecureServer, before anything
 * else listens for 'connection' (a listener prepended later, such as the per-address connection
 * count, still runs first, and a socket it destroyed is skipped).
 */
export function admitHandshakes(server: Http2SecureServer, options: HandshakeAdmissionOptions): HandshakeAdmission {
  const { limits, clock, logger } = options;
  const [startHandshake, ...others] = server.listeners("connection") as Array<(this: Http2SecureServer, socket: Socket) => void>;
  if (startHandshake === undefined || others.length > 0) throw new Error("admitHandshakes must be installed before other 'connection' listeners");
  server.removeListener("connection", startHandshake);

  const queue: Array<{ socket: Socket; since: number }> = [];
  /** Slots held, keyed by the raw socket. */
  interface Slot {
    /** Frees the slot (once). */
    release: () => void;
    /** Frees the slot ms from now at the latest. */
    bound: (ms: number) => void;
  }
  const slots = new Map<Socket, Slot>();
  /** Raw sockets whose HTTP/2 session is followed for the end of its onboarding. */
  const onboarding = new WeakSet<Socket>();
  /** Connections holding their slot past TLS, per source network; a source with none has no entry. */
  const onboardingBySource = new Map<string, number>();
  /** The source network of each connection counted in onboardingBySource. */
  const onboardingSource = new Map<Socket, string>();
  const endOnboarding = (socket: Socket) => {
    const source = onboardingSource.get(socket);
    if (source === undefined) return;
    onboardingSource.delete(socket);
    const left = onboardingBySource.get(source)! - 1;
    if (left === 0) onboardingBySource.delete(source);
    else onboardingBySource.set(source, left);
  };

  // How fast the queue drains, measured while it is not empty: slots started from the queue since
  // it last became non-empty. Idle time says nothing about the machine's pace, so it does not count.
  let busySince: number | undefined;
  let startedSinceBusy = 0;
  /**
   * The expected wait of a connection joining the queue now, ms; undefined until the pace has been
   * measured for a sixth of the wait bound (10 s at the default 60 s). Why not sooner: at the start
   * of a storm the first slots are still onboarding on a cold process, so a pace read over the
   * first second predicts waits of minutes, and the relay refused most of a 10,000-peer storm
   * that it then onboarded in about 70 s (bench/scale.ts: 19,016 refusals and 3.0 connection
   * attempts per peer, against 1.07 in a run where the early pace happened to read well).
   */
  const expectedWaitMs = (): number | undefined => {
    if (busySince === undefined) return undefined;
    const elapsed = clock.now() - busySince;
    if (elapsed < limits.maxQueueWaitMs / 6) return undefined;
    return startedSinceBusy === 0 ? Infinity : ((queue.length + 1) * elapsed) / startedSinceBusy;
  };

  const refuse = (socket: Socket, reason: HandshakeRefusal) => {
    options.onRefused?.(reason);
    logger.debug({ reason, inFlight: slots.size, queued: queue.length }, "closed a connection before its TLS handshake");
    socket.destroy();
  };

  const start = (socket: Socket) => {
    let timer: TimerHandle | undefined;
    const slot: Slot = {
      release: () => {
        if (!slots.delete(socket)) return;
        endOnboarding(socket);
        clock.clearTimeout(timer);
        pump();
      },
      bound: (ms) => {
        clock.clearTimeout(timer);
        timer = clock.setTimeout(slot.release, ms, { unref: true });
      },
    };
    slots.set(socket, slot);
    // The socket closing frees the slot too: a connection destroyed mid-handshake by the relay
    // itself (a connection limit, the handshake timeout) ends in neither event below, and its slot
    // must not wait for the timer, or a storm that trips limits would shrink the pool to nothing.
    socket.once("close", slot.release);
    slot.bound(options.handshakeTimeoutMs + 1_000);
    options.onStarted?.(socket);
    startHandshake.call(server, socket);
  };

  const pump = () => {
    while (slots.size < limits.maxHandshakes && queue.length > 0) {
      const { socket, since } = queue.shift()!;
      startedSinceBusy++;
      if (socket.destroyed) continue; // reset by its client while waiting
      if (clock.now() - since > limits.maxQueueWaitMs) refuse(socket, "handshake_queue_wait");
      else start(socket);
    }
    if (queue.length === 0) busySince = undefined;
  };

  server.on("connection", (socket: Socket) => {
    if (socket.destroyed) return; // refused by an earlier listener
    // Until TLSSocket takes the socket over, nothing else listens for its errors (a reset
    // while waiting would be an uncaught 'error').
    socket.on("error", (error) => logger.debug({ err: error }, "connection error before the TLS handshake"));
    if (slots.size < limits.maxHandshakes) return start(socket);
    const wait = expectedWaitMs();
    if (queue.length >= limits.maxQueued || (wait !== undefined && wait > limits.maxQueueWaitMs)) return refuse(socket, "handshake_queue_full");
    if (queue.length === 0) {
      busySince = clock.now();
      startedSinceBusy = 0;
    }
    queue.push({ socket, since: clock.now() });
  });

  // A handshake ends in 'secureConnection' or 'tlsClientError' (failure, timeout, reset). Node's
  // TLSSocket keeps the socket it wraps as _parent (the HTTP/2 session's socket is a proxy that
  // reads through to it); were that ever missing, the timer frees the slot.
  const parentOf = (tlsSocket: TLSSocket | undefined) => (tlsSocket as (TLSSocket & { _parent?: Socket }) | undefined)?._parent;
  // Http2SecureServer makes the session in its own 'secureConnection' listener, registered before
  // this one: 'session' comes first. It bounds the slot by the onboarding instead of the handshake
  // and follows the session's streams.
  server.on("session", (session: ServerHttp2Session) => {
    const raw = parentOf(session.socket as TLSSocket | undefined);
    const slot = raw === undefined ? undefined : slots.get(raw);
    if (raw === undefined || slot === undefined || limits.maxOnboardingMs <= 0) return;
    onboarding.add(raw);
    const source = sourceNetworkOfSocket(raw);
    const holding = onboardingBySource.get(source) ?? 0;
    if (holding >= limits.maxOnboardingPerSource) return slot.release();
    onboardingBySource.set(source, holding + 1);
    onboardingSource.set(raw, source);
    slot.bound(limits.maxOnboardingMs);
    const onStream = (_stream: unknown, headers: IncomingHttpHeaders) => {
      if (options.onboardingPaths.has(String(headers[":path"] ?? ""))) return;
      session.off("stream", onStream);
      slots.get(raw)?.release();
    };
    session.on("stream", onStream);
    session.once("close", () => slots.get(raw)?.release());
  });
  // HTTP/1.1 connections (no session to follow) free their slot at the end of TLS.
  server.on("secureConnection", (tlsSocket: TLSSocket) => {
    const raw = parentOf(tlsSocket);
    if (raw !== undefined && !onboarding.has(raw)) slots.get(raw)?.release();
  });
  server.on("tlsClientError", (_error: Error, tlsSocket: TLSSocket) => {
    const raw = parentOf(tlsSocket);
    if (raw !== undefined) slots.get(raw)?.release();
  });

  return {
    get inFlight() {
      return slots.size;
    },
    get queued() {
      return queue.length;
    },
  };
}

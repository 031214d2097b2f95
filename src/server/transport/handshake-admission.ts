/**
 * Admission control for TLS handshakes: at most `maxHandshakes` run at once, accepted
 * connections beyond that wait their turn in arrival order, and when the wait is already long a
 * new connection is closed at once (before any TLS work) so its client backs off and comes back.
 *
 * Why: a TLS handshake is the most expensive thing a peer asks of the relay (asymmetric crypto
 * and connection setup on the one JavaScript thread). Node starts every accepted connection's
 * handshake at once, so after a relay restart thousands progress together, each slowly; clients
 * reach their deadline before theirs finishes, give up, reconnect, and the relay redoes work
 * nobody waits for any more: the storm collapses (bench/scale.ts measured 4 connection attempts
 * per peer at 10,000 peers without this). With a cap, handshakes finish in arrival order at the
 * rate the machine can do them, and the wait of the others costs a queued socket, not CPU.
 *
 * How: tls.Server starts a handshake from its own 'connection' listener. That listener is taken
 * off the server and called when a slot frees. A socket waiting for its turn keeps the bytes its
 * client sent (the ClientHello); TLSSocket replays a wrapped socket's buffered bytes.
 */
import type { Http2SecureServer } from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";

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
   * every connection beyond maxHandshakes.
   */
  maxQueued: number;
  /**
   * The longest wait for a slot, ms. A connection arriving when, at the rate slots have been
   * freeing up over the last second or more, its turn would come later than this is closed at
   * once, like one over maxQueued; one whose turn comes later anyway is closed then, instead of
   * handshaken. Peers give a call (connecting included) 10 s, and the relay's handshake timeout
   * (10 s) counts from the TCP accept: a longer wait would be spent on a client about to give up.
   */
  maxQueueWaitMs: number;
}

export const defaultHandshakeAdmission: HandshakeAdmissionLimits = {
  maxHandshakes: 128,
  maxQueued: 4096,
  maxQueueWaitMs: 7_000,
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
  clock: Clock;
  logger: Logger;
  /** Called each time a connection is closed before its handshake (metrics). */
  onRefused?: (reason: HandshakeRefusal) => void;
}

/** What {@link admitHandshakes} reports. */
export interface HandshakeAdmission {
  /** Handshakes in progress. */
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
  /** Slots held, keyed by the raw socket: its release frees the slot once. */
  const slots = new Map<Socket, () => void>();

  // How fast the queue drains, measured while it is not empty: slots started from the queue since
  // it last became non-empty. Idle time says nothing about the machine's pace, so it does not count.
  let busySince: number | undefined;
  let startedSinceBusy = 0;
  /** The expected wait of a connection joining the queue now, ms; undefined until measured for a second. */
  const expectedWaitMs = (): number | undefined => {
    if (busySince === undefined) return undefined;
    const elapsed = clock.now() - busySince;
    if (elapsed < 1_000) return undefined;
    return startedSinceBusy === 0 ? Infinity : ((queue.length + 1) * elapsed) / startedSinceBusy;
  };

  const refuse = (socket: Socket, reason: HandshakeRefusal) => {
    options.onRefused?.(reason);
    logger.debug({ reason, inFlight: slots.size, queued: queue.length }, "closed a connection before its TLS handshake");
    socket.destroy();
  };

  const start = (socket: Socket) => {
    let timer: TimerHandle | undefined;
    const release = () => {
      if (!slots.delete(socket)) return;
      clock.clearTimeout(timer);
      pump();
    };
    slots.set(socket, release);
    // The socket closing frees the slot too: a connection destroyed mid-handshake by the relay
    // itself (a connection limit, the handshake timeout) ends in neither event below, and its slot
    // must not wait for the timer, or a storm that trips limits would shrink the pool to nothing.
    socket.once("close", release);
    timer = clock.setTimeout(release, options.handshakeTimeoutMs + 1_000, { unref: true });
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
  // TLSSocket keeps the socket it wraps as _parent; were that ever missing, the timer frees the slot.
  const ended = (tlsSocket: TLSSocket | undefined) => {
    const parent = (tlsSocket as (TLSSocket & { _parent?: Socket }) | undefined)?._parent;
    if (parent !== undefined) slots.get(parent)?.();
  };
  server.on("secureConnection", ended);
  server.on("tlsClientError", (_error: Error, tlsSocket: TLSSocket) => ended(tlsSocket));

  return {
    get inFlight() {
      return slots.size;
    },
    get queued() {
      return queue.length;
    },
  };
}

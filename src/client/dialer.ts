import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import { sleep, systemClock, type Clock } from "../shared/clock.js";
import { isFingerprint } from "../shared/fingerprint.js";
import type { PeerIdentity } from "./identity.js";
import type { OfflineCause, Peer, RelayClient } from "./relay-client.js";
import { isRetryable, retryAfterMs } from "./errors.js";
import { backoffDelay, defaultBackoff, type BackoffOptions } from "./backoff.js";
import { PeerConnectionError, type PeerFailure } from "./share/peer-error.js";
import { peerRequest, readPeerBody, type PeerStream } from "./share/peer-request.js";
import { hostPort } from "./share/peer-tls.js";

/**
 * A peer's availability, as a peer app shows it:
 * - online: a candidate address served the peer's certificate and answered the health check with 2xx
 * - offline: no candidate answered as the peer (refused, timed out, unreachable, or another
 *   machine's certificate: wrong_peer)
 * - checking: a dial is in progress
 * - error: the peer is reachable but unhealthy (health answered non-2xx, for example 403 when it
 *   does not let this visitor in), announced nothing to dial, or the relay gave no fingerprint
 */
export type PeerState = "online" | "offline" | "checking" | "error";

/**
 * How candidates are tried:
 * - sequential: one after another, each until it answers or its timeout (plan section 2.4.2)
 * - staggered: Happy Eyeballs (RFC 8305 §5) — start the next candidate when the previous one
 *   fails or after staggerMs, whichever comes first; the first healthy answer wins, the rest
 *   are cancelled
 */
export type DialStrategy = "sequential" | "staggered";

/** What happened to one candidate. */
export interface DialAttempt {
  address: string;
  /** wrong_peer: the address served another certificate than the peer's (another machine). */
  outcome: "ok" | "refused" | "timeout" | "unhealthy" | "wrong_peer" | "failed" | "cancelled";
  /** HTTP status, when the candidate answered. */
  status?: number;
  /** The system error, when it failed. */
  error?: string;
  /** From the dial's start to this attempt's end. */
  elapsedMs: number;
}

/** Outcome of {@link Dialer.dial}. */
export interface DialResult {
  /** Set when the relay's Watch, not a dial, found the peer offline: why it is offline. */
  presence?: OfflineCause;
  email: string;
  state: Exclude<PeerState, "checking">;
  /** The address that answered, when online. */
  address?: string;
  /** `https://address:port` of the winner, when online. */
  baseUrl?: string;
  /** One per candidate started, in candidate order. */
  attempts: DialAttempt[];
  elapsedMs: number;
  /** Why the state is error. */
  message?: string;
}

/** An HTTP answer read whole. */
export interface PeerResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Options of {@link createDialer}. */
export interface DialerOptions {
  /**
   * The visitor's identity, presented as the TLS client certificate: share servers let in only
   * certificates registered with the relay.
   */
  identity: Pick<PeerIdentity, "certificatePem" | "privateKeyPem">;
  /** Path of the health check. Default: "/health". */
  healthPath?: string;
  /**
   * Time one candidate gets to answer the health check. Default: 1500 ms: a LAN or loopback
   * answer takes milliseconds and a distant one a few hundred, while a blackholed address
   * costs this much in sequential mode.
   */
  attemptTimeoutMs?: number;
  /** Default: "staggered" (see docs/peer-client.md for the measurements behind it). */
  strategy?: DialStrategy;
  /** Head start of each candidate over the next in staggered mode. Default: 250 ms (RFC 8305's Connection Attempt Delay). */
  staggerMs?: number;
  /** Deadline for the response headers of {@link Dialer.fetch} and {@link Dialer.open}, per redirect hop. Default: 10 s. */
  requestTimeoutMs?: number;
  /** Redirects {@link Dialer.fetch} and {@link Dialer.open} follow while they stay on the peer. Default: 5. */
  maxRedirects?: number;
  /** Largest body {@link Dialer.fetch} reads whole; use {@link Dialer.open} to stream more. Default: 16 MiB. */
  maxBodyBytes?: number;
  /** Default: the system clock. */
  clock?: Clock;
}

/** Events of {@link Dialer}: every state change of a peer, by email. */
export interface DialerEvents {
  state: [email: string, state: PeerState, result?: DialResult];
}

/**
 * Candidate addresses in dialling order: the address that worked last time (when the port is
 * unchanged), then the peer's announced addresses in its order, then its observed address;
 * duplicates dropped. Pure.
 */
export function dialCandidates(peer: Pick<Peer, "addresses" | "observedAddress" | "port">, remembered?: { address: string; port: number }): string[] {
  const ordered = [...(remembered && remembered.port === peer.port ? [remembered.address] : []), ...peer.addresses, ...(peer.observedAddress ? [peer.observedAddress] : [])];
  return [...new Set(ordered.filter((address) => isIP(address) !== 0))];
}

/** "https://127.0.0.1:8080", "https://[::1]:8080". */
export function baseUrlOf(address: string, port: number): string {
  return `https://${hostPort(address, port)}`;
}

/**
 * Dials peers' share servers directly over peer TLS, checking at every address that the
 * certificate served there is the one the relay vouches for (Peer.fingerprint), and remembering
 * which address answered.
 */
export class Dialer extends EventEmitter<DialerEvents> {
  readonly #options: Required<Omit<DialerOptions, "clock">> & { clock: Clock };
  readonly #remembered = new Map<string, { address: string; port: number }>();
  readonly #states = new Map<string, PeerState>();

  constructor(options: DialerOptions) {
    super();
    this.#options = {
      identity: options.identity,
      maxRedirects: options.maxRedirects ?? 5,
      maxBodyBytes: options.maxBodyBytes ?? 16 * 1024 * 1024,
      healthPath: options.healthPath ?? "/health",
      attemptTimeoutMs: options.attemptTimeoutMs ?? 1500,
      strategy: options.strategy ?? "staggered",
      staggerMs: options.staggerMs ?? 250,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      clock: options.clock ?? systemClock,
    };
  }

  /** The last known state of a peer; undefined before its first dial. */
  stateOf(email: string): PeerState | undefined {
    return this.#states.get(email.toLowerCase());
  }

  /** The address that answered last time. */
  rememberedAddress(email: string): string | undefined {
    return this.#remembered.get(email.toLowerCase())?.address;
  }

  /** Health-checks the peer's candidates with the configured strategy. Never throws. */
  async dial(peer: Peer, options: { strategy?: DialStrategy; signal?: AbortSignal } = {}): Promise<DialResult> {
    const email = peer.email.toLowerCase();
    const candidates = dialCandidates(peer, this.#remembered.get(email));
    this.#setState(email, "checking");
    const started = this.#options.clock.now();
    const unusable = candidates.length === 0 || peer.port === 0 ? `${email} announced no address to dial` : !isFingerprint(peer.fingerprint) ? `the relay gave no certificate fingerprint for ${email}: its share cannot be verified` : undefined;
    if (unusable) {
      const result: DialResult = { email, state: "error", attempts: [], elapsedMs: 0, message: unusable };
      this.#setState(email, result.state, result);
      return result;
    }
    const strategy = options.strategy ?? this.#options.strategy;
    const staggerMs = strategy === "staggered" ? this.#options.staggerMs : Number.POSITIVE_INFINITY;
    const { winner, attempts } = await this.#race(candidates, peer.port, peer.fingerprint, staggerMs, started, options.signal);
    const elapsedMs = this.#options.clock.now() - started;
    let result: DialResult;
    if (winner !== undefined) {
      this.#remembered.set(email, { address: winner, port: peer.port });
      result = { email, state: "online", address: winner, baseUrl: baseUrlOf(winner, peer.port), attempts, elapsedMs };
    } else {
      const unhealthy = attempts.find((attempt) => attempt.outcome === "unhealthy");
      const wrongPeer = attempts.filter((attempt) => attempt.outcome === "wrong_peer").map((attempt) => attempt.address);
      result = unhealthy
        ? { email, state: "error", attempts, elapsedMs, message: `${email} answered ${this.#options.healthPath} with HTTP ${unhealthy.status} at ${unhealthy.address}${unhealthy.error ? `: ${unhealthy.error}` : ""}` }
        : { email, state: "offline", attempts, elapsedMs, ...(wrongPeer.length > 0 ? { message: `another machine answered at ${wrongPeer.join(", ")} (wrong_peer)` } : {}) };
    }
    this.#setState(email, result.state, result);
    return result;
  }

  /**
   * Dials the peer, then GETs `path` from the address that answered, reading the body whole (at
   * most maxBodyBytes). The response is undefined when the peer is not online.
   */
  async fetch(peer: Peer, path: string, options: { signal?: AbortSignal } = {}): Promise<{ result: DialResult; response?: PeerResponse }> {
    const { result, response } = await this.open(peer, path, options);
    if (!response) return { result };
    return { result, response: { status: response.status, headers: response.headers, body: await readPeerBody(response, this.#options.maxBodyBytes) } };
  }

  /**
   * GETs `path` from the peer and hands back the response with its body still to read (the
   * CLI's `visit`, the house's downloads). The address that answered last time is asked
   * directly; when it no longer answers as the peer, the peer is dialled again. Redirects are
   * followed while they stay on the peer. The response is undefined when the peer is not online;
   * a failure after the dial rejects with a PeerConnectionError.
   */
  async open(peer: Peer, path: string, options: { method?: "GET" | "HEAD"; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<{ result: DialResult; response?: PeerStream }> {
    const email = peer.email.toLowerCase();
    const remembered = this.#remembered.get(email);
    const started = this.#options.clock.now();
    if (remembered && remembered.port === peer.port && isFingerprint(peer.fingerprint)) {
      try {
        const response = await this.#request(peer, remembered.address, path, options);
        const result: DialResult = { email, state: "online", address: remembered.address, baseUrl: baseUrlOf(remembered.address, peer.port), attempts: [{ address: remembered.address, outcome: "ok", elapsedMs: this.#options.clock.now() - started }], elapsedMs: this.#options.clock.now() - started };
        this.#setState(email, "online", result);
        return { result, response };
      } catch (error) {
        if (options.signal?.aborted || !(error instanceof PeerConnectionError) || !redialOn.has(error.failure)) throw error;
        this.#remembered.delete(email);
      }
    }
    const result = await this.dial(peer, options.signal ? { signal: options.signal } : {});
    if (result.state !== "online" || result.address === undefined) return { result };
    return { result, response: await this.#request(peer, result.address, path, options) };
  }

  #request(peer: Peer, address: string, path: string, options: { method?: "GET" | "HEAD"; headers?: Record<string, string>; signal?: AbortSignal }): Promise<PeerStream> {
    const { identity, requestTimeoutMs, maxRedirects, clock } = this.#options;
    return peerRequest({
      address,
      port: peer.port,
      fingerprint: peer.fingerprint,
      identity,
      path,
      timeoutMs: requestTimeoutMs,
      maxRedirects,
      peerAddresses: dialCandidates(peer),
      clock,
      ...options,
    });
  }

  #race(candidates: string[], port: number, fingerprint: string, staggerMs: number, started: number, signal?: AbortSignal): Promise<{ winner?: string; attempts: DialAttempt[] }> {
    const { clock, attemptTimeoutMs, healthPath, identity } = this.#options;
    return new Promise((resolve) => {
      const attempts: DialAttempt[] = [];
      const controllers: AbortController[] = [];
      const timers = new Set<unknown>();
      let next = 0;
      let running = 0;
      let done = false;
      const finish = (winner?: string) => {
        done = true;
        signal?.removeEventListener("abort", onAbort);
        for (const timer of timers) clock.clearTimeout(timer);
        // Candidates still in flight lose: record them now, their probes settle after we resolve.
        controllers.forEach((controller, index) => {
          if (attempts[index] === undefined) attempts[index] = { address: candidates[index]!, outcome: "cancelled", elapsedMs: clock.now() - started };
          controller.abort();
        });
        resolve(winner === undefined ? { attempts: attempts.filter(Boolean) } : { winner, attempts: attempts.filter(Boolean) });
      };
      const onAbort = () => finish();
      signal?.addEventListener("abort", onAbort, { once: true });
      const startNext = () => {
        if (done || next >= candidates.length) return;
        const index = next++;
        const address = candidates[index]!;
        const controller = new AbortController();
        controllers.push(controller);
        running += 1;
        // Each candidate starts exactly one successor: on failure, or when its head start is over.
        let triggered = false;
        const trigger = () => {
          if (triggered) return;
          triggered = true;
          clock.clearTimeout(timer);
          timers.delete(timer);
          startNext();
        };
        const timer = Number.isFinite(staggerMs) ? clock.setTimeout(trigger, staggerMs) : undefined;
        if (timer !== undefined) timers.add(timer);
        probe({ address, port, fingerprint, identity, path: healthPath, timeoutMs: attemptTimeoutMs, clock, signal: controller.signal }).then((outcome) => {
          running -= 1;
          if (done) return;
          attempts[index] = { address, ...outcome, elapsedMs: clock.now() - started };
          if (outcome.outcome === "ok") return finish(address);
          trigger();
          if (running === 0 && next >= candidates.length) finish();
        });
      };
      if (signal?.aborted) return finish();
      startNext();
    });
  }

  /**
   * Keeps the states of emails current from the relay's Watch: a peer the relay reports offline
   * is "offline" at once (its result's `presence` says why: withdrawn, lost, expired,
   * not_online), with no dial; a peer reported online, or whose port or addresses changed, is
   * dialled ("checking", then online, offline or error). When the relay ends the watch (aborted:
   * this watcher fell behind; unavailable: the relay is going away) it watches again after a
   * backoff, each state checked anew. Resolves when signal aborts; rejects on a failure watching
   * again cannot fix (not registered, a malformed email).
   */
  async follow(client: Pick<RelayClient, "watch">, emails: string[], options: { signal: AbortSignal; backoff?: Partial<BackoffOptions>; random?: () => number }): Promise<void> {
    const { signal } = options;
    const backoff = { ...defaultBackoff, ...options.backoff };
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for await (const change of client.watch(emails, { signal })) {
          attempt = 0;
          if (change.online && change.peer !== undefined) {
            void this.dial(change.peer, { signal });
          } else {
            const presence = change.reason ?? "unspecified";
            this.#setState(change.email, "offline", { email: change.email, state: "offline", attempts: [], elapsedMs: 0, presence, message: `the relay reports ${change.email} offline (${presence.replace("_", " ")})` });
          }
        }
        if (signal.aborted) return;
      } catch (error) {
        if (signal.aborted) return;
        if (!isRetryable(error)) throw error;
        const delay = Math.max(backoffDelay(attempt, backoff, options.random), retryAfterMs(error) ?? 0);
        attempt += 1;
        try {
          await sleep(this.#options.clock, delay, signal);
        } catch {
          return;
        }
      }
    }
  }

  #setState(email: string, state: PeerState, result?: DialResult): void {
    this.#states.set(email, state);
    this.emit("state", email, state, result);
  }
}

/** Creates a {@link Dialer}. */
export function createDialer(options: DialerOptions): Dialer {
  return new Dialer(options);
}

/** Failures of a remembered address after which {@link Dialer.open} dials the peer again. */
const redialOn = new Set<PeerFailure>(["refused", "timeout", "wrong_peer", "failed"]);

type ProbeOutcome = Pick<DialAttempt, "outcome" | "status" | "error">;

/**
 * One health check over verified peer TLS; resolves with its outcome, never rejects. Redirects
 * are not followed: the address probed must answer itself.
 */
async function probe(options: { address: string; port: number; fingerprint: string; identity: DialerOptions["identity"]; path: string; timeoutMs: number; clock: Clock; signal: AbortSignal }): Promise<ProbeOutcome> {
  try {
    const response = await peerRequest({ ...options, maxRedirects: 0 });
    // The peer's explanation (403 "not allowed to read this share") is worth showing; bounded.
    const body = await readPeerBody(response, 4096).catch(() => Buffer.alloc(0));
    if (response.status >= 200 && response.status < 300) return { outcome: "ok", status: response.status };
    return { outcome: "unhealthy", status: response.status, ...(body.length > 0 ? { error: messageOf(body) } : {}) };
  } catch (error) {
    if (!(error instanceof PeerConnectionError)) return { outcome: "failed", error: String(error) };
    switch (error.failure) {
      case "refused":
      case "timeout":
      case "wrong_peer":
      case "cancelled":
        return { outcome: error.failure, error: error.message };
      default:
        return { outcome: "failed", error: error.message };
    }
  }
}

/** The `message` of a share server's JSON error, or the text itself, on one line. */
function messageOf(body: Buffer): string {
  const text = body.toString("utf8");
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // not JSON: the text as is
  }
  return text.replaceAll(/\s+/g, " ").trim().slice(0, 200);
}

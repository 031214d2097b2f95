import { EventEmitter } from "node:events";
import { request, type IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import { systemClock, type Clock } from "../shared/clock.js";
import type { Peer } from "./relay-client.js";

/**
 * A peer's availability as the plan's section 2.4.3 shows it:
 * - online: a candidate address answered the health check with 2xx
 * - offline: no candidate answered (refused, timed out, unreachable)
 * - checking: a dial is in progress
 * - error: the peer is reachable but unhealthy (health answered non-2xx), or announced nothing to dial
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
  outcome: "ok" | "refused" | "timeout" | "unhealthy" | "failed" | "cancelled";
  /** HTTP status, when the candidate answered. */
  status?: number;
  /** The system error, when it failed. */
  error?: string;
  /** From the dial's start to this attempt's end. */
  elapsedMs: number;
}

/** Outcome of {@link Dialer.dial}. */
export interface DialResult {
  email: string;
  state: Exclude<PeerState, "checking">;
  /** The address that answered, when online. */
  address?: string;
  /** `http://address:port` of the winner, when online. */
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
  /** Deadline of {@link Dialer.fetch}'s request after the dial. Default: 10 s. */
  requestTimeoutMs?: number;
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

/** "http://127.0.0.1:8080", "http://[::1]:8080". */
export function baseUrlOf(address: string, port: number): string {
  return `http://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/** Dials peers' HTTP servers directly, remembering which address answered. */
export class Dialer extends EventEmitter<DialerEvents> {
  readonly #options: Required<Omit<DialerOptions, "clock">> & { clock: Clock };
  readonly #remembered = new Map<string, { address: string; port: number }>();
  readonly #states = new Map<string, PeerState>();

  constructor(options: DialerOptions = {}) {
    super();
    this.#options = {
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
    if (candidates.length === 0 || peer.port === 0) {
      const result: DialResult = { email, state: "error", attempts: [], elapsedMs: 0, message: `${email} announced no address to dial` };
      this.#setState(email, result.state, result);
      return result;
    }
    const strategy = options.strategy ?? this.#options.strategy;
    const staggerMs = strategy === "staggered" ? this.#options.staggerMs : Number.POSITIVE_INFINITY;
    const { winner, attempts } = await this.#race(candidates, peer.port, staggerMs, started, options.signal);
    const elapsedMs = this.#options.clock.now() - started;
    let result: DialResult;
    if (winner !== undefined) {
      this.#remembered.set(email, { address: winner, port: peer.port });
      result = { email, state: "online", address: winner, baseUrl: baseUrlOf(winner, peer.port), attempts, elapsedMs };
    } else {
      const unhealthy = attempts.find((attempt) => attempt.outcome === "unhealthy");
      result = unhealthy
        ? { email, state: "error", attempts, elapsedMs, message: `${email} answered ${this.#options.healthPath} with HTTP ${unhealthy.status} at ${unhealthy.address}` }
        : { email, state: "offline", attempts, elapsedMs };
    }
    this.#setState(email, result.state, result);
    return result;
  }

  /**
   * Dials the peer, then GETs `path` from the address that answered (the CLI's `visit`).
   * The response is undefined when the peer is not online.
   */
  async fetch(peer: Peer, path: string): Promise<{ result: DialResult; response?: PeerResponse }> {
    const result = await this.dial(peer);
    if (result.state !== "online" || result.address === undefined) return { result };
    const response = await httpGet(result.address, peer.port, path, this.#options.requestTimeoutMs, this.#options.clock);
    return { result, response };
  }

  #race(candidates: string[], port: number, staggerMs: number, started: number, signal?: AbortSignal): Promise<{ winner?: string; attempts: DialAttempt[] }> {
    const { clock, attemptTimeoutMs, healthPath } = this.#options;
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
        probe(address, port, healthPath, attemptTimeoutMs, clock, controller.signal).then((outcome) => {
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

  #setState(email: string, state: PeerState, result?: DialResult): void {
    this.#states.set(email, state);
    this.emit("state", email, state, result);
  }
}

/** Creates a {@link Dialer}. */
export function createDialer(options: DialerOptions = {}): Dialer {
  return new Dialer(options);
}

type ProbeOutcome = Pick<DialAttempt, "outcome" | "status" | "error">;

/** One health check; resolves with its outcome, never rejects. */
async function probe(address: string, port: number, path: string, timeoutMs: number, clock: Clock, signal: AbortSignal): Promise<ProbeOutcome> {
  try {
    const response = await httpGet(address, port, path, timeoutMs, clock, signal);
    return response.status >= 200 && response.status < 300 ? { outcome: "ok", status: response.status } : { outcome: "unhealthy", status: response.status };
  } catch (error) {
    if (signal.aborted) return { outcome: "cancelled" };
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ETIMEDOUT") return { outcome: "timeout", error: `no answer within ${timeoutMs} ms` };
    if (code === "ECONNREFUSED") return { outcome: "refused", error: "connection refused" };
    return { outcome: "failed", error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * GET over plain HTTP/1.1 with one deadline for connect + answer + body. A fresh connection per
 * call (agent: false): a dial must test the address now, not reuse a socket from earlier.
 */
export function httpGet(address: string, port: number, path: string, timeoutMs: number, clock: Clock = systemClock, signal?: AbortSignal): Promise<PeerResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: address, port, path, method: "GET", agent: false, headers: { accept: "*/*" }, ...(signal ? { signal } : {}) });
    const timer = clock.setTimeout(() => {
      req.destroy(Object.assign(new Error(`no answer from ${baseUrlOf(address, port)} within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    const fail = (error: Error) => {
      clock.clearTimeout(timer);
      reject(error);
    };
    req.on("error", fail);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", fail);
      res.on("end", () => {
        clock.clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    req.end();
  });
}

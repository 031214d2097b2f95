import { EventEmitter } from "node:events";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { pino, type Logger } from "pino";
import { systemClock, type Clock } from "../../shared/clock.js";
import type { Dialer, DialResult, PeerState } from "../dialer.js";
import { describeError } from "../errors.js";
import type { Peer, RelayClient } from "../relay-client.js";

/**
 * The house's peer list (a "remote house" of peers): every peer the relay lists, with the four
 * statuses as the dialer finds them. The relay says who is online and where; dialing over peer
 * TLS says whether the peer really answers there. A peer that leaves the relay's list stays on
 * the board as offline, so its badge changes instead of vanishing.
 */

/** One peer as the house shows it. */
export interface BoardPeer {
  email: string;
  /** online, offline, checking or error (see PeerState). */
  state: PeerState;
  /** Why, for offline and error. */
  message?: string;
  /** The address that answered the last dial. */
  address?: string;
  /** When the relay last heard from the peer (its last Ready or heartbeat), ISO 8601. */
  lastSeen?: string;
  /** Whether the relay lists the peer as online now. */
  listed: boolean;
  port: number;
  addresses: string[];
  fingerprint: string;
  /** When the house last dialed it, ISO 8601. */
  checkedAt?: string;
}

/** The whole board, as the page receives it. */
export interface BoardSnapshot {
  /** The house's own email (not listed among the peers). */
  self: string;
  /** Set while the relay cannot be reached; the peers are then as last known. */
  relayError?: string;
  /** When the relay was last asked, ISO 8601. */
  refreshedAt?: string;
  peers: BoardPeer[];
}

/** Options of {@link createPeerBoard}. */
export interface PeerBoardOptions {
  /** Lists the peers (List); its identity's email is left off the board. */
  client: Pick<RelayClient, "identity" | "list">;
  /** Dials the peers; its state events drive the badges. */
  dialer: Dialer;
  /**
   * How often the relay is asked for the list and each listed peer is dialed again. Default:
   * 10 s: a peer that stops is shown offline within about this long, at the cost of one List
   * call and one TLS handshake per peer per interval.
   */
  refreshMs?: number;
  /** Dials running at once. Default: 4, so a long list does not open hundreds of connections at once. */
  maxConcurrentDials?: number;
  /** Most peers kept on the board. Default: 1000 (List's largest page). */
  maxPeers?: number;
  /**
   * Follows the relay's Watch of these emails until signal aborts, driving the dialer's states
   * (`Dialer.follow`): a peer that leaves shows offline at once instead of at the next refresh.
   * The board calls it again whenever the listed emails change, with at most 256 of them (Watch's
   * limit); the others are kept current by refreshes alone. Default: none, refreshes only.
   */
  watch?: (emails: string[], signal: AbortSignal) => Promise<void>;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: silent. */
  logger?: Logger;
}

/** Most emails in one Watch (the relay refuses more). */
const maxWatchedEmails = 256;

/** Events of {@link PeerBoard}. */
export interface PeerBoardEvents {
  /** Something on the board changed. */
  change: [snapshot: BoardSnapshot];
}

/** The live peer list; see {@link createPeerBoard}. */
export class PeerBoard extends EventEmitter<PeerBoardEvents> {
  readonly #options: Required<Omit<PeerBoardOptions, "logger" | "watch">> & Pick<PeerBoardOptions, "watch"> & { logger: Logger };
  readonly #peers = new Map<string, { peer: Peer; view: BoardPeer }>();
  readonly #queue: string[] = [];
  /** Peers re-dialed in the background: their badge keeps its state until the outcome. */
  readonly #quiet = new Set<string>();
  #dialing = 0;
  #timer: unknown;
  #stopped = true;
  #relayError: string | undefined;
  #refreshedAt: string | undefined;
  #refreshing: Promise<void> | undefined;
  #watching: { emails: string; controller: AbortController } | undefined;

  constructor(options: PeerBoardOptions) {
    super();
    this.#options = {
      refreshMs: 10_000,
      maxConcurrentDials: 4,
      maxPeers: 1000,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      ...options,
    };
    this.#options.dialer.on("state", (email, state, result) => this.#onDial(email, state, result));
  }

  /** Starts refreshing: at once, then every refreshMs. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    const tick = () => {
      if (this.#stopped) return;
      void this.refresh().finally(() => {
        if (!this.#stopped) this.#timer = this.#options.clock.setTimeout(tick, this.#options.refreshMs, { unref: true });
      });
    };
    tick();
  }

  /** Stops refreshing; dials in flight finish. */
  stop(): void {
    this.#stopped = true;
    this.#options.clock.clearTimeout(this.#timer);
    this.#watching?.controller.abort();
    this.#watching = undefined;
  }

  /** The board now. */
  snapshot(): BoardSnapshot {
    const peers = [...this.#peers.values()].map(({ view }) => ({ ...view })).sort((a, b) => (a.email < b.email ? -1 : a.email > b.email ? 1 : 0));
    return { self: this.#options.client.identity.email, ...(this.#relayError ? { relayError: this.#relayError } : {}), ...(this.#refreshedAt ? { refreshedAt: this.#refreshedAt } : {}), peers };
  }

  /** The relay's record of a peer on the board (to dial it), or undefined. */
  peer(email: string): Peer | undefined {
    return this.#peers.get(email.toLowerCase())?.peer;
  }

  /** Dials one peer again now (the page's "check" button). False when it is not on the board. */
  check(email: string): boolean {
    const key = email.toLowerCase();
    if (!this.#peers.has(key)) return false;
    this.#enqueue(key, false);
    return true;
  }

  /** Asks the relay for the list once and dials every listed peer. Never throws. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const { client, maxPeers, clock, logger } = this.#options;
    const listed = new Map<string, Peer>();
    try {
      for await (const peer of client.list({ pageSize: Math.min(maxPeers, 1000) })) {
        if (peer.email !== client.identity.email) listed.set(peer.email, peer);
        if (listed.size >= maxPeers) break;
      }
      this.#relayError = undefined;
    } catch (error) {
      logger.warn({ err: error }, "failed to list peers");
      this.#relayError = describeError(error);
      this.#emit();
      return;
    }
    this.#refreshedAt = new Date(clock.now()).toISOString();
    for (const [email, entry] of this.#peers) {
      if (listed.has(email) || !entry.view.listed) continue;
      // The relay no longer lists it: offline now, whatever the last dial said.
      entry.view = { ...entry.view, listed: false, state: "offline", message: "not online at the relay" };
      delete entry.view.address;
    }
    const toDial: Array<[string, boolean]> = [];
    for (const [email, peer] of listed) {
      const known = this.#peers.get(email);
      const view: BoardPeer = {
        ...(known?.view ?? { state: "checking" as PeerState }),
        email,
        listed: true,
        port: peer.port,
        addresses: [...peer.addresses],
        fingerprint: peer.fingerprint,
        ...(peer.lastSeen ? { lastSeen: timestampDate(peer.lastSeen).toISOString() } : {}),
      };
      if (this.#peers.size >= maxPeers && !known) continue;
      this.#peers.set(email, { peer, view });
      // A periodic re-check of a peer already shown does not flash "checking" every interval.
      toDial.push([email, known !== undefined && known.view.state !== "checking"]);
    }
    // The whole list first, then the dials: the page never sees half a refresh.
    this.#emit();
    for (const [email, quiet] of toDial) this.#enqueue(email, quiet);
    this.#watch([...listed.keys()]);
  }

  /** Watches the listed emails, again only when they change. */
  #watch(listed: string[]): void {
    const { watch, logger } = this.#options;
    if (!watch || this.#stopped) return;
    const emails = listed.sort().slice(0, maxWatchedEmails);
    const key = emails.join("\n");
    if (this.#watching?.emails === key) return;
    this.#watching?.controller.abort();
    this.#watching = undefined;
    if (emails.length === 0) return;
    const controller = new AbortController();
    this.#watching = { emails: key, controller };
    watch(emails, controller.signal).catch((error: unknown) => {
      if (controller.signal.aborted) return;
      // Refreshes go on, and the next one watches again.
      logger.warn({ err: error }, "failed to watch peers: showing changes at each refresh only");
      if (this.#watching?.controller === controller) this.#watching = undefined;
    });
  }

  #enqueue(email: string, quiet: boolean): void {
    if (quiet) this.#quiet.add(email);
    else this.#quiet.delete(email);
    if (!this.#queue.includes(email)) this.#queue.push(email);
    this.#drain();
  }

  #drain(): void {
    while (this.#dialing < this.#options.maxConcurrentDials && this.#queue.length > 0) {
      const email = this.#queue.shift()!;
      const entry = this.#peers.get(email);
      if (!entry || !entry.view.listed) continue;
      this.#dialing += 1;
      void this.#options.dialer.dial(entry.peer).finally(() => {
        this.#quiet.delete(email);
        this.#dialing -= 1;
        this.#drain();
      });
    }
  }

  #onDial(email: string, state: PeerState, result: DialResult | undefined): void {
    const entry = this.#peers.get(email);
    if (!entry || (state === "checking" && this.#quiet.has(email))) return;
    const view: BoardPeer = { ...entry.view, state };
    if (state !== "checking") view.checkedAt = new Date(this.#options.clock.now()).toISOString();
    if (result?.address) view.address = result.address;
    else if (state !== "checking") delete view.address;
    const message = result?.message ?? (state === "offline" && result ? describeAttempts(result) : undefined);
    if (message && state !== "online") view.message = message;
    else if (state !== "checking") delete view.message;
    // A peer the relay no longer lists stays offline whatever a late dial says.
    if (!entry.view.listed && state === "online") return;
    entry.view = view;
    this.#emit();
  }

  #emit(): void {
    this.emit("change", this.snapshot());
  }
}

function describeAttempts(result: DialResult): string {
  return result.attempts.length === 0 ? "nothing to dial" : "tried " + result.attempts.map((attempt) => `${attempt.address} ${attempt.outcome}`).join(", ");
}

/** Creates a {@link PeerBoard}; call start() to begin. */
export function createPeerBoard(options: PeerBoardOptions): PeerBoard {
  return new PeerBoard(options);
}

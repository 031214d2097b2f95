import { Code, ConnectError } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { OfflineReason, type PeerSchema, type WatchResponseSchema } from "../../gen/relay/v1/relay_pb.js";
import { dateOf, type Clock, type TimerHandle } from "../../shared/clock.js";
import { briefCause } from "../errors.js";
import type { BroadcastRecord, ChangeFeed, RelayStore } from "../store/store.js";
import { deadlineOf, isLive, offlineCauseOf, type OfflineCause } from "./broadcast-rules.js";

/** One message of a Watch stream. */
export type WatchMessage = MessageInitShape<typeof WatchResponseSchema>;

/** Options of {@link createWatchHub}. */
export interface WatchHubOptions {
  store: RelayStore;
  clock: Clock;
  logger: Logger;
  /** How a broadcast is shown to watchers (the same Peer as Lookup's). */
  toPeer: (broadcast: BroadcastRecord) => MessageInitShape<typeof PeerSchema>;
  /**
   * The relay's presence grace, ms. A watched online peer is read again at least this often: a
   * Heartbeat stream that takes hold of its broadcast (on any instance) brings its presence
   * deadline forward without a change event, and a read within the grace learns it in time.
   */
  presenceGraceMs: number;
  /**
   * How often deadlines are checked, ms. Default 250: a peer whose grace or ttl runs out is
   * reported offline within this (plus one store read) of its deadline.
   */
  tickMs?: number;
  /**
   * Messages one watcher may have waiting (not yet taken by its stream, which waits on HTTP/2
   * flow control for a slow reader). Beyond it the watcher is told to resync: its stream ends
   * with `aborted`. Default 1024: a full initial snapshot (256) and hundreds of changes.
   */
  maxPendingMessages?: number;
  /** Most emails read from the store in one query. Default 500. */
  readBatchSize?: number;
  /** Called with +1 when a Watch stream opens and -1 when it ends (metrics). */
  onWatcher?: (delta: 1 | -1) => void;
}

/** Live presence for Watch streams: one state per watched email, shared by its watchers. */
export interface WatchHub {
  /**
   * The messages of one Watch stream for emails (lower-cased, distinct): one initial message per
   * email, then one per change, until signal aborts. Throws `aborted` when the watcher fell
   * behind.
   */
  watch(emails: string[], signal: AbortSignal): AsyncIterable<WatchMessage>;
  /** Hints that email's broadcast changed here (Ready, Offline, a clean stream end): read it now. */
  touch(email: string): void;
  /** How changes on other instances arrive: "local", "poll" or "change-stream" (once a watch started the feed). */
  readonly feedMode: string | undefined;
  /** Open Watch streams. */
  readonly watchers: number;
  /** Stops the feed and the timer; open streams end with `unavailable`. */
  stop(): Promise<void>;
}

/** The state a watcher is told about. */
type State = { online: true; broadcast: BroadcastRecord } | { online: false; cause: OfflineCause | "not_online"; last?: BroadcastRecord };

interface Entry {
  watchers: Set<WatcherState>;
  /** Undefined until the first read. */
  state?: State;
  /** When to read again, ms; Infinity while offline (only a Ready brings it back, and the feed reports that). */
  checkAt: number;
}

interface WatcherState {
  emails: string[];
  /** Emails whose initial message is not sent yet. */
  awaitingInitial: Set<string>;
  /** Changes that happened before every initial message was sent: sent right after them. */
  held: WatchMessage[];
  queue: WatchMessage[];
  wake: (() => void) | undefined;
  failure: ConnectError | undefined;
}

const reasons: Record<OfflineCause, OfflineReason> = { withdrawn: OfflineReason.WITHDRAWN, lost: OfflineReason.LOST, expired: OfflineReason.EXPIRED };

/** Creates a {@link WatchHub}; it reads the store and follows its change feed only while someone watches. */
export function createWatchHub(options: WatchHubOptions): WatchHub {
  const { store, clock, logger, toPeer, presenceGraceMs } = options;
  const tickMs = options.tickMs ?? 250;
  const maxPending = options.maxPendingMessages ?? 1024;
  const batchSize = options.readBatchSize ?? 500;
  const entries = new Map<string, Entry>();
  const dirty = new Set<string>();
  let reading: Promise<void> | undefined;
  let feed: ChangeFeed | undefined;
  let timer: TimerHandle | undefined;
  let watcherCount = 0;
  let stopped = false;
  const all = new Set<WatcherState>();

  function start(): void {
    if (feed !== undefined) return;
    feed = store.watchChanges(
      (changes) => {
        for (const { email } of changes) if (entries.has(email)) dirty.add(email);
        scheduleRead();
      },
      () => {
        // The feed may have missed changes: every watched email is read again.
        for (const email of entries.keys()) dirty.add(email);
        scheduleRead();
      },
    );
    timer = clock.setInterval(
      () => {
        const now = clock.now();
        for (const [email, entry] of entries) if (entry.checkAt <= now) dirty.add(email);
        scheduleRead();
      },
      tickMs,
      { unref: true },
    );
  }

  function stopFeed(): void {
    clock.clearInterval(timer);
    timer = undefined;
    void feed?.stop();
    feed = undefined;
  }

  function scheduleRead(): void {
    if (reading !== undefined || dirty.size === 0 || stopped) return;
    reading = readDirty().finally(() => {
      reading = undefined;
      if (dirty.size > 0) queueMicrotask(scheduleRead);
    });
  }

  /** Reads the dirty emails in batches and tells watchers what changed. */
  async function readDirty(): Promise<void> {
    while (dirty.size > 0 && !stopped) {
      const batch = [...dirty].slice(0, batchSize);
      for (const email of batch) dirty.delete(email);
      let records: BroadcastRecord[];
      try {
        records = await store.findBroadcastRecords(batch);
      } catch (error) {
        // Tried again on the next tick; watchers keep the last state meanwhile.
        logger.warn({ cause: briefCause(error), emails: batch.length }, "failed to read watched broadcasts");
        const retryAt = clock.now() + tickMs;
        for (const email of batch) {
          const entry = entries.get(email);
          if (entry !== undefined) entry.checkAt = Math.min(entry.checkAt, retryAt);
        }
        return;
      }
      const byEmail = new Map(records.map((record) => [record.email, record]));
      const now = dateOf(clock);
      for (const email of batch) {
        const entry = entries.get(email);
        if (entry !== undefined) update(email, entry, byEmail.get(email), now);
      }
    }
  }

  function update(email: string, entry: Entry, record: BroadcastRecord | undefined, now: Date): void {
    const previous = entry.state;
    let next: State;
    if (record !== undefined && isLive(record, now)) {
      next = { online: true, broadcast: record };
      entry.checkAt = Math.min(deadlineOf(record), now.getTime() + presenceGraceMs);
    } else {
      // Gone from the store (swept, or deleted by a TTL index): judged by what was last read.
      const last = record ?? (previous?.online ? previous.broadcast : previous?.last);
      next = { online: false, cause: last === undefined ? "not_online" : offlineCauseOf(last, now), ...(last === undefined ? {} : { last }) };
      entry.checkAt = Number.POSITIVE_INFINITY;
    }
    entry.state = next;
    const changed = previous !== undefined && differs(previous, next);
    for (const watcher of entry.watchers) deliver(watcher, email, next, changed);
  }

  function deliver(watcher: WatcherState, email: string, state: State, changed: boolean): void {
    if (watcher.failure !== undefined) return;
    if (watcher.awaitingInitial.delete(email)) {
      watcher.queue.push(messageOf(email, state, true));
      if (watcher.awaitingInitial.size === 0) watcher.queue.push(...watcher.held.splice(0));
    } else if (changed) {
      (watcher.awaitingInitial.size > 0 ? watcher.held : watcher.queue).push(messageOf(email, state, false));
    } else {
      return;
    }
    if (watcher.queue.length + watcher.held.length > maxPending) {
      // Its stream ends with this as soon as it is read again; until then it holds nothing.
      watcher.failure = new ConnectError(`this watcher fell behind (more than ${maxPending} messages waiting): watch again for a fresh snapshot`, Code.Aborted);
      watcher.queue.length = 0;
      watcher.held.length = 0;
      unsubscribe(watcher);
    }
    watcher.wake?.();
  }

  function messageOf(email: string, state: State, initial: boolean): WatchMessage {
    if (state.online) return { email, online: true, peer: toPeer(state.broadcast), initial };
    return { email, online: false, reason: initial ? OfflineReason.NOT_ONLINE : state.cause === "not_online" ? OfflineReason.NOT_ONLINE : reasons[state.cause], initial };
  }

  function subscribe(watcher: WatcherState): void {
    start();
    for (const email of watcher.emails) {
      let entry = entries.get(email);
      if (entry === undefined) {
        entry = { watchers: new Set(), checkAt: Number.POSITIVE_INFINITY };
        entries.set(email, entry);
        dirty.add(email);
      }
      entry.watchers.add(watcher);
      if (entry.state !== undefined) deliver(watcher, email, entry.state, false);
    }
    scheduleRead();
  }

  function unsubscribe(watcher: WatcherState): void {
    for (const email of watcher.emails) {
      const entry = entries.get(email);
      if (entry === undefined) continue;
      entry.watchers.delete(watcher);
      if (entry.watchers.size === 0) {
        entries.delete(email);
        dirty.delete(email);
      }
    }
    if (entries.size === 0) stopFeed();
  }

  return {
    async *watch(emails, signal) {
      if (stopped) throw new ConnectError("the relay is shutting down: watch again", Code.Unavailable);
      const watcher: WatcherState = { emails, awaitingInitial: new Set(emails), held: [], queue: [], wake: undefined, failure: undefined };
      const onAbort = () => watcher.wake?.();
      signal.addEventListener("abort", onAbort, { once: true });
      watcherCount++;
      options.onWatcher?.(1);
      all.add(watcher);
      subscribe(watcher);
      try {
        for (;;) {
          if (watcher.failure !== undefined) throw watcher.failure;
          if (signal.aborted) return;
          const message = watcher.queue.shift();
          if (message !== undefined) {
            yield message;
            continue;
          }
          await new Promise<void>((resolve) => (watcher.wake = resolve));
          watcher.wake = undefined;
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
        watcherCount--;
        options.onWatcher?.(-1);
        all.delete(watcher);
        unsubscribe(watcher);
      }
    },
    touch(email) {
      if (!entries.has(email)) return;
      dirty.add(email);
      scheduleRead();
    },
    get feedMode() {
      return feed?.mode;
    },
    get watchers() {
      return watcherCount;
    },
    async stop() {
      stopped = true;
      for (const watcher of all) {
        watcher.failure ??= new ConnectError("the relay is shutting down: watch again", Code.Unavailable);
        watcher.wake?.();
      }
      stopFeed();
      await reading;
    },
  };
}

/** Whether a watcher should hear about the move from previous to next. */
function differs(previous: State, next: State): boolean {
  if (previous.online !== next.online) return true;
  if (!previous.online || !next.online) return false;
  const a = previous.broadcast;
  const b = next.broadcast;
  // A new Ready with what the peer announced before (a reconnect) is not news to a watcher.
  return a.port !== b.port || a.addresses.join(",") !== b.addresses.join(",") || a.observedAddress !== b.observedAddress || a.fingerprint !== b.fingerprint;
}

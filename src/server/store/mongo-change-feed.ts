import { MongoError, type Collection, type ObjectId } from "mongodb";
import type { Logger } from "pino";
import type { Clock, TimerHandle } from "../../shared/clock.js";
import type { BroadcastChange, ChangeFeed } from "./store.js";

/** The fields of a broadcast document the change stream reads. */
export interface ChangedDocument {
  /** The broadcast's email. */
  _id: string;
  changedAt?: Date;
}

/**
 * One entry of the change log the poll reads: a Ready or a withdraw of the broadcast of email,
 * written after the broadcast itself (MongoStore). Entries are deleted by the sweep after
 * {@link changeLogRetentionMs} or more.
 */
export interface ChangeLogDocument {
  _id?: ObjectId;
  email: string;
  /** The change's changedAt, from the writing instance's clock. */
  at: Date;
}

/**
 * Change-log entries are kept at least this long, ms. A poll whose last complete predecessor
 * began longer ago than this less the overlap may have lost entries: its readers start over.
 */
export const changeLogRetentionMs = 120_000;

/** Options of {@link startMongoChangeFeed}. */
export interface MongoChangeFeedOptions {
  /** Resolves to the broadcasts collection once the store is connected (the change stream's source). */
  broadcasts: () => Promise<Collection<ChangedDocument>>;
  /** Resolves to the change log once the store is connected (the poll's source). */
  changes: () => Promise<Collection<ChangeLogDocument>>;
  onChange: (changes: BroadcastChange[]) => void;
  /** Changes may have gone unreported: a poll found more than its pages hold, or a change stream was given up for polling. */
  onResync?: () => void;
  clock: Clock;
  logger: Logger;
  /**
   * How often the store is polled when the server has no change streams, ms. Default 500: a
   * change on another instance reaches watchers within about a second (the relay promises 2 s).
   */
  pollIntervalMs?: number;
  /**
   * How far back each poll looks, ms, past the last one. Default 5000: a write becomes visible
   * a little after its changedAt (set by the writing instance's clock), and instances' clocks
   * differ a little; repeats within the window are dropped.
   */
  pollOverlapMs?: number;
  /** Most log entries one poll reads per page; a full page is followed by the next at once (10 pages at most). Default 1000. */
  pollPageSize?: number;
}

// Answers that mean "this server has no change streams": FerretDB 1.x (NotImplemented, 238),
// a standalone mongod (40573: only on replica sets), CommandNotSupported (115).
const unsupportedCodes = new Set([238, 40573, 115]);

/**
 * Reports broadcasts changed by Ready or a withdraw on any relay instance sharing the database.
 * A MongoDB change stream when the server has them; otherwise (FerretDB has none) a bounded poll
 * of broadcasts by changedAt. Logs which one is in use.
 */
export function startMongoChangeFeed(options: MongoChangeFeedOptions): ChangeFeed {
  const { clock, logger, onChange } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const overlapMs = options.pollOverlapMs ?? 5_000;
  const pageSize = options.pollPageSize ?? 1000;
  let mode: "change-stream" | "poll" | "starting" = "starting";
  let stopped = false;
  /** While a change stream is open and read. */
  let streaming = false;
  /** When the last poll that read every change since the one before it began, ms. */
  let polledAt: number | undefined;
  let stream: ReturnType<Collection<ChangedDocument>["watch"]> | undefined;
  let timer: TimerHandle | undefined;
  // Poll state: log entries already reported (id → at ms) inside the overlap window.
  let cursor = clock.now() - overlapMs;
  const seen = new Map<string, number>();

  async function startChangeStream(): Promise<void> {
    let following = false;
    try {
      const broadcasts = await options.broadcasts();
      if (stopped) return;
      const pipeline = [{ $match: { $or: [{ operationType: { $in: ["insert", "replace"] } }, { operationType: "update", "updateDescription.updatedFields.changedAt": { $exists: true } }] } }];
      // A broadcast's _id is its email: the change's documentKey says which, no document lookup.
      const opened = broadcasts.watch<ChangedDocument>(pipeline);
      stream = opened;
      // tryNext sends the aggregate at once: a server without change streams answers now, not
      // on a later change. The stream is then read as an iterator only (the driver refuses to
      // mix iterator and event-emitter use).
      const first = await opened.tryNext();
      mode = "change-stream";
      following = true;
      streaming = true;
      logger.info("watching broadcast changes with a MongoDB change stream");
      if (first !== null) report(first);
      while (!stopped) report(await opened.next());
    } catch (error) {
      streaming = false;
      await stream?.close().catch(() => undefined);
      stream = undefined;
      if (stopped) return;
      // Changes between the stream's end and the first poll's window could go unreported.
      if (following) options.onResync?.();
      if (!following && error instanceof MongoError && typeof error.code === "number" && unsupportedCodes.has(error.code)) {
        logger.info({ pollIntervalMs }, "the database has no change streams (FerretDB has none): polling broadcast changes");
      } else {
        logger.warn({ err: error, pollIntervalMs }, "failed to follow a broadcast change stream; polling broadcast changes instead");
      }
      startPolling();
    }
  }

  function report(change: object): void {
    const email = "documentKey" in change ? (change.documentKey as Partial<ChangedDocument> | undefined)?._id : undefined;
    if (typeof email === "string") onChange([{ email }]);
  }

  function startPolling(): void {
    if (stopped || mode === "poll") return;
    mode = "poll";
    const tick = () => {
      if (stopped) return;
      poll().then(
        () => schedule(),
        (error: unknown) => {
          logger.warn({ err: error }, "failed to poll broadcast changes");
          schedule();
        },
      );
    };
    const schedule = () => {
      if (!stopped) timer = clock.setTimeout(tick, pollIntervalMs, { unref: true });
    };
    tick();
  }

  /**
   * Reads the change log since the cursor. The log, not the broadcasts: a server without change
   * streams may evaluate a range query by reading every document (FerretDB 1.x does), and the log
   * holds only the last minutes' changes, where the broadcasts hold every peer.
   */
  async function poll(): Promise<void> {
    const changes = await options.changes();
    const pollStart = clock.now();
    // Entries older than the retention may be swept: a gap that long may have lost some.
    const sinceLastMs = polledAt === undefined ? 0 : pollStart - polledAt;
    let from = cursor;
    let complete = false;
    for (let page = 0; page < 10; page++) {
      const rows = await changes
        .find({ at: { $gte: new Date(from) } }, { projection: { _id: 1, email: 1, at: 1 } })
        .sort({ at: 1 })
        .limit(pageSize)
        .toArray();
      const fresh: BroadcastChange[] = [];
      for (const row of rows) {
        const id = String(row._id);
        if (seen.has(id)) continue;
        seen.set(id, row.at.getTime());
        fresh.push({ email: row.email });
      }
      if (fresh.length > 0 && !stopped) onChange(fresh);
      const last = rows[rows.length - 1]?.at.getTime();
      if (rows.length < pageSize) {
        complete = true;
        break;
      }
      // A full page: read on from its last row, unless one millisecond holds a whole page.
      if (last === undefined || last <= from) break;
      from = last;
    }
    cursor = pollStart - overlapMs;
    polledAt = pollStart;
    if (!complete && !stopped) {
      // Changes past what one poll reads were skipped: readers read everything again.
      logger.warn({ pageSize, pages: 10 }, "more broadcast changes since the last poll than one poll reads: watchers and cached Lookups read the store again");
      options.onResync?.();
    } else if (sinceLastMs > changeLogRetentionMs - overlapMs && !stopped) {
      logger.warn({ sinceLastPollMs: sinceLastMs }, "no complete poll of broadcast changes for longer than the change log is kept: watchers and cached Lookups read the store again");
      options.onResync?.();
    }
    for (const [id, at] of seen) if (at < cursor) seen.delete(id);
  }

  void startChangeStream();
  return {
    get mode() {
      return mode;
    },
    get lagMs() {
      if (stopped) return Number.POSITIVE_INFINITY;
      if (streaming) return 0;
      return polledAt === undefined ? Number.POSITIVE_INFINITY : Math.max(0, clock.now() - polledAt);
    },
    async stop() {
      stopped = true;
      streaming = false;
      clock.clearTimeout(timer);
      await stream?.close().catch(() => undefined);
    },
  };
}

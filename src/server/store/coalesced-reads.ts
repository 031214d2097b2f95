import DataLoader from "dataloader";

/** Options of {@link createCoalescedReads}. */
export interface CoalescedReadsOptions<K, V> {
  /**
   * Reads the values of distinct keys in one go (one query). A key without a value is absent
   * from the map. A rejection rejects every call waiting on this read, with the same error.
   */
  read(keys: K[]): Promise<Map<K, V>>;
  /** Most keys (calls, duplicates included) one read serves; more wait for the next read. At least 1. */
  maxBatchSize: number;
  /**
   * Most reads in flight at once. While they all are, new calls wait and go out together in the
   * next read once one returns. At least 1.
   */
  maxReadsInFlight: number;
}

/** Keyed reads that concurrent callers share: see {@link createCoalescedReads}. */
export interface CoalescedReads<K, V> {
  /** The key's value as read after this call was made (never an earlier read's), or undefined. */
  load(key: K): Promise<V | undefined>;
}

/**
 * Coalesces concurrent reads by key, the adaptive batching of DataLoader: a call made while a
 * read slot is free goes out at once (at the end of the current turn of the event loop, with
 * the calls made in that same turn; no timer), so an idle caller waits for nothing; calls made
 * while every slot is busy wait and go out together, in one read, when a slot frees. Under load
 * one read then serves many calls, and the batch grows with the load by itself.
 *
 * Nothing is cached: a call always waits for a read that starts after it (DataLoader's cache is
 * off), so what it gets is as fresh as a read of its own.
 *
 * Memory: each waiting call holds its key and its promise. The number of waiting calls is the
 * number of calls the caller has in flight (for the relay, its RPCs in flight, bounded by its
 * connection and stream limits), so the queue adds no bound of its own; every read is bounded in
 * time by the caller's read, so a waiting call waits at most for the reads queued before it.
 */
export function createCoalescedReads<K, V>(options: CoalescedReadsOptions<K, V>): CoalescedReads<K, V> {
  const { read, maxBatchSize, maxReadsInFlight } = options;
  if (!(maxBatchSize >= 1) || !(maxReadsInFlight >= 1)) throw new RangeError("maxBatchSize and maxReadsInFlight must be at least 1");
  let inFlight = 0;
  /** Dispatches of batches that wait for a free slot, oldest first. */
  const waiting: Array<() => void> = [];

  /**
   * DataLoader calls this when a batch opens (at its first call). With a free slot the batch
   * goes out after the promise jobs of this turn (DataLoader's own schedule, so that calls made
   * in the same turn join it); otherwise it waits, and takes calls until it is full or goes out.
   */
  const schedule = (dispatch: () => void) => {
    if (inFlight < maxReadsInFlight) {
      inFlight++;
      void Promise.resolve().then(() => process.nextTick(dispatch));
    } else {
      waiting.push(dispatch);
    }
  };
  /** A read ended: its slot goes to the oldest waiting batch, or is freed. */
  const release = () => {
    const next = waiting.shift();
    if (next === undefined) inFlight--;
    else next();
  };

  // With the cache off, every batch has at least one key, so DataLoader calls the batch function
  // (and so release) for every batch it schedules.
  const loader = new DataLoader<K, V | undefined>(
    async (keys) => {
      try {
        const values = await read([...new Set(keys)]);
        return keys.map((key) => values.get(key));
      } finally {
        release();
      }
    },
    { cache: false, maxBatchSize, batchScheduleFn: schedule },
  );
  return { load: (key) => loader.load(key) };
}

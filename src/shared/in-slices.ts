/**
 * Long passes over many entries cut into slices, with a turn of the event loop between slices.
 * A pass over every peer at once holds every other callback until it ends: at 10,000 peers the
 * memory store's refresh of every held broadcast took 24–56 ms every 5 s, its sweeps 39 ms every
 * minute, and every heartbeat answered during one waited for it (bench/scale.ts). In slices the
 * same work costs the same CPU, and a callback waits for one slice at most.
 */

/**
 * Entries visited between two turns of the event loop. At the few µs an entry costs on a large,
 * busy heap, a slice takes about a millisecond.
 */
export const defaultSliceSize = 256;

/**
 * Calls visit for each item of items, yielding to the event loop (setImmediate: I/O and timers
 * run) after every sliceSize items. A Map's or Set's iterator stays valid across the turns: an
 * entry deleted meanwhile is not visited, one added meanwhile is. visit must read whatever it
 * decides on from the item as it is when visited, since other code ran since the pass began.
 */
export async function forEachInSlices<T>(items: Iterable<T>, visit: (item: T) => void, sliceSize: number = defaultSliceSize): Promise<void> {
  let inSlice = 0;
  for (const item of items) {
    visit(item);
    if (++inSlice >= sliceSize) {
      inSlice = 0;
      await nextTurn();
    }
  }
}

/** Resolves after the event loop has run the I/O and timers already due. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

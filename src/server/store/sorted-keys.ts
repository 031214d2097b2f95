/**
 * A set of strings kept in order, for paging through them from any point: List reads a page of
 * online peers by email from a cursor. Sorting every broadcast on each page cost O(n log n) per
 * call, which one client's stream of List calls could turn into seconds of CPU at tens of
 * thousands of peers. Here a page costs a binary search and the page itself; adding or removing a
 * key moves the keys after it (a memmove of pointers: about 0.3 s in all for 25,000 peers
 * arriving one by one, the most this store is meant to hold).
 */
export class SortedKeys {
  private readonly keys: string[] = [];

  get size(): number {
    return this.keys.length;
  }

  /** Adds key; no change if it is there. */
  add(key: string): void {
    const at = this.firstNotBefore(key);
    if (this.keys[at] !== key) this.keys.splice(at, 0, key);
  }

  /** Removes key; no change if it is not there. */
  delete(key: string): void {
    const at = this.firstNotBefore(key);
    if (this.keys[at] === key) this.keys.splice(at, 1);
  }

  /** The keys after key (strictly), in order. Do not add or delete while iterating. */
  *after(key: string): Generator<string> {
    let at = this.firstNotBefore(key);
    if (this.keys[at] === key) at++;
    for (; at < this.keys.length; at++) yield this.keys[at]!;
  }

  /** The index of the first key not ordered before key (keys.length if none). */
  private firstNotBefore(key: string): number {
    let low = 0;
    let high = this.keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.keys[middle]! < key) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

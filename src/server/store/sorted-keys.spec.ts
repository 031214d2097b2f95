import { describe, expect, it } from "vitest";
import { SortedKeys } from "./sorted-keys.js";

describe("SortedKeys", () => {
  it("should page from any key in order, as a sorted copy of a set does, through adds and deletes", () => {
    const keys = new SortedKeys();
    const model = new Set<string>();
    // A fixed sequence (a linear congruential generator), so a failure repeats.
    let seed = 42;
    const next = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let step = 0; step < 3000; step++) {
      const key = `peer${String(next(400)).padStart(3, "0")}@example.com`;
      if (next(3) === 0) {
        keys.delete(key);
        model.delete(key);
      } else {
        keys.add(key);
        model.add(key);
      }
      if (step % 100 === 0) {
        const cursor = `peer${String(next(400)).padStart(3, "0")}@example.com`;
        expect([...keys.after(cursor)]).toEqual([...model].sort().filter((k) => k > cursor));
      }
    }
    expect(keys.size).toBe(model.size);
    expect([...keys.after("")]).toEqual([...model].sort());
  });

  it("should ignore a second add and a delete of a missing key", () => {
    const keys = new SortedKeys();
    keys.add("b");
    keys.add("a");
    keys.add("b");
    keys.delete("c");
    expect([...keys.after("")]).toEqual(["a", "b"]);
    expect([...keys.after("a")]).toEqual(["b"]);
    expect([...keys.after("b")]).toEqual([]);
  });
});

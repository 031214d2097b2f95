import { describe, expect, it } from "vitest";
import { defaultSliceSize, forEachInSlices, nextTurn } from "./in-slices.js";

describe("forEachInSlices", () => {
  it("should visit every item once, in order", async () => {
    const seen: number[] = [];
    await forEachInSlices([1, 2, 3, 4, 5, 6, 7], (n) => seen.push(n), 3);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it("should let the event loop run between slices, not within one", async () => {
    const events: string[] = [];
    // Queued before the pass starts: it runs at the pass's first turn.
    setImmediate(() => events.push("other callback"));
    const pass = forEachInSlices([1, 2, 3, 4, 5], (n) => events.push(`visit ${n}`), 2);
    await pass;
    expect(events).toEqual(["visit 1", "visit 2", "other callback", "visit 3", "visit 4", "visit 5"]);
  });

  it("should skip a Map entry deleted during a pause and visit one added", async () => {
    const map = new Map([
      ["a", 1],
      ["b", 2],
      ["c", 3],
    ]);
    const seen: string[] = [];
    setImmediate(() => {
      map.delete("c");
      map.set("d", 4);
    });
    const pass = forEachInSlices(map, ([key]) => seen.push(key), 1);
    await pass;
    expect(seen).toEqual(["a", "b", "d"]);
  });

  it("should hold the loop for at most the default slice size", async () => {
    let visited = 0;
    let visitedAtFirstTurn: number | undefined;
    const items = Array.from({ length: defaultSliceSize * 3 }, (_, i) => i);
    const firstTurn = nextTurn().then(() => (visitedAtFirstTurn = visited));
    const pass = forEachInSlices(items, () => visited++);
    await Promise.all([firstTurn, pass]);
    expect(visitedAtFirstTurn).toBe(defaultSliceSize);
    expect(visited).toBe(defaultSliceSize * 3);
  });
});

import { describe, expect, it } from "vitest";
import { createCoalescedReads } from "./coalesced-reads.js";

/** A read the test answers by hand: the keys of each call, and how to end it. */
function manualReads(values: Record<string, number>) {
  const calls: Array<{ keys: string[]; answer(): void; fail(error: Error): void }> = [];
  const read = (keys: string[]) =>
    new Promise<Map<string, number>>((resolve, reject) => {
      calls.push({
        keys,
        answer: () => resolve(new Map(keys.filter((key) => key in values).map((key) => [key, values[key]!]))),
        fail: reject,
      });
    });
  return { calls, read };
}

/** Lets every pending promise job, tick and I/O callback run: the next turn of the event loop. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("createCoalescedReads", () => {
  it("should send a call made while idle within the same turn of the event loop, alone", async () => {
    const { calls, read } = manualReads({ a: 1 });
    const reads = createCoalescedReads({ read, maxBatchSize: 256, maxReadsInFlight: 1 });
    const a = reads.load("a");
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"]]);
    calls[0]!.answer();
    expect(await a).toBe(1);
  });

  it("should serve the calls made while a read is in flight with one read of their distinct keys once it returns", async () => {
    const { calls, read } = manualReads({ a: 1, b: 2, c: 3 });
    const reads = createCoalescedReads({ read, maxBatchSize: 256, maxReadsInFlight: 1 });
    const first = reads.load("a");
    await nextTurn();
    const later = [reads.load("b"), reads.load("missing"), reads.load("b")];
    await nextTurn();
    const c = reads.load("c");
    await nextTurn();
    // Still one read: the others wait for it.
    expect(calls.map((call) => call.keys)).toEqual([["a"]]);
    calls[0]!.answer();
    expect(await first).toBe(1);
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"], ["b", "missing", "c"]]);
    calls[1]!.answer();
    expect(await Promise.all([...later, c])).toEqual([2, undefined, 2, 3]);
  });

  it("should never answer a call from a read that started before it", async () => {
    const values: Record<string, number> = { a: 1 };
    const { calls, read } = manualReads(values);
    const reads = createCoalescedReads({ read, maxBatchSize: 256, maxReadsInFlight: 1 });
    const before = reads.load("a");
    await nextTurn();
    const after = reads.load("a"); // made while the first read is in flight
    calls[0]!.answer();
    expect(await before).toBe(1);
    values.a = 2; // written after the first read
    await nextTurn();
    expect(calls).toHaveLength(2);
    calls[1]!.answer();
    expect(await after).toBe(2);
  });

  it("should put at most maxBatchSize calls in one read", async () => {
    const { calls, read } = manualReads({ a: 1, b: 2, c: 3, d: 4, e: 5 });
    const reads = createCoalescedReads({ read, maxBatchSize: 2, maxReadsInFlight: 1 });
    const first = reads.load("a");
    await nextTurn();
    const waiting = ["b", "c", "d", "e"].map((key) => reads.load(key));
    calls[0]!.answer();
    await first;
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"], ["b", "c"]]);
    calls[1]!.answer();
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"], ["b", "c"], ["d", "e"]]);
    calls[2]!.answer();
    expect(await Promise.all(waiting)).toEqual([2, 3, 4, 5]);
  });

  it("should have at most maxReadsInFlight reads in flight, and start a waiting one as soon as any returns", async () => {
    const { calls, read } = manualReads({ a: 1, b: 2, c: 3, d: 4 });
    const reads = createCoalescedReads({ read, maxBatchSize: 256, maxReadsInFlight: 2 });
    const a = reads.load("a");
    await nextTurn();
    const b = reads.load("b");
    await nextTurn();
    const [c, d] = [reads.load("c"), reads.load("d")];
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"], ["b"]]);
    calls[1]!.answer();
    expect(await b).toBe(2);
    await nextTurn();
    expect(calls.map((call) => call.keys)).toEqual([["a"], ["b"], ["c", "d"]]);
    calls[0]!.answer();
    calls[2]!.answer();
    expect(await Promise.all([a, c, d])).toEqual([1, 3, 4]);
  });

  it("should reject every call of a failed read with its error, and serve the next calls with a new read", async () => {
    const { calls, read } = manualReads({ a: 1, b: 2 });
    const reads = createCoalescedReads({ read, maxBatchSize: 256, maxReadsInFlight: 1 });
    const first = reads.load("a");
    await nextTurn();
    const failing = [reads.load("a"), reads.load("b"), reads.load("b")].map((call) => call.then(() => "answered", (error: unknown) => error));
    calls[0]!.answer();
    await first;
    await nextTurn();
    const broken = new Error("database unreachable");
    calls[1]!.fail(broken);
    const outcomes = await Promise.all(failing);
    expect(outcomes).toHaveLength(3);
    for (const outcome of outcomes) expect(outcome).toBe(broken);
    const again = reads.load("b");
    await nextTurn();
    expect(calls).toHaveLength(3);
    calls[2]!.answer();
    expect(await again).toBe(2);
  });

  it("should refuse a batch size or reads in flight below 1", () => {
    const { read } = manualReads({});
    expect(() => createCoalescedReads({ read, maxBatchSize: 0, maxReadsInFlight: 1 })).toThrow(RangeError);
    expect(() => createCoalescedReads({ read, maxBatchSize: 1, maxReadsInFlight: 0 })).toThrow(RangeError);
  });
});

import { describe, expect, it } from "vitest";
import { Histogram, Registry } from "prom-client";
import { createTallyHistogram } from "./tally-histogram.js";

describe("tally histogram", () => {
  it("should write the same text as prom-client's Histogram for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const ours = new Registry();
    const theirs = new Registry();
    const tally = createTallyHistogram({ name: "h_seconds", help: "h.", labelName: "rpc", buckets, registry: ours });
    const reference = new Histogram({ name: "h_seconds", help: "h.", labelNames: ["rpc"], buckets, registers: [theirs] });
    tally.zero("a/Zero");
    reference.zero({ rpc: "a/Zero" });
    // On a bound, between bounds, below the first and above the last (+Inf only).
    for (const [rpc, value] of [["a/B", 0.001], ["a/B", 0.005], ["a/B", 0.0001], ["a/C", 7], ["a/B", 1]] as const) {
      tally.observe(rpc, value);
      reference.observe({ rpc }, value);
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('h_seconds_bucket{le="0.001",rpc="a/B"} 2');
    expect(text).toContain('h_seconds_count{rpc="a/Zero"} 0');
  });

  it("should empty on the registry's resetMetrics", async () => {
    const registry = new Registry();
    const tally = createTallyHistogram({ name: "h_seconds", help: "h.", labelName: "rpc", buckets: [1], registry });
    tally.observe("a/B", 0.5);
    registry.resetMetrics();
    expect(await registry.metrics()).not.toContain("a/B");
  });
});

/**
 * What recording one finished RPC on the relay's metrics costs: relay_rpc_requests_total plus
 * relay_rpc_duration_seconds as the observe interceptor records them, beside prom-client
 * labels() children of the same metrics (what the interceptor used before) and an empty loop,
 * in one process, alternating rounds. Reported as nanoseconds per call and the ratio.
 *
 *   npm run bench:metrics -- [--calls 2000000] [--rounds 7]
 */
import { parseArgs } from "node:util";
import { Counter, Histogram, Registry } from "prom-client";
import { createRelayMetrics } from "../src/server/ops/metrics.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "2000000" }, rounds: { type: "string", default: "7" } } });
const calls = Math.min(Math.max(Number(values.calls), 1000), 50_000_000);
const rounds = Math.min(Math.max(Number(values.rounds), 1), 50);

const rpc = "relay.v1.RelayService/Lookup";
const registry = new Registry();
const counter = new Counter({ name: "relay_rpc_requests_total", help: "c", labelNames: ["rpc", "code"], registers: [registry] });
const histogram = new Histogram({
  name: "relay_rpc_duration_seconds",
  help: "h",
  labelNames: ["rpc"],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});
const counterChild = counter.labels({ rpc, code: "ok" });
const histogramChild = histogram.labels({ rpc });
const metrics = createRelayMetrics({ processMetrics: false });

// Durations spread over the first buckets, as Lookups are; the sum keeps the loop from being dropped.
let sink = 0;
const time = (record: (seconds: number) => void): number => {
  const started = performance.now();
  for (let i = 0; i < calls; i++) record((i & 7) * 0.0003);
  return ((performance.now() - started) * 1e6) / calls;
};
const variants = {
  "empty loop": (seconds: number) => void (sink += seconds),
  "prom-client children": (seconds: number) => {
    counterChild.inc();
    histogramChild.observe(seconds);
  },
  relay: (seconds: number) => {
    metrics.countRequest(rpc, "ok");
    metrics.duration.observe(rpc, seconds);
  },
};
const samples = new Map<string, number[]>(Object.keys(variants).map((name) => [name, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, record] of Object.entries(variants)) samples.get(name)!.push(time(record));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const ns = Object.fromEntries([...samples].map(([name, xs]) => [name, median(xs)]));
const loop = ns["empty loop"]!;
for (const [name, value] of Object.entries(ns)) console.log(`${name}: ${value.toFixed(0)} ns per call (median of ${rounds} rounds of ${calls})`);
console.log(`relay / prom-client children, empty loop subtracted: ${((ns.relay! - loop) / (ns["prom-client children"]! - loop)).toFixed(3)}${sink < 0 ? "" : ""}`);

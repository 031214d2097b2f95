/**
 * A Prometheus histogram with one label whose observations are plain number arrays, handed to
 * the registry only when it is scraped. prom-client's Histogram validates and hashes its labels
 * on every observe, even through a labels() child; on the relay's hot path (one observation per
 * RPC) that cost more than the rest of the observe interceptor. The scrape output is the same
 * text prom-client's Histogram writes.
 */
import type { Metric, Registry } from "prom-client";

/** Options of {@link createTallyHistogram}. */
export interface TallyHistogramOptions<L extends string> {
  /** Metric name, as for prom-client (no default). */
  name: string;
  /** HELP text (no default). */
  help: string;
  /** The one label's name (no default). */
  labelName: L;
  /** Upper bounds in ascending order; +Inf is implicit, as in prom-client (no default). */
  buckets: readonly number[];
  /** Registry it is exported from (no default: every relay keeps its own registry). */
  registry: Registry;
}

/** A histogram counted in plain numbers; see {@link createTallyHistogram}. */
export interface TallyHistogram {
  /** Counts one observation under the label value; the first one creates the series. */
  observe(label: string, value: number): void;
  /** Creates the series at zero so it is exported before the first observation. */
  zero(label: string): void;
}

interface Series {
  /** Per-bucket counts, not cumulative; the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Creates a histogram counted in plain numbers and registers it on options.registry. */
export function createTallyHistogram<L extends string>(options: TallyHistogramOptions<L>): TallyHistogram {
  const { name, help, labelName } = options;
  const bounds = [...options.buckets];
  const series = new Map<string, Series>();
  const seriesOf = (label: string): Series => {
    let found = series.get(label);
    if (found === undefined) series.set(label, (found = { counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 }));
    return found;
  };
  const values = () => {
    const out: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    for (const [label, { counts, sum, count }] of series) {
      let cumulative = 0;
      for (let i = 0; i < bounds.length; i++) {
        cumulative += counts[i]!;
        // Label order as prom-client writes it: le first, then the series' own label.
        out.push({ value: cumulative, labels: { le: bounds[i]!, [labelName]: label }, metricName: `${name}_bucket` });
      }
      out.push({ value: count, labels: { le: "+Inf", [labelName]: label }, metricName: `${name}_bucket` });
      out.push({ value: sum, labels: { [labelName]: label }, metricName: `${name}_sum` });
      out.push({ value: count, labels: { [labelName]: label }, metricName: `${name}_count` });
    }
    return out;
  };
  // The registry reads a metric through get() (and reset() on resetMetrics); this object offers
  // exactly what prom-client's own metrics offer there.
  const metric = {
    name,
    help,
    type: "histogram" as const,
    aggregator: "sum" as const,
    get: async () => ({ name, help, type: "histogram" as const, aggregator: "sum" as const, values: values() }),
    reset: () => series.clear(),
  };
  options.registry.registerMetric(metric as unknown as Metric);

  return {
    observe(label, value) {
      const s = seriesOf(label);
      // Linear search: a dozen bounds, most observations land in the first few.
      let i = 0;
      while (i < bounds.length && value > bounds[i]!) i++;
      s.counts[i]!++;
      s.sum += value;
      s.count++;
    },
    zero(label) {
      const s = seriesOf(label);
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    },
  };
}

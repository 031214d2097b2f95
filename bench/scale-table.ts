/**
 * Renders bench/scale.ts runs (bench/results/*.json) as the Markdown tables of
 * docs/BENCHMARKS.md: for each number of peers, its latest run with both the relay and the floor,
 * each figure beside the floor's and their ratio.
 */

interface Latencies {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

interface Target {
  name: string;
  startMs: number;
  storm?: { allOnline: boolean; online: number; ms: number; attemptsPerPeer: number; serverCpuPerPeerUs: number; timeToOnline: Latencies; serverCores?: number; loadgenCores?: number };
  memory?: { perPeerKiB: number; connected: number; rssKiB: number };
  heartbeat?: { windowS: number; ratePerS: number; errors: number; roundTrip: Latencies };
  lookup?: { connections: number; inFlight: number; protocols: Record<string, { callsPerS: number; serverCpuPerCallUs: number; errors: Record<string, number> }>; error?: string };
  restart?: { listenMs: number; acceptMs?: number; allBack: boolean; back: number; ms: number; attemptsPerPeer: number; attemptsPerPeerAfterListen: number; resumedShare: number };
  error?: string;
}

/** One recorded run. */
export interface ScaleRun {
  command: string;
  node: string;
  peers: number;
  cpus: number;
  at: string;
  targets: Target[];
}

type Row = [figure: string, value: (target: Target) => number | undefined, format: (value: number) => string];

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const fixed = (digits: number, unit = "") => (value: number) => `${value.toFixed(digits)}${unit}`;
const whole = (unit: string) => (value: number) => `${Math.round(value).toLocaleString("en-US")}${unit}`;

function rows(peers: number): Row[] {
  return [
    ["process listening after start", (t) => t.startMs, seconds],
    [`all ${peers.toLocaleString("en-US")} online after a cold-start storm`, (t) => (t.storm?.allOnline ? t.storm.ms : undefined), seconds],
    ["peers online when the storm phase ended", (t) => t.storm?.online, whole("")],
    ["storm: connection attempts per peer", (t) => t.storm?.attemptsPerPeer, fixed(2)],
    ["storm: p50 time to online", (t) => t.storm?.timeToOnline.p50Ms, seconds],
    ["storm: p99 time to online", (t) => t.storm?.timeToOnline.p99Ms, seconds],
    ["storm: server CPU per peer brought online", (t) => t.storm?.serverCpuPerPeerUs, whole(" µs")],
    ["storm: CPU the server got (cores)", (t) => t.storm?.serverCores, fixed(2)],
    ["storm: CPU of the load generator (cores)", (t) => t.storm?.loadgenCores, fixed(2)],
    ["RSS per connected peer", (t) => t.memory?.perPeerKiB, fixed(1, " KiB")],
    ["heartbeat round trip p50", (t) => t.heartbeat?.roundTrip.p50Ms, fixed(1, " ms")],
    ["heartbeat round trip p99", (t) => t.heartbeat?.roundTrip.p99Ms, fixed(1, " ms")],
    ["heartbeat round trip max", (t) => t.heartbeat?.roundTrip.maxMs, fixed(1, " ms")],
    ["Lookup calls/s, gRPC", (t) => t.lookup?.protocols.grpc?.callsPerS, whole("")],
    ["Lookup calls/s, Connect", (t) => t.lookup?.protocols.connect?.callsPerS, whole("")],
    ["server CPU per Lookup, gRPC", (t) => t.lookup?.protocols.grpc?.serverCpuPerCallUs, whole(" µs")],
    ["server CPU per Lookup, Connect", (t) => t.lookup?.protocols.connect?.serverCpuPerCallUs, whole(" µs")],
    ["kill -9 + restart: listening again", (t) => t.restart?.listenMs, seconds],
    ["kill -9 + restart: a probe connection accepted", (t) => t.restart?.acceptMs, seconds],
    [`kill -9 + restart: all ${peers.toLocaleString("en-US")} back`, (t) => (t.restart?.allBack ? t.restart.ms : undefined), seconds],
    ["kill -9 + restart: peers back when the phase ended", (t) => t.restart?.back, whole("")],
    ["kill -9 + restart: connection attempts per peer (after listening)", (t) => t.restart?.attemptsPerPeerAfterListen, fixed(2)],
    ["kill -9 + restart: TLS sessions resumed", (t) => (t.restart ? t.restart.resumedShare * 100 : undefined), whole(" %")],
  ];
}

/** The tables, newest figures per number of peers, smallest number first. */
export function renderScaleTables(runs: ScaleRun[]): string {
  const latest = new Map<number, ScaleRun>();
  for (const run of runs) {
    const names = run.targets.map((target) => target.name);
    if (!names.includes("relay") || !names.includes("floor")) continue;
    const seen = latest.get(run.peers);
    if (!seen || seen.at < run.at) latest.set(run.peers, run);
  }
  const sections: string[] = [];
  for (const run of [...latest.values()].sort((a, b) => a.peers - b.peers)) {
    const relay = run.targets.find((target) => target.name === "relay")!;
    const floor = run.targets.find((target) => target.name === "floor")!;
    const lines = [
      `### ${run.peers.toLocaleString("en-US")} peers`,
      "",
      `\`${run.command}\`, ${run.at.slice(0, 10)}, node ${run.node}, ${run.cpus} cores shared with the load generator.`,
      "",
      "| figure | relay | floor | relay / floor |",
      "|---|---|---|---|",
    ];
    for (const [figure, value, format] of rows(run.peers)) {
      const a = value(relay);
      const b = value(floor);
      if (a === undefined && b === undefined) continue;
      const ratio = a !== undefined && b !== undefined && b !== 0 ? (a / b).toFixed(2) : "—";
      lines.push(`| ${figure} | ${a === undefined ? "—" : format(a)} | ${b === undefined ? "—" : format(b)} | ${ratio} |`);
    }
    for (const target of [relay, floor]) {
      if (target.lookup?.error) lines.push("", `${target.name}: the Lookup phase failed: ${target.lookup.error}`);
      if (target.error) lines.push("", `${target.name} stopped early: ${target.error}`);
    }
    sections.push(lines.join("\n"));
  }
  return sections.join("\n\n") + "\n";
}

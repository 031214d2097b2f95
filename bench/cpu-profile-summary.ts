/**
 * Where a V8 CPU profile (`node --cpu-prof`, as `npm run bench:scale -- --profile` writes) spent
 * its time: self time by function and by layer (TLS, HTTP/2, connect, relay code, GC…), as shares
 * of the samples that were not idle.
 *
 *   npx tsx bench/cpu-profile-summary.ts <file.cpuprofile> [--top 30]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "30" } } });
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfMicros = new Map<number, number>();
profile.samples.forEach((id, i) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

/** The layer a frame belongs to, from its script URL. */
function layer(frame: ProfileNode["callFrame"]): string {
  const { url, functionName } = frame;
  if (url === "") return functionName.startsWith("(") ? functionName : "native";
  if (url.includes("node:internal/tls") || url.includes("node:tls") || url.includes("_tls_")) return "node tls";
  if (url.includes("node:internal/http2") || url.includes("node:http2")) return "node http2";
  if (url.includes("node:internal/crypto") || url.includes("node:crypto")) return "node crypto";
  if (url.startsWith("node:internal/streams") || url.startsWith("node:stream")) return "node streams";
  if (url.startsWith("node:")) return "node other";
  if (url.includes("/@connectrpc/")) return "connect";
  if (url.includes("/@bufbuild/protobuf")) return "protobuf";
  if (url.includes("/node_modules/")) return `dependency ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? ""}`;
  if (url.includes("/src/") || url.includes("/dist/")) return "relay";
  if (url.includes("/bench/")) return "bench";
  return "other";
}

const functions = new Map<string, number>();
const layers = new Map<string, number>();
let busy = 0;
for (const [id, micros] of selfMicros) {
  const node = byId.get(id)!;
  const { functionName, url, lineNumber } = node.callFrame;
  if (functionName === "(idle)") continue;
  busy += micros;
  const where = url === "" ? "" : ` ${url.replace(/^.*\/(node_modules|src|bench)\//, "$1/")}:${lineNumber + 1}`;
  const key = `${functionName || "(anonymous)"}${where}`;
  functions.set(key, (functions.get(key) ?? 0) + micros);
  layers.set(layer(node.callFrame), (layers.get(layer(node.callFrame)) ?? 0) + micros);
}
// Inclusive time of the relay's own functions: a sample counts once for every distinct relay
// function on its stack, so a handler's figure includes what it called (crypto, store, stack).
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const inclusive = new Map<string, number>();
profile.samples.forEach((id, i) => {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
    if (!url.includes("/src/") && !url.includes("/dist/")) continue;
    seen.add(`${functionName || "(anonymous)"} ${url.replace(/^.*\/(src|dist)\//, "$1/")}:${lineNumber + 1}`);
  }
  for (const key of seen) inclusive.set(key, (inclusive.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
});

const share = (micros: number) => `${((micros / busy) * 100).toFixed(1).padStart(5)} %`;
process.stdout.write(`busy: ${(busy / 1e6).toFixed(2)} s of samples\n\nby layer (self time):\n`);
for (const [name, micros] of [...layers].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${share(micros)}  ${name}\n`);
process.stdout.write(`\ntop functions (self time):\n`);
for (const [name, micros] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) process.stdout.write(`  ${share(micros)}  ${name}\n`);
process.stdout.write(`\nrelay functions (inclusive time):\n`);
for (const [name, micros] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) process.stdout.write(`  ${share(micros)}  ${name}\n`);

/**
 * What a V8 heap snapshot (`npm run bench:scale -- --heap-snapshot` writes one per server) holds,
 * by constructor: objects and their own (shallow) bytes, per connected peer, largest first. With a
 * second snapshot, the difference per peer between them (the relay's against the floor's).
 *
 *   npx tsx bench/heap-snapshot-summary.ts <a.heapsnapshot> [<b.heapsnapshot>] --peers 2000 [--top 40]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

interface Row {
  count: number;
  bytes: number;
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { peers: { type: "string", default: "1" }, top: { type: "string", default: "40" } } });
const peers = Number(values.peers);

/** Own bytes and count by "type:name" (closures by function name, objects by constructor). */
function summarise(file: string): { rows: Map<string, Row>; total: number } {
  const snapshot = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const rows = new Map<string, Row>();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const size = snapshot.nodes[i + sizeAt]!;
    let name = snapshot.strings[snapshot.nodes[i + nameAt]!]!;
    // Strings and numbers by kind, not by content.
    if (type === "string" || type === "concatenated string" || type === "sliced string" || type === "number" || type === "bigint") name = "";
    if (name.length > 60) name = name.slice(0, 57) + "...";
    const key = `${type}:${name}`;
    const row = rows.get(key) ?? { count: 0, bytes: 0 };
    row.count++;
    row.bytes += size;
    rows.set(key, row);
    total += size;
  }
  return { rows, total };
}

const kib = (bytes: number) => (bytes / 1024 / peers).toFixed(2);
const per = (count: number) => (count / peers).toFixed(2);
const top = Number(values.top);
const a = summarise(positionals[0]!);
if (positionals[1] === undefined) {
  process.stdout.write(`total ${kib(a.total)} KiB per peer\n`);
  process.stdout.write("KiB/peer  objects/peer  type:name\n");
  for (const [key, row] of [...a.rows].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, top)) process.stdout.write(`${kib(row.bytes).padStart(8)}  ${per(row.count).padStart(12)}  ${key}\n`);
} else {
  const b = summarise(positionals[1]);
  process.stdout.write(`total ${kib(a.total)} against ${kib(b.total)} KiB per peer: ${kib(a.total - b.total)} more\n`);
  process.stdout.write("Δ KiB/peer  Δ objects/peer  a KiB/peer  b KiB/peer  type:name\n");
  const keys = new Set([...a.rows.keys(), ...b.rows.keys()]);
  const diffs = [...keys].map((key) => {
    const x = a.rows.get(key) ?? { count: 0, bytes: 0 };
    const y = b.rows.get(key) ?? { count: 0, bytes: 0 };
    return { key, bytes: x.bytes - y.bytes, count: x.count - y.count, a: x.bytes, b: y.bytes };
  });
  for (const row of diffs.sort((x, y) => Math.abs(y.bytes) - Math.abs(x.bytes)).slice(0, top)) {
    process.stdout.write(`${kib(row.bytes).padStart(10)}  ${per(row.count).padStart(14)}  ${kib(row.a).padStart(10)}  ${kib(row.b).padStart(10)}  ${row.key}\n`);
  }
}

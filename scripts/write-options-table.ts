// Writes the relay's options table (generated from src/server/ops/config.ts) into
// docs/operating.md between its <!-- options:start --> and <!-- options:end --> markers.
//   npm run docs:options
import { readFileSync, writeFileSync } from "node:fs";
import { configMarkdownTable } from "../src/server/ops/config.js";

const path = new URL("../docs/operating.md", import.meta.url);
const doc = readFileSync(path, "utf8");
const start = "<!-- options:start -->";
const end = "<!-- options:end -->";
const from = doc.indexOf(start);
const to = doc.indexOf(end);
if (from < 0 || to < from) throw new Error(`docs/operating.md needs the markers ${start} and ${end}`);
writeFileSync(path, `${doc.slice(0, from + start.length)}\n${configMarkdownTable()}\n${doc.slice(to)}`);

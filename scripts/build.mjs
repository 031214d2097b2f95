// `npm run build`: src/ to dist/ as JavaScript with declarations (tsconfig.build.json), plus the
// house's page, which tsc does not copy. Incremental (dist/.tsbuildinfo), so a build with nothing
// changed takes a few seconds; the integration tests run it before every run, so the commands
// they start as processes (bin/ on dist/) are never older than src/.
//
// An incremental build alone can leave dist/ wrong in two ways, both handled here:
// - tsc compares sources with its build info, not with what is in dist/: an output deleted by
//   hand would stay missing. When one is missing, the build starts again from scratch.
// - tsc never deletes: the output of a source that was moved or deleted stays, and a bin or an
//   export could go on running it. Every file in dist/ that no source or asset makes is removed.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const ts = require("typescript");
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const project = join(root, "tsconfig.build.json");
/** Non-TypeScript files the modules read beside themselves, copied as they are. */
const assets = ["client/house/public"];

const config = ts.getParsedCommandLineOfConfigFile(project, {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"));
  },
});
const sourceDir = config.options.rootDir;
const outDir = config.options.outDir;
const buildInfo = config.options.tsBuildInfoFile;

/** What each source compiles to, without extension: `server/main` for src/server/main.ts. */
const stems = new Set(config.fileNames.map((file) => relative(sourceDir, file).split(sep).join("/").replace(/\.ts$/, "")));

/** Every file under dir, as paths relative to it with forward slashes. */
function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split(sep).join("/"));
}

function tsc() {
  const result = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", project], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

tsc();
if ([...stems].some((stem) => !existsSync(join(outDir, `${stem}.js`)))) {
  rmSync(buildInfo, { force: true });
  tsc();
}

const assetFiles = new Set();
for (const asset of assets) {
  cpSync(join(sourceDir, asset), join(outDir, asset), { recursive: true });
  for (const file of filesUnder(join(sourceDir, asset))) assetFiles.add(`${asset}/${file}`);
}

// `x.js`, `x.d.ts` and their maps all come from `x.ts`.
const stemOf = (file) => file.replace(/(\.d\.ts|\.js)(\.map)?$/, "");
const removed = [];
for (const file of filesUnder(outDir)) {
  if (join(outDir, file) === buildInfo || assetFiles.has(file) || stems.has(stemOf(file))) continue;
  rmSync(join(outDir, file));
  removed.push(file);
}
// Folders left empty by what was removed, deepest first.
for (const dir of [...new Set(removed.map((file) => dirname(join(outDir, file))))].sort((a, b) => b.length - a.length)) {
  for (let current = dir; current !== outDir && existsSync(current) && readdirSync(current).length === 0; current = dirname(current)) rmdirSync(current);
}
if (removed.length > 0) process.stdout.write(`build: removed ${removed.length} file(s) from dist/ that no source makes any more: ${removed.join(", ")}\n`);

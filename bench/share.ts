/**
 * Download throughput of `relay-peer visit` over peer TLS against curl fetching the same file
 * from the same share server, on loopback. Run: `npm run bench:share -- [MiB] [rounds]`
 * (default 512 MiB, 5 rounds).
 *
 * The share runs as its own process (`relay-peer share`, compiled build). Each round runs, in
 * turn, `visit --output` and `curl -o` for the large file and for an empty one. A command's
 * fixed cost (starting, registering, looking up and dialing for visit; starting and the TLS
 * handshake for curl) is its time for the empty file, so the transfer time is the large
 * file's time minus the empty one's, and throughput is the size over that. curl presents bob's
 * certificate like visit does and pins alice's public key, the check visit makes with the
 * fingerprint. Loopback only; bounded by the rounds.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { loadOrCreateIdentity } from "../src/client/identity.js";
import { writeRandomFile } from "../test/support/files.js";
import { startTestRelay } from "../test/support/relay.js";

const run = promisify(execFile);
const sizeMiB = Number(process.argv[2] ?? 512);
const rounds = Number(process.argv[3] ?? 5);
const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "dist", "client", "cli", "relay-peer.js");
const maxRssModule = new URL("../test/support/max-rss.mjs", import.meta.url).href;

await run("npm", ["run", "build", "--silent"], { cwd: root });
const base = await mkdtemp(join(tmpdir(), "bench-share-"));
const relay = await startTestRelay();
try {
  const caFile = join(base, "relay-ca.pem");
  await writeFile(caFile, relay.caPem);
  const as = (name: string) => ["--relay", relay.url, "--relay-ca", caFile, "--identity", join(base, name), "--email", `${name}@example.com`];
  const files = join(base, "files");
  await mkdir(files);
  await writeRandomFile(join(files, "large.bin"), sizeMiB * 1024 * 1024);
  await writeFile(join(files, "empty.bin"), "");
  const bytes = (await stat(join(files, "large.bin"))).size;

  const share = spawn(process.execPath, [cli, "share", files, "--port", "0", "--bind", "127.0.0.1", "--address", "127.0.0.1", "--json", "--log-level", "warn", ...as("alice")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    share.once("exit", (code) => reject(new Error(`share exited with ${code}`)));
    let sharingPort = 0;
    createInterface({ input: share.stdout! }).on("line", (line) => {
      const event = JSON.parse(line) as { status: string; port?: number };
      if (event.status === "sharing") sharingPort = event.port!;
      if (event.status === "online") resolve(sharingPort);
    });
  });
  const alice = await loadOrCreateIdentity({ directory: join(base, "alice") });
  const pinned = "sha256//" + createHash("sha256").update(new X509Certificate(alice.certificatePem).publicKey.export({ type: "spki", format: "der" })).digest("base64");
  await run(process.execPath, [cli, "list", ...as("bob")]); // creates and registers bob
  const bob = join(base, "bob");

  async function timed(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
    const started = performance.now();
    await run(file, args, { env, maxBuffer: 1 << 20 });
    return performance.now() - started;
  }
  const visit = (name: string, output: string, env?: NodeJS.ProcessEnv) => timed(process.execPath, [cli, "visit", "alice@example.com", "--path", `/download/${name}`, "--output", output, ...as("bob")], env);
  const curl = (name: string, output: string) =>
    timed("curl", ["--silent", "--show-error", "--fail", "--insecure", "--pinnedpubkey", pinned, "--cert", join(bob, "certificate.pem"), "--key", join(bob, "private-key.pem"), "--output", output, `https://127.0.0.1:${port}/download/${name}`]);

  const times = { visit: { large: [] as number[], empty: [] as number[] }, curl: { large: [] as number[], empty: [] as number[] } };
  const output = join(base, "out.bin");
  for (let round = 0; round < rounds; round += 1) {
    times.visit.empty.push(await visit("empty.bin", output));
    times.visit.large.push(await visit("large.bin", output));
    if ((await stat(output)).size !== bytes) throw new Error("visit saved a short file");
    times.curl.empty.push(await curl("empty.bin", output));
    times.curl.large.push(await curl("large.bin", output));
    if ((await stat(output)).size !== bytes) throw new Error("curl saved a short file");
  }
  // Peak memory of visit for the large file against the empty one, through a preloaded reporter.
  const rssFile = join(base, "rss");
  const rssEnv = { ...process.env, RELAY_MAX_RSS_FILE: rssFile, NODE_OPTIONS: `--import ${maxRssModule}` };
  await visit("empty.bin", output, rssEnv);
  const emptyRss = Number(await readFile(rssFile, "utf8"));
  await visit("large.bin", output, rssEnv);
  const largeRss = Number(await readFile(rssFile, "utf8"));

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const mibps = (tool: "visit" | "curl") => bytes / (1024 * 1024) / ((median(times[tool].large) - median(times[tool].empty)) / 1000);
  const lines = [
    `${sizeMiB} MiB over peer TLS on loopback, ${rounds} rounds, medians; node ${process.version}`,
    "| client | empty file (fixed cost) | large file | transfer throughput |",
    "|---|---|---|---|",
    ...(["curl", "visit"] as const).map((tool) => `| ${tool} | ${median(times[tool].empty).toFixed(0)} ms | ${median(times[tool].large).toFixed(0)} ms | ${mibps(tool).toFixed(0)} MiB/s |`),
    `visit / curl throughput: ${(mibps("visit") / mibps("curl")).toFixed(2)}`,
    `visit peak RSS: ${(emptyRss / 1024).toFixed(0)} MiB for the empty file, ${(largeRss / 1024).toFixed(0)} MiB for ${sizeMiB} MiB`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  share.kill("SIGTERM");
} finally {
  await relay.stop();
  await rm(base, { recursive: true, force: true });
}

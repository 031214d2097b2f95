/**
 * Soak: thousands of honest peers heartbeating on their own connections while a misbehaving
 * client floods, against the relay in its own process. Reports the honest peers' success rate
 * and latency, what the flood got, and the relay's memory at the end; then the same honest load
 * against a bare connect-node Heartbeat echo (no identity, store or limits): the stack's ceiling.
 *
 *   npx tsx bench/soak.ts [--peers 2000] [--seconds 60] [--beat-ms 5000] [--ceiling-seconds 20] [--flood 64]
 *   npx tsx bench/soak.ts --attack all [--peers 500] [--seconds 30]
 *
 * --attack runs the honest peers again beside each attacker of test/hostile/ instead of the
 * Lookup flood (modes: none, silent, rapid-reset, zero-window, heartbeat-streams, control-frames;
 * "all" is each in turn, "none" first as the baseline), each against a relay process of its own,
 * and prints one table row per mode: honest success rate and p99, relay peak and end memory.
 *
 * Loopback only: the relay listens on 127.0.0.1; honest peers connect from 127.0.1.1-127.0.1.250
 * (8 or so per address, as peers behind NATs), the flooder from 127.0.0.66 and 127.0.0.67.
 * Bounded: every number of peers, streams and seconds is fixed by the options.
 */
import { fork, type ChildProcess } from "node:child_process";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createSelfSignedCertificate, type CertificateAndKey } from "../src/shared/self-signed-certificate.js";
import { attackModes, runAttack, type AttackMode } from "./soak-attacks.js";

const { values } = parseArgs({
  options: {
    peers: { type: "string", default: "2000" },
    seconds: { type: "string", default: "60" },
    "beat-ms": { type: "string", default: "5000" },
    "ceiling-seconds": { type: "string", default: "20" },
    flood: { type: "string", default: "64" },
    attack: { type: "string" },
  },
});
const peerCount = Math.min(Number(values.peers), 10_000);
const seconds = Math.min(Number(values.seconds), 3600);
const beatMs = Math.max(Number(values["beat-ms"]), 100);
const ceilingSeconds = Math.min(Number(values["ceiling-seconds"]), 600);
const floodConcurrency = Math.min(Number(values.flood), 1000);

interface Server {
  child: ChildProcess;
  url: string;
  caPem: string;
}

async function startServer(mode: "relay" | "echo"): Promise<Server> {
  const child = fork(new URL("./soak-server.ts", import.meta.url).pathname, [mode], { execArgv: ["--import", "tsx", "--expose-gc"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const { port, caPem } = await new Promise<{ port: number; caPem: string }>((resolve) => child.once("message", (message) => resolve(message as { port: number; caPem: string })));
  return { child, url: `https://127.0.0.1:${port}`, caPem };
}

/** Resident memory now, without a gc first (for peaks). */
async function rssOf(server: Server): Promise<number> {
  server.child.send("rss");
  return new Promise((resolve) => server.child.once("message", (message) => resolve((message as { rss: number }).rss)));
}

async function memoryOf(server: Server): Promise<NodeJS.MemoryUsage> {
  server.child.send("memory");
  return new Promise((resolve) => server.child.once("message", (message) => resolve((message as { memory: NodeJS.MemoryUsage }).memory)));
}

async function stopServer(server: Server): Promise<void> {
  const exited = new Promise((resolve) => server.child.once("exit", resolve));
  server.child.kill("SIGKILL");
  await exited;
}

function clientFor(server: Server, identity: CertificateAndKey | undefined, sourceAddress: string): { client: Client<typeof RelayService>; close: () => void } {
  const nodeOptions = { ca: server.caPem, localAddress: sourceAddress, ...(identity ? { cert: identity.certificatePem, key: identity.privateKeyPem } : {}) };
  const sessionManager = new Http2SessionManager(server.url, { pingIntervalMs: 60_000 }, nodeOptions);
  return { client: createClient(RelayService, createGrpcTransport({ baseUrl: server.url, sessionManager })), close: () => sessionManager.abort() };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function codeName(error: unknown): string {
  return Code[ConnectError.from(error).code] ?? "unknown";
}

/** Outcome counts and latencies of one kind of call. */
class Tally {
  readonly codes = new Map<string, number>();
  readonly latencies: number[] = [];
  add(outcome: string, ms?: number): void {
    this.codes.set(outcome, (this.codes.get(outcome) ?? 0) + 1);
    if (ms !== undefined) this.latencies.push(ms);
  }
  get total(): number {
    return [...this.codes.values()].reduce((a, b) => a + b, 0);
  }
  summary(): string {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const ok = this.codes.get("ok") ?? 0;
    const rate = this.total === 0 ? "n/a" : `${((100 * ok) / this.total).toFixed(3)}%`;
    return `${this.total} calls, ${rate} ok, p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms; ${JSON.stringify(Object.fromEntries(this.codes))}`;
  }
}

const sourceOf = (i: number) => `127.0.1.${1 + (i % 250)}`;

/**
 * Honest peers: each registers (relay only), announces, then keeps one heartbeat stream and beats
 * every beatMs (first beat at a random offset), timing each beat from write to answer.
 */
async function runHonest(server: Server, identities: CertificateAndKey[], emails: string[], durationMs: number, withRelayCalls: boolean, onAllStarted?: () => void): Promise<{ beats: Tally; setup: Tally }> {
  const beats = new Tally();
  const setup = new Tally();
  // With onAllStarted, the run lasts durationMs from the moment every peer is online (or gave up).
  let deadline = onAllStarted === undefined ? performance.now() + durationMs : Number.POSITIVE_INFINITY;
  let starting = identities.length;
  const startedOne = () => {
    if (--starting === 0 && onAllStarted !== undefined) {
      deadline = performance.now() + durationMs;
      onAllStarted();
    }
  };
  await Promise.all(
    identities.map(async (identity, i) => {
      const { client, close } = clientFor(server, identity, sourceOf(i));
      let started = false;
      const markStarted = () => {
        if (!started) startedOne();
        started = true;
      };
      try {
        if (withRelayCalls) {
          // As a peer's presence loop does: retry a failed start with backoff (up to 5 tries).
          for (let attempt = 1; ; attempt++) {
            const started = performance.now();
            try {
              await client.register({ email: emails[i]!, certificatePem: identity.certificatePem });
              await client.ready({ port: 10_000 + i, addresses: ["127.0.0.2"] });
              setup.add("ok", performance.now() - started);
              break;
            } catch (error) {
              setup.add(codeName(error));
              if (attempt === 5) return;
              await new Promise((resolve) => setTimeout(resolve, 1000 * attempt * (1 + Math.random())));
            }
          }
        }
        const requests = createWritableIterable<{ broadcastId: string }>();
        const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
        // The first beat opens the stream (and, for the echo, the connection): not counted, so both
        // runs time steady-state beats only.
        void requests.write({ broadcastId: "" });
        try {
          if ((await responses.next()).done) return;
        } catch (error) {
          beats.add(codeName(error));
          return;
        }
        markStarted();
        await new Promise((resolve) => setTimeout(resolve, Math.random() * beatMs));
        while (performance.now() < deadline) {
          const started = performance.now();
          void requests.write({ broadcastId: "" });
          try {
            const answer = await responses.next();
            if (answer.done) {
              beats.add("stream ended");
              break;
            }
            beats.add("ok", performance.now() - started);
          } catch (error) {
            beats.add(codeName(error));
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, beatMs - (performance.now() - started))));
        }
        requests.close();
      } finally {
        markStarted();
        close();
      }
    }),
  );
  return { beats, setup };
}

/**
 * The misbehaving client: a registered peer calling Lookup in floodConcurrency loops as fast as
 * answers come (hits the per-certificate limit), anonymous calls from another address (the per-IP
 * limit), and a connection flood from that address (the per-IP connection limit).
 */
async function runFlood(server: Server, durationMs: number): Promise<{ lookups: Tally; anonymous: Tally }> {
  const lookups = new Tally();
  const anonymous = new Tally();
  const deadline = performance.now() + durationMs;
  const flooder = await createSelfSignedCertificate({ commonName: "flood@example.com", emails: ["flood@example.com"] });
  const { client, close } = clientFor(server, flooder, "127.0.0.66");
  await client.register({ email: "flood@example.com", certificatePem: flooder.certificatePem });
  const loop = async (call: () => Promise<unknown>, tally: Tally) => {
    while (performance.now() < deadline) {
      const started = performance.now();
      try {
        await call();
        tally.add("ok", performance.now() - started);
      } catch (error) {
        tally.add(codeName(error), performance.now() - started);
      }
    }
  };
  // 16 anonymous connections (over a per-IP limit of 64 they would be cut; here they are not).
  const anonymousClients = Array.from({ length: 16 }, () => clientFor(server, undefined, "127.0.0.67"));
  await Promise.all([
    ...Array.from({ length: floodConcurrency }, () => loop(() => client.lookup({ email: "honest-0@example.com" }), lookups)),
    ...anonymousClients.flatMap((anon) => Array.from({ length: 4 }, () => loop(() => anon.client.lookup({ email: "x@example.com" }), anonymous))),
  ]);
  close();
  for (const anon of anonymousClients) anon.close();
  return { lookups, anonymous };
}

const started = performance.now();
process.stdout.write(`soak: ${peerCount} peers, ${seconds} s, a beat every ${beatMs} ms each (${((peerCount * 1000) / beatMs).toFixed(0)} beats/s), flood ${floodConcurrency} loops\n`);
const identities = await Promise.all(Array.from({ length: peerCount }, (_, i) => createSelfSignedCertificate({ commonName: `honest-${i}@example.com`, emails: [`honest-${i}@example.com`] })));
const emails = identities.map((_, i) => `honest-${i}@example.com`);
process.stdout.write(`certificates generated in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

if (values.attack !== undefined) {
  const modes: AttackMode[] = values.attack === "all" ? [...attackModes] : (values.attack.split(",") as AttackMode[]);
  for (const mode of modes) if (!attackModes.includes(mode)) throw new Error(`unknown --attack ${mode}: one of ${attackModes.join(", ")}, or all`);
  const rows: string[] = [];
  for (const mode of modes) {
    const server = await startServer("relay");
    const start = await memoryOf(server);
    let peak = start.rss;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await rssOf(server));
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();
    // The attack starts once every honest peer is online, and lasts as long as their measured beats.
    let attack: Promise<string> = Promise.resolve("not started");
    const honest = await runHonest(server, identities, emails, seconds * 1000, true, () => {
      attack = runAttack(mode, { url: server.url, port: Number(new URL(server.url).port), caPem: server.caPem }, performance.now() + seconds * 1000);
    });
    const attacked = await attack;
    sampling = false;
    await sampler;
    const end = await memoryOf(server);
    await stopServer(server);
    const sorted = [...honest.beats.latencies].sort((a, b) => a - b);
    const rate = (tally: { codes: Map<string, number>; total: number }) => (tally.total === 0 ? "n/a" : `${((100 * (tally.codes.get("ok") ?? 0)) / tally.total).toFixed(2)} %`);
    process.stdout.write(`\n== --attack ${mode}: ${attacked}\nhonest setup: ${honest.setup.summary()}\nhonest heartbeats: ${honest.beats.summary()}\nrelay rss: start ${mib(start.rss)}, peak ${mib(peak)}, end ${mib(end.rss)} (after gc)\n`);
    rows.push(`| ${mode} | ${rate(honest.beats)} | ${percentile(sorted, 99).toFixed(1)} ms | ${mib(start.rss)} | ${mib(peak)} | ${mib(end.rss)} |`);
  }
  process.stdout.write(`\n${peerCount} honest peers, ${seconds} s per mode, a beat every ${beatMs} ms each\n\n| attack | honest heartbeats ok | heartbeat p99 | relay RSS start | peak | end (after gc) |\n|---|---|---|---|---|---|\n${rows.join("\n")}\n`);
  process.exit(0);
}

const relay = await startServer("relay");
const before = await memoryOf(relay);
const [honest, flood] = await Promise.all([runHonest(relay, identities, emails, seconds * 1000, true), runFlood(relay, seconds * 1000)]);
const after = await memoryOf(relay);
await stopServer(relay);

process.stdout.write(`\n== relay (in-memory store${process.env.SOAK_MONGODB_URI ? " -> MongoDB" : ""}), default limits\n`);
process.stdout.write(`honest setup (Register + Ready, each try): ${honest.setup.summary()}\n`);
process.stdout.write(`honest heartbeats: ${honest.beats.summary()}\n`);
process.stdout.write(`flood, registered Lookup x${floodConcurrency}: ${flood.lookups.summary()}\n`);
process.stdout.write(`flood, anonymous Lookup x64: ${flood.anonymous.summary()}\n`);
process.stdout.write(`relay memory: start rss ${mib(before.rss)} heap ${mib(before.heapUsed)}; end rss ${mib(after.rss)} heap ${mib(after.heapUsed)} (after gc)\n`);

if (ceilingSeconds > 0) {
  const echo = await startServer("echo");
  const ceiling = await runHonest(echo, identities, emails, ceilingSeconds * 1000, false);
  const echoMemory = await memoryOf(echo);
  await stopServer(echo);
  process.stdout.write(`\n== ceiling: bare connect-node Heartbeat echo, same peers and beat rate, no flood, ${ceilingSeconds} s\n`);
  process.stdout.write(`heartbeats: ${ceiling.beats.summary()}\n`);
  process.stdout.write(`echo server memory: end rss ${mib(echoMemory.rss)} heap ${mib(echoMemory.heapUsed)} (after gc)\n`);
}

import { readFile } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { formatListenAddress, type ListenAddress } from "../../shared/listen-address.js";
import { announcedAddresses } from "../addresses.js";
import { createDialer, type DialResult, type DialStrategy } from "../dialer.js";
import { describeError } from "../errors.js";
import { loadOrCreateIdentity } from "../identity.js";
import { createPresence, type PresenceStatusEvent } from "../presence.js";
import { createRelayClient, peerToJson, type PresenceChange, type RelayClient } from "../relay-client.js";
import { backoffDelay } from "../backoff.js";
import { sleep, systemClock } from "../../shared/clock.js";
import { peerConnectionErrorOf } from "../share/peer-error.js";
import { readPeerBody, type PeerStream } from "../share/peer-request.js";
import { hostPort } from "../share/peer-tls.js";
import { createShareServer } from "../share/share-server.js";
import { createVisitorCheck } from "../share/visitor-check.js";
import { createHouseServer } from "../house/house-server.js";
import { createPeerBoard } from "../house/peer-board.js";
import type { CliIo, Command } from "./relay-peer.js";

/**
 * What `relay-peer` commands do once their usage is checked. Kept apart from the entry module
 * (relay-peer.ts: options, usage, help) so that `--help` and usage errors answer without
 * loading Connect, the certificate code and the client library.
 */

type ShareOptions = { directory: string; port: number; addresses: string[] | undefined; binds: string[] | undefined; allow: string[]; logger: Logger };
type VisitOptions = { path: string; healthPath: string; strategy: DialStrategy; output?: string };
type HouseOptions = { listen: ListenAddress; refreshMs: number; logger: Logger };

/** A command's settings, resolved from flags, env and defaults by the entry module. */
export interface CommandSettings {
  relayUrl: string;
  relayCaFile?: string;
  identityDirectory: string;
  /** Needed only when the identity is first created. */
  email?: string;
  timeoutMs: number;
  json: boolean;
  pageSize: number;
  /** The positional argument: EMAIL of lookup and visit, DIR of share. */
  target?: string;
  /** The EMAIL arguments of watch. */
  targets?: string[];
  online?: { port: number; addresses: string[] | undefined };
  share?: ShareOptions;
  house?: HouseOptions;
  visit: VisitOptions;
}

/** Runs one command; resolves with the exit code, rejects with what failed. */
export async function runCommand(command: Command, settings: CommandSettings, io: CliIo): Promise<number> {
  const caFile = settings.relayCaFile;
  const relayCaPem = caFile ? await readFile(caFile, "utf8").catch((error: unknown) => Promise.reject(new Error(`cannot read --relay-ca ${caFile}: ${(error as Error).message}`))) : undefined;
  const identity = await loadOrCreateIdentity({ directory: settings.identityDirectory, ...(settings.email ? { email: settings.email } : {}) });
  const client = createRelayClient({ relayUrl: settings.relayUrl, identity, timeoutMs: settings.timeoutMs, ...(relayCaPem ? { relayCaPem } : {}) });
  const out = new Output(io, settings.json);
  try {
    switch (command) {
      case "share":
        return await share(client, out, io, settings.share!);
      case "house":
        return await house(client, out, io, settings.house!);
      case "online":
        return await online(client, out, io, settings.online!);
      case "lookup":
        return await lookup(client, out, settings.target!);
      case "list":
        return await list(client, out, settings.pageSize);
      case "watch":
        return await watch(client, out, io, settings.targets!);
      case "visit":
        return await visit(client, out, io, settings.target!, settings.visit);
    }
  } finally {
    client.close();
  }
}

/** The one line a failed command prints: what failed, and a hint when one is known. */
export function describeFailure(error: unknown): string {
  return describeError(error) + hintFor(error);
}

function hintFor(error: unknown): string {
  const message = error instanceof Error ? error.message : "";
  if (error instanceof ConnectError && /certificate|self[- ]signed|issuer/i.test(message)) return " (is --relay-ca the relay's certificate?)";
  return "";
}

async function share(client: RelayClient, out: Output, io: CliIo, options: ShareOptions): Promise<number> {
  await client.register(); // the share's visitor checks ask the relay as this peer
  const server = await createShareServer({
    directory: options.directory,
    identity: client.identity,
    visitors: createVisitorCheck({ lookup: (fingerprint) => client.getRegistration({ fingerprint }), allow: options.allow }),
    port: options.port,
    logger: options.logger,
    ...(options.binds ? { binds: options.binds } : {}),
  });
  try {
    const binds = server.addresses.map((address) => formatListenAddress({ host: address.address, port: address.port }));
    out.event({ status: "sharing", directory: server.root, port: server.port, binds, allow: options.allow }, () => `sharing ${server.root} on ${binds.join(" and ")}, ${options.allow.length > 0 ? `to ${options.allow.join(", ")}` : "to any registered peer"}`);
    return await online(client, out, io, { port: server.port, addresses: options.addresses });
  } finally {
    await server.close();
  }
}

async function house(client: RelayClient, out: Output, io: CliIo, options: HouseOptions): Promise<number> {
  await client.register();
  const dialer = createDialer({ identity: client.identity });
  // List (each refresh) finds peers; Watch turns a peer that leaves offline at once.
  const board = createPeerBoard({ client, dialer, refreshMs: options.refreshMs, logger: options.logger, watch: (emails, signal) => dialer.follow(client, emails, { signal }) });
  const server = await createHouseServer({ board, dialer, host: options.listen.host, port: options.listen.port, logger: options.logger });
  board.start();
  try {
    out.event({ status: "house", url: server.url }, () => `house for ${client.identity.email}: open ${server.url}\n(the token in this URL is the only way in, and it changes at every start)`);
    await untilStopped(io);
    return 0;
  } finally {
    board.stop();
    await server.close();
  }
}

async function online(client: RelayClient, out: Output, io: CliIo, options: { port: number; addresses: string[] | undefined }): Promise<number> {
  const addresses = announcedAddresses(options.addresses ? { override: options.addresses } : {});
  const presence = createPresence({ client, announcement: () => ({ port: options.port, addresses: options.addresses ? addresses : announcedAddresses() }) });
  const failed = new Promise<PresenceStatusEvent>((resolve) => presence.on("status", (event) => event.status === "error" && resolve(event)));
  presence.on("status", (event) => {
    if (event.status === "error") return; // reported once, as the exit line
    const { broadcast } = event;
    out.event({ status: event.status, ...(broadcast ? { broadcastId: broadcast.broadcastId, expiresAt: broadcast.expiresAt?.toISOString(), heartbeatIntervalMs: broadcast.heartbeatIntervalMs, observedAddress: broadcast.observedAddress } : {}), ...(event.error ? { error: describeError(event.error), retryInMs: event.retryInMs } : {}) }, () => {
      switch (event.status) {
        case "registering":
          return `registering ${client.identity.email} (${client.identity.fingerprint.slice(0, 16)}…)`;
        case "online":
          return `online: ${client.identity.email} at port ${options.port} on ${addresses.length > 0 ? addresses.join(", ") : "(no address)"}; relay sees ${broadcast?.observedAddress}; heartbeat every ${Math.round((broadcast?.heartbeatIntervalMs ?? 0) / 1000)} s`;
        case "reconnecting":
          return `reconnecting in ${((event.retryInMs ?? 0) / 1000).toFixed(1)} s: ${describeError(event.error)}`;
        default:
          return event.status;
      }
    });
  });
  // Ctrl-C from the moment "online" is printed must leave cleanly: the handlers go in first.
  const stopped = untilStopped(io);
  await presence.start();
  const outcome = await Promise.race([failed, stopped]);
  await presence.stop();
  if (outcome !== "stopped") throw outcome.error;
  return 0;
}

async function lookup(client: RelayClient, out: Output, email: string): Promise<number> {
  await client.register();
  const peer = await client.lookup(email);
  if (!peer) throw new Error(`${email} is not online`);
  const view = peerToJson(peer);
  out.event(view, () => describePeer(view));
  return 0;
}

async function list(client: RelayClient, out: Output, pageSize: number): Promise<number> {
  await client.register();
  const peers: Array<ReturnType<typeof peerToJson>> = [];
  for await (const peer of client.list({ pageSize })) peers.push(peerToJson(peer));
  out.event({ peers }, () => (peers.length === 0 ? "no peer is online" : peers.map(describePeer).join("\n")));
  return 0;
}

/**
 * Prints each watched peer's state, then one line per change, until interrupted. When the relay
 * ends the watch (aborted: this watcher fell behind; unavailable: the relay restarts) it says so
 * and watches again, printing the states anew.
 */
async function watch(client: RelayClient, out: Output, io: CliIo, emails: string[]): Promise<number> {
  await client.register();
  const stop = io.stopSignal ?? processStopSignal();
  let attempt = 0;
  while (!stop.aborted) {
    try {
      for await (const change of client.watch(emails, { signal: stop })) {
        attempt = 0;
        out.event(changeToJson(change), () => describeChange(change));
      }
    } catch (error) {
      if (stop.aborted) break;
      const code = ConnectError.from(error).code;
      if (code !== Code.Aborted && code !== Code.Unavailable) throw error;
      const retryInMs = backoffDelay(attempt++);
      out.event({ resync: true, error: describeError(error), retryInMs }, () => `watching again in ${(retryInMs / 1000).toFixed(1)} s: ${describeError(error)}`);
      await sleep(systemClock, retryInMs, stop).catch(() => undefined);
    }
  }
  return 0;
}

function changeToJson(change: PresenceChange): Record<string, unknown> {
  return { at: new Date().toISOString(), email: change.email, online: change.online, initial: change.initial, ...(change.peer ? { peer: peerToJson(change.peer) } : { reason: change.reason }) };
}

function describeChange(change: PresenceChange): string {
  const now = change.initial ? "  (now)" : "";
  if (change.online && change.peer) return `${change.email}  online  port ${change.peer.port}  addresses ${change.peer.addresses.join(", ") || "(none)"}${now}`;
  return `${change.email}  offline (${(change.reason ?? "unspecified").replace("_", " ")})${now}`;
}

async function visit(client: RelayClient, out: Output, io: CliIo, email: string, options: VisitOptions): Promise<number> {
  await client.register();
  const peer = await client.lookup(email);
  if (!peer) throw new Error(`${email} is not online`);
  const dialer = createDialer({ identity: client.identity, healthPath: options.healthPath, strategy: options.strategy });
  const { result, response } = await dialer.open(peer, options.path);
  if (!response) throw new Error(`${email} is ${result.state}: ${result.message ?? describeAttempts(result)}`);
  const url = `https://${hostPort(response.address, response.port)}${response.path}`;
  const summary = { email: result.email, state: result.state, address: result.address, url, attempts: result.attempts, redirects: response.redirects, status: response.status, contentType: response.headers["content-type"] };
  const answered = `${email} answered at ${result.baseUrl} (${describeAttempts(result)})${response.redirects.length > 0 ? `, redirected to ${url}` : ""}`;
  if (response.status < 200 || response.status >= 300) {
    const detail = await readPeerBody(response, 4096).then((body) => body.toString("utf8").replaceAll(/\s+/g, " ").trim(), () => "");
    throw new Error(`${email} answered GET ${options.path} with HTTP ${response.status}${detail ? `: ${detail}` : ""}`);
  }
  if (options.output) {
    const bytes = await saveBody(response, options.output);
    out.event({ ...summary, output: options.output, bytes }, () => `${answered}\nGET ${options.path}: HTTP ${response.status}, ${bytes} bytes saved to ${options.output}`);
  } else if (out.json) {
    // One JSON line holds the body, so it is read whole; --output streams any size.
    const body = await readPeerBody(response, 16 * 1024 * 1024);
    out.event({ ...summary, body: body.toString("utf8") }, () => "");
  } else {
    io.stderr.write(`${answered}\nGET ${options.path}: HTTP ${response.status}\n`);
    await pipeline(response.body, io.stdout instanceof Writable ? io.stdout : new Writable({ write: (chunk: Buffer, _encoding, done) => void (io.stdout.write(chunk), done()) }), { end: false });
  }
  return 0;
}

/** Streams a peer's body to a file; a partial file is removed when the transfer fails. */
async function saveBody(response: PeerStream, path: string): Promise<number> {
  let bytes = 0;
  response.body.on("data", (chunk: Buffer) => (bytes += chunk.length));
  try {
    await pipeline(response.body, createWriteStream(path));
  } catch (error) {
    await rm(path, { force: true });
    throw peerConnectionErrorOf(error, `${hostPort(response.address, response.port)}${response.path}`);
  }
  const expected = Number(response.headers["content-length"]);
  if (Number.isFinite(expected) && expected !== bytes) {
    await rm(path, { force: true });
    throw new Error(`the transfer ended after ${bytes} of ${expected} bytes`);
  }
  return bytes;
}

function describeAttempts(result: DialResult): string {
  return result.attempts.length === 0 ? "nothing to dial" : "tried " + result.attempts.map((attempt) => `${attempt.address} ${attempt.outcome}`).join(", ");
}

function describePeer(peer: ReturnType<typeof peerToJson>): string {
  const addresses = (peer.addresses as string[]).join(", ") || "(none)";
  return `${peer.email}  port ${peer.port}  addresses ${addresses}  observed ${peer.observedAddress || "-"}  expires ${peer.expiresAt}`;
}

/** Human lines, or one JSON object per line with --json. */
class Output {
  constructor(
    private readonly io: CliIo,
    readonly json: boolean,
  ) {}
  event(value: object, human: () => string): void {
    this.io.stdout.write((this.json ? JSON.stringify(value) : human()) + "\n");
  }
}

/** Resolves when the command is asked to stop: SIGINT or SIGTERM, or the test's signal. */
function untilStopped(io: CliIo): Promise<"stopped"> {
  const stop = io.stopSignal ?? processStopSignal();
  return new Promise((resolve) => (stop.aborted ? resolve("stopped") : stop.addEventListener("abort", () => resolve("stopped"), { once: true })));
}

function processStopSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return controller.signal;
}

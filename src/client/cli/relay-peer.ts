import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ConnectError } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { formatListenAddress } from "../../shared/listen-address.js";
import { announcedAddresses } from "../addresses.js";
import { createDialer, type DialResult, type DialStrategy } from "../dialer.js";
import { describeError } from "../errors.js";
import { loadOrCreateIdentity } from "../identity.js";
import { createPresence, type PresenceStatusEvent } from "../presence.js";
import { createRelayClient, peerToJson, type RelayClient } from "../relay-client.js";
import { peerConnectionErrorOf } from "../share/peer-error.js";
import { readPeerBody, type PeerStream } from "../share/peer-request.js";
import { hostPort } from "../share/peer-tls.js";
import { createShareServer } from "../share/share-server.js";
import { createVisitorCheck } from "../share/visitor-check.js";

/**
 * `relay-peer`: the peer side of the relay from a shell. Every command loads (or on first use
 * creates) the identity, registers it (idempotent), then does its one thing. Failures print
 * one line on stderr and exit non-zero: 1 for a failed operation, 2 for a usage error.
 */

interface Option {
  type: "string" | "boolean";
  multiple?: boolean;
  env?: string;
  default?: string;
  help: string;
  /** Commands it applies to; global when absent. */
  commands?: Command[];
}

type Command = "share" | "online" | "lookup" | "list" | "visit";
const commands: Record<Command, { usage: string; help: string }> = {
  share: { usage: "share DIR [--port P] [--bind A ...] [--allow EMAIL ...]", help: "serve DIR read-only over peer TLS to peers the relay vouches for, and announce it like online until interrupted" },
  online: { usage: "online --port P [--address A ...]", help: "register, announce port P on this machine's addresses (or exactly the --address ones), heartbeat until interrupted" },
  lookup: { usage: "lookup EMAIL", help: "show an online peer" },
  list: { usage: "list", help: "list every online peer" },
  visit: { usage: "visit EMAIL [--path /api/files] [--output FILE]", help: "find a peer, dial its addresses over peer TLS (GET /health), GET --path from the one that answered: the body to stdout, or streamed to FILE" },
};

/** The share's port when --port is not given: fixed, so a firewall or router rule can name it. */
const defaultSharePort = 8445;

function defaultIdentityDirectory(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "relay-peer");
}

/** The options table: the one place flags, env vars, defaults and help are defined. */
const options = {
  relay: { type: "string", env: "RELAY_URL", default: "https://127.0.0.1:8443", help: "the relay's URL" },
  "relay-ca": { type: "string", env: "RELAY_CA", help: "PEM file of the relay's certificate or CA to trust (default: the system's CAs)" },
  identity: { type: "string", env: "RELAY_IDENTITY", help: "identity directory (default: $XDG_CONFIG_HOME/relay-peer or ~/.config/relay-peer)" },
  email: { type: "string", env: "RELAY_EMAIL", help: "your email; needed only when the identity is first created" },
  json: { type: "boolean", help: "machine-readable output: one JSON object per line" },
  "timeout-ms": { type: "string", env: "RELAY_TIMEOUT_MS", default: "10000", help: "deadline of each relay call" },
  port: { type: "string", commands: ["online", "share"], help: `TCP port your server listens on (share: default ${defaultSharePort}; 0 picks a free one)` },
  address: { type: "string", multiple: true, commands: ["online", "share"], help: "announce exactly this IP literal (repeatable) instead of the gathered addresses" },
  bind: { type: "string", multiple: true, commands: ["share"], help: "listen on this IP literal (repeatable); default 0.0.0.0 and ::, every interface" },
  allow: { type: "string", multiple: true, commands: ["share"], help: "only this registered email may read (repeatable); default any peer registered with the relay" },
  "log-level": { type: "string", env: "RELAY_PEER_LOG_LEVEL", default: "info", commands: ["share"], help: "JSON logs on stderr: debug, info, warn, error or silent" },
  path: { type: "string", default: "/api/files", commands: ["visit"], help: "path to GET once the peer answers, for example /content/notes.txt" },
  output: { type: "string", commands: ["visit"], help: "stream the body to this file instead of stdout" },
  "health-path": { type: "string", default: "/health", commands: ["visit"], help: "path of the peer's health check" },
  strategy: { type: "string", default: "staggered", commands: ["visit"], help: "sequential or staggered (Happy Eyeballs)" },
  "page-size": { type: "string", default: "100", commands: ["list"], help: "peers per List call" },
  help: { type: "boolean", help: "this text" },
} satisfies Record<string, Option>;
type OptionName = keyof typeof options;

/** Where the CLI reads and writes; a test passes its own. */
export interface CliIo {
  /** Where output goes; `visit` writes a body's bytes here, respecting backpressure when it is a stream. */
  stdout: { write(chunk: string | Uint8Array): unknown };
  stderr: { write(text: string): unknown };
  env: NodeJS.ProcessEnv;
  /** Ends `online`. Default: SIGINT or SIGTERM. */
  stopSignal?: AbortSignal;
}

/** A usage problem: exit 2. */
class UsageError extends Error {}

/** Runs one command; resolves with the exit code. Never throws. */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const json = argv.includes("--json");
  try {
    return await run(argv, io);
  } catch (error) {
    const line = error instanceof UsageError ? `${error.message} (see relay-peer --help)` : describeError(error) + hintFor(error);
    io.stderr.write(`relay-peer: ${line}\n`);
    if (json) io.stdout.write(JSON.stringify({ error: line }) + "\n");
    return error instanceof UsageError ? 2 : 1;
  }
}

function hintFor(error: unknown): string {
  const message = error instanceof Error ? error.message : "";
  if (error instanceof ConnectError && /certificate|self[- ]signed|issuer/i.test(message)) return " (is --relay-ca the relay's certificate?)";
  return "";
}

async function run(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(options).map(([name, option]) => [name, { type: option.type, ...("multiple" in option ? { multiple: true } : {}) }])),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split("\n")[0]! : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    io.stdout.write(helpText());
    return values.help ? 0 : 2;
  }
  const command = positionals[0] as Command;
  if (!(command in commands)) throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}`);
  for (const [name, option] of Object.entries(options) as Array<[OptionName, Option]>) {
    if (values[name] !== undefined && option.commands && !option.commands.includes(command)) throw new UsageError(`--${name} does not apply to ${command}`);
  }
  const get = (name: OptionName): string | undefined => {
    const option: Option = options[name];
    const value = values[name];
    if (typeof value === "string") return value;
    return (option.env ? io.env[option.env] : undefined) || option.default;
  };
  const wantArgs = command === "lookup" || command === "visit" || command === "share" ? 1 : 0;
  if (positionals.length - 1 !== wantArgs) throw new UsageError(`usage: relay-peer ${commands[command].usage}`);

  // Usage is checked before anything touches the identity directory or the network.
  const timeoutMs = positiveInteger(get("timeout-ms")!, "--timeout-ms");
  const onlineOptions = command === "online" ? { port: portNumber(get("port"), command), addresses: addressList(values.address as string[] | undefined) } : undefined;
  const shareOptions =
    command === "share"
      ? {
          directory: positionals[1]!,
          port: portNumber(get("port") ?? String(defaultSharePort), command),
          addresses: addressList(values.address as string[] | undefined),
          binds: bindList(values.bind as string[] | undefined),
          allow: emailList(values.allow as string[] | undefined),
          logger: loggerOf(get("log-level")!),
        }
      : undefined;
  const pageSize = positiveInteger(get("page-size")!, "--page-size");
  const visitOptions = { path: requestPath(get("path")!), healthPath: get("health-path")!, strategy: strategyOf(get("strategy")!), ...(get("output") ? { output: get("output")! } : {}) };

  const caFile = get("relay-ca");
  const relayCaPem = caFile ? await readFile(caFile, "utf8").catch((error: unknown) => Promise.reject(new Error(`cannot read --relay-ca ${caFile}: ${(error as Error).message}`))) : undefined;
  const identity = await loadOrCreateIdentity({ directory: get("identity") ?? defaultIdentityDirectory(io.env), ...(get("email") ? { email: get("email")! } : {}) });
  const client = createRelayClient({ relayUrl: get("relay")!, identity, timeoutMs, ...(relayCaPem ? { relayCaPem } : {}) });
  const out = new Output(io, values.json === true);
  try {
    switch (command) {
      case "share":
        return await share(client, out, io, shareOptions!);
      case "online":
        return await online(client, out, io, onlineOptions!);
      case "lookup":
        return await lookup(client, out, positionals[1]!);
      case "list":
        return await list(client, out, pageSize);
      case "visit":
        return await visit(client, out, io, positionals[1]!, visitOptions);
    }
  } finally {
    client.close();
  }
}

async function share(client: RelayClient, out: Output, io: CliIo, options: { directory: string; port: number; addresses: string[] | undefined; binds: string[] | undefined; allow: string[]; logger: Logger }): Promise<number> {
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
  await presence.start();
  const stop = io.stopSignal ?? processStopSignal();
  const outcome = await Promise.race([failed, new Promise<"stopped">((resolve) => (stop.aborted ? resolve("stopped") : stop.addEventListener("abort", () => resolve("stopped"), { once: true })))]);
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

async function visit(client: RelayClient, out: Output, io: CliIo, email: string, options: { path: string; healthPath: string; strategy: DialStrategy; output?: string }): Promise<number> {
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

function processStopSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return controller.signal;
}

function positiveInteger(text: string, name: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`${name} ${JSON.stringify(text)} must be a positive whole number`);
  return Number(text);
}

function addressList(addresses: string[] | undefined): string[] | undefined {
  for (const address of addresses ?? []) if (isIP(address) === 0) throw new UsageError(`--address ${JSON.stringify(address)} is not an IP literal`);
  return addresses;
}

function portNumber(text: string | undefined, command: Command): number {
  if (text === undefined) throw new UsageError("online needs --port P, the port your HTTP server listens on");
  // share may ask for a free port; online announces a server that already listens somewhere.
  if (command === "share" && text === "0") return 0;
  const port = positiveInteger(text, "--port");
  if (port > 65535) throw new UsageError(`--port ${port} is not a TCP port (1-65535)`);
  return port;
}

function bindList(binds: string[] | undefined): string[] | undefined {
  for (const bind of binds ?? []) if (isIP(bind) === 0) throw new UsageError(`--bind ${JSON.stringify(bind)} is not an IP literal`);
  return binds;
}

function emailList(emails: string[] | undefined): string[] {
  for (const email of emails ?? []) if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw new UsageError(`--allow ${JSON.stringify(email)} is not an email`);
  return (emails ?? []).map((email) => email.toLowerCase());
}

function requestPath(path: string): string {
  if (!path.startsWith("/")) throw new UsageError(`--path ${JSON.stringify(path)} must start with /`);
  return path;
}

const logLevels = new Set(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

/** JSON logs on stderr, so stdout stays the command's output. */
function loggerOf(level: string): Logger {
  if (!logLevels.has(level)) throw new UsageError(`--log-level ${JSON.stringify(level)} is not one of ${[...logLevels].join(", ")}`);
  return pino({ level, base: { name: "relay-peer" } }, pino.destination({ dest: 2, sync: true }));
}

function strategyOf(text: string): DialStrategy {
  if (text !== "sequential" && text !== "staggered") throw new UsageError(`--strategy ${JSON.stringify(text)} is not sequential or staggered`);
  return text;
}

/** The usage text, built from the command and option tables. */
export function helpText(): string {
  const commandLines = Object.values(commands).map((command) => `  relay-peer ${command.usage}\n      ${command.help}`);
  const optionLines = (Object.entries(options) as Array<[string, Option]>).map(([name, option]) => {
    const extras = [option.env ? `env ${option.env}` : "", option.default ? `default ${option.default}` : "", option.commands ? `for ${option.commands.join(", ")}` : ""].filter(Boolean).join("; ");
    return `  --${name.padEnd(12)} ${option.help}${extras ? `\n      ${extras}` : ""}`;
  });
  return `usage:\n${commandLines.join("\n")}\n\noptions:\n${optionLines.join("\n")}\n`;
}

// Run when executed directly (`npm run peer -- …`, `tsx src/client/cli/relay-peer.ts …`); bin/relay-peer.js imports main.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}

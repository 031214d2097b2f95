import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { announcedAddresses } from "../addresses.js";
import { createDialer, type DialResult, type DialStrategy } from "../dialer.js";
import { describeError } from "../errors.js";
import { loadOrCreateIdentity } from "../identity.js";
import { createPresence, type PresenceStatusEvent } from "../presence.js";
import { createRelayClient, peerToJson, type RelayClient } from "../relay-client.js";

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

type Command = "online" | "lookup" | "list" | "visit";
const commands: Record<Command, { usage: string; help: string }> = {
  online: { usage: "online --port P [--address A ...]", help: "register, announce port P on this machine's addresses (or exactly the --address ones), heartbeat until interrupted" },
  lookup: { usage: "lookup EMAIL", help: "show an online peer" },
  list: { usage: "list", help: "list every online peer" },
  visit: { usage: "visit EMAIL [--path /api/files]", help: "find a peer, dial its addresses (GET /health), GET --path from the one that answered" },
};

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
  port: { type: "string", commands: ["online"], help: "TCP port your HTTP server listens on" },
  address: { type: "string", multiple: true, commands: ["online"], help: "announce exactly this IP literal (repeatable) instead of the gathered addresses" },
  path: { type: "string", default: "/api/files", commands: ["visit"], help: "path to GET once the peer answers" },
  "health-path": { type: "string", default: "/health", commands: ["visit"], help: "path of the peer's health check" },
  strategy: { type: "string", default: "staggered", commands: ["visit"], help: "sequential or staggered (Happy Eyeballs)" },
  "page-size": { type: "string", default: "100", commands: ["list"], help: "peers per List call" },
  help: { type: "boolean", help: "this text" },
} satisfies Record<string, Option>;
type OptionName = keyof typeof options;

/** Where the CLI reads and writes; a test passes its own. */
export interface CliIo {
  stdout: { write(text: string): unknown };
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
  const wantArgs = command === "lookup" || command === "visit" ? 1 : 0;
  if (positionals.length - 1 !== wantArgs) throw new UsageError(`usage: relay-peer ${commands[command].usage}`);

  // Usage is checked before anything touches the identity directory or the network.
  const timeoutMs = positiveInteger(get("timeout-ms")!, "--timeout-ms");
  const onlineOptions = command === "online" ? { port: portNumber(get("port")), addresses: addressList(values.address as string[] | undefined) } : undefined;
  const pageSize = positiveInteger(get("page-size")!, "--page-size");
  const visitOptions = { path: get("path")!, healthPath: get("health-path")!, strategy: strategyOf(get("strategy")!) };

  const caFile = get("relay-ca");
  const relayCaPem = caFile ? await readFile(caFile, "utf8").catch((error: unknown) => Promise.reject(new Error(`cannot read --relay-ca ${caFile}: ${(error as Error).message}`))) : undefined;
  const identity = await loadOrCreateIdentity({ directory: get("identity") ?? defaultIdentityDirectory(io.env), ...(get("email") ? { email: get("email")! } : {}) });
  const client = createRelayClient({ relayUrl: get("relay")!, identity, timeoutMs, ...(relayCaPem ? { relayCaPem } : {}) });
  const out = new Output(io, values.json === true);
  try {
    switch (command) {
      case "online":
        return await online(client, out, io, onlineOptions!);
      case "lookup":
        return await lookup(client, out, positionals[1]!);
      case "list":
        return await list(client, out, pageSize);
      case "visit":
        return await visit(client, out, positionals[1]!, visitOptions);
    }
  } finally {
    client.close();
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

async function visit(client: RelayClient, out: Output, email: string, options: { path: string; healthPath: string; strategy: DialStrategy }): Promise<number> {
  await client.register();
  const peer = await client.lookup(email);
  if (!peer) throw new Error(`${email} is not online`);
  const dialer = createDialer({ healthPath: options.healthPath, strategy: options.strategy });
  const { result, response } = await dialer.fetch(peer, options.path);
  if (!response) throw new Error(`${email} is ${result.state}: ${result.message ?? describeAttempts(result)}`);
  const body = response.body.toString("utf8");
  out.event(
    { email: result.email, state: result.state, address: result.address, url: `${result.baseUrl}${options.path}`, attempts: result.attempts, status: response.status, contentType: response.headers["content-type"], body },
    () => `${email} answered at ${result.baseUrl} (${describeAttempts(result)})\nGET ${options.path}: HTTP ${response.status}\n${body}`,
  );
  if (response.status < 200 || response.status >= 300) throw new Error(`${email} answered GET ${options.path} with HTTP ${response.status}`);
  return 0;
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
    private readonly json: boolean,
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

function portNumber(text: string | undefined): number {
  if (text === undefined) throw new UsageError("online needs --port P, the port your HTTP server listens on");
  const port = positiveInteger(text, "--port");
  if (port > 65535) throw new UsageError(`--port ${port} is not a TCP port (1-65535)`);
  return port;
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

import { homedir } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { pino, type Logger } from "pino";
import type { DialStrategy } from "../dialer.js";
import { parseListenAddress, type ListenAddress } from "../../shared/listen-address.js";

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

export type Command = "share" | "house" | "online" | "lookup" | "list" | "watch" | "visit";
const commands: Record<Command, { usage: string; help: string }> = {
  share: { usage: "share DIR [--port P] [--bind A ...] [--allow EMAIL ...]", help: "serve DIR read-only over peer TLS to peers the relay vouches for, and announce it like online until interrupted" },
  house: { usage: "house [--listen 127.0.0.1:PORT]", help: "a web page on this machine (loopback only; the URL it prints carries a per-launch token) showing peers live, browsing and downloading their files over peer TLS" },
  online: { usage: "online --port P [--address A ...]", help: "register, announce port P on this machine's addresses (or exactly the --address ones), heartbeat until interrupted" },
  lookup: { usage: "lookup EMAIL", help: "show an online peer" },
  list: { usage: "list", help: "list every online peer" },
  watch: { usage: "watch EMAIL... [--json]", help: "print each peer's state now, then one line per change (online, offline and why) until interrupted" },
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
  "log-level": { type: "string", env: "RELAY_PEER_LOG_LEVEL", default: "info", commands: ["share", "house"], help: "JSON logs on stderr: debug, info, warn, error or silent" },
  listen: { type: "string", default: "127.0.0.1:0", commands: ["house"], help: "loopback address and port of the house's page (port 0: a free one)" },
  "refresh-ms": { type: "string", default: "10000", commands: ["house"], help: "how often the house asks the relay for peers and dials each again" },
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
    const line = error instanceof UsageError ? `${error.message} (see relay-peer --help)` : (await import("./relay-peer-commands.js")).describeFailure(error);
    io.stderr.write(`relay-peer: ${line}\n`);
    if (json) io.stdout.write(JSON.stringify({ error: line }) + "\n");
    return error instanceof UsageError ? 2 : 1;
  }
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
  const watched = command === "watch" ? watchList(positionals.slice(1)) : undefined;
  if (watched === undefined && positionals.length - 1 !== wantArgs) throw new UsageError(`usage: relay-peer ${commands[command].usage}`);

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
  const houseOptions = command === "house" ? { listen: loopbackListen(get("listen")!), refreshMs: positiveInteger(get("refresh-ms")!, "--refresh-ms"), logger: loggerOf(get("log-level")!) } : undefined;
  const pageSize = positiveInteger(get("page-size")!, "--page-size");
  const visitOptions = { path: requestPath(get("path")!), healthPath: get("health-path")!, strategy: strategyOf(get("strategy")!), ...(get("output") ? { output: get("output")! } : {}) };

  // Connect, the certificate code and the client library load only now: `--help` and usage
  // errors answer without them, in a fraction of the time.
  const { runCommand } = await import("./relay-peer-commands.js");
  const email = get("email");
  const relayCaFile = get("relay-ca");
  return await runCommand(
    command,
    {
      relayUrl: get("relay")!,
      identityDirectory: get("identity") ?? defaultIdentityDirectory(io.env),
      timeoutMs,
      json: values.json === true,
      pageSize,
      visit: visitOptions,
      ...(relayCaFile ? { relayCaFile } : {}),
      ...(email ? { email } : {}),
      ...(wantArgs === 1 ? { target: positionals[1]! } : {}),
      ...(watched ? { targets: watched } : {}),
      ...(onlineOptions ? { online: onlineOptions } : {}),
      ...(shareOptions ? { share: shareOptions } : {}),
      ...(houseOptions ? { house: houseOptions } : {}),
    },
    io,
  );
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

/** watch's EMAIL arguments: 1 to 256 (the relay's bound on one Watch). */
function watchList(emails: string[]): string[] {
  if (emails.length === 0) throw new UsageError(`usage: relay-peer ${commands.watch.usage}`);
  if (emails.length > 256) throw new UsageError(`watch takes at most 256 emails (${emails.length} given)`);
  for (const email of emails) if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw new UsageError(`${JSON.stringify(email)} is not an email`);
  return emails;
}

function emailList(emails: string[] | undefined): string[] {
  for (const email of emails ?? []) if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw new UsageError(`--allow ${JSON.stringify(email)} is not an email`);
  return (emails ?? []).map((email) => email.toLowerCase());
}

/** --listen of the house: an IP literal on loopback only, since the page serves your peers' files. */
function loopbackListen(text: string): ListenAddress {
  const listen = parseListenAddress(text);
  if (!listen) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT`);
  const loopback = isIP(listen.host) === 4 ? listen.host.startsWith("127.") : listen.host === "::1";
  if (!loopback) throw new UsageError(`--listen ${JSON.stringify(text)} is not a loopback address (127.0.0.1 or [::1]): the house serves your peers' files to whoever can reach it`);
  return listen;
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

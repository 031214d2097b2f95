/**
 * The relay's configuration as data: one table, {@link relayOptions}, holds every option's flag,
 * env var, type, default, unit, validation and help text. It produces `--help`, parses flags and
 * env vars, validates them (an error names the flag and the bad value), and generates the options
 * table of docs/operating.md (a test keeps the two in step).
 *
 * Durations and sizes keep one unit from flag to use: a duration option's value is milliseconds
 * everywhere in the code; its flag takes a number with a unit ("10s", "500ms", "2m", "1h"; a bare
 * number means seconds).
 */
import { isIP } from "node:net";
import { parseListenAddress, formatListenAddress, type ListenAddress } from "../../shared/listen-address.js";
import { defaultConnectionLimits } from "../transport/connection-limits.js";
import { defaultRateLimits } from "../transport/rate-limit.js";
import { defaultHandshakeAdmission } from "../transport/handshake-admission.js";
import { defaultLookupBatchSize, defaultLookupCacheSize } from "../store/store.js";
import { defaultRegistrationRetentionMs, defaultRegistrationsPerNetworkPerHour } from "../transport/relay-server.js";

/** One option's type: how its text becomes a value, and how its value is shown. */
export interface OptionType<T> {
  /** Human name of the type in --help and the docs ("duration", "count"…). */
  readonly name: string;
  /** Parses and validates text; throws a message (without the flag) when it is not valid. */
  parse(text: string): T;
  /** The value as a flag would take it. */
  format(value: T): string;
}

/** One row of the options table. */
export interface OptionSpec<T> {
  /** The long flag, without "--". */
  readonly flag: string;
  /** The environment variable read when the flag is absent. */
  readonly env: string;
  readonly type: OptionType<T>;
  readonly default: T;
  readonly help: string;
}

/** A configuration problem, reported as one line and exit code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Text, with an optional check. */
export function text(check?: (value: string) => string | undefined): OptionType<string> {
  return {
    name: "text",
    parse(value) {
      const problem = check?.(value);
      if (problem !== undefined) throw new Error(problem);
      return value;
    },
    format: (value) => value,
  };
}

/** A whole number from min to max, in the given unit ("connections", "requests"…). */
export function whole(min: number, max: number, unit: string): OptionType<number> {
  return {
    name: unit,
    parse(value) {
      const number = Number(value);
      if (!/^\d+$/.test(value) || number < min || number > max) throw new Error(`must be a whole number of ${unit} from ${min} to ${max}`);
      return number;
    },
    format: String,
  };
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration, held in ms; the flag takes "500ms", "10s", "2m", "1h", "30d" or bare seconds. */
export function duration(minMs: number, maxMs: number): OptionType<number> {
  return {
    name: "duration",
    parse(value) {
      const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value);
      const ms = match ? Math.round(Number(match[1]) * durationUnits[match[2] ?? "s"]!) : NaN;
      if (!match || ms < minMs || ms > maxMs) throw new Error(`must be a duration from ${formatDuration(minMs)} to ${formatDuration(maxMs)} (for example 10s, 500ms, 2m)`);
      return ms;
    },
    format: formatDuration,
  };
}

/** The shortest exact spelling of a duration: "10s", "1500ms", "2m", "30d". */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"]) if (ms > 0 && ms % durationUnits[unit]! === 0) return `${ms / durationUnits[unit]!}${unit}`;
  return `${ms}ms`;
}

/** A size in bytes; the flag takes "16KiB", "4MiB", "1GiB" or bare bytes. */
export function bytes(min: number, max: number): OptionType<number> {
  const units: Record<string, number> = { "": 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
  return {
    name: "size",
    parse(value) {
      const match = /^(\d+)(B|KiB|MiB|GiB)?$/.exec(value);
      const size = match ? Number(match[1]) * units[match[2] ?? ""]! : NaN;
      if (!match || size < min || size > max) throw new Error(`must be a size from ${formatBytes(min)} to ${formatBytes(max)} (for example 16KiB, 4MiB)`);
      return size;
    },
    format: formatBytes,
  };
}

function formatBytes(size: number): string {
  for (const [unit, factor] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) if (size > 0 && size % factor === 0) return `${size / factor}${unit}`;
  return `${size}B`;
}

/** One of a fixed set of words. */
export function choice<const T extends string>(values: readonly T[]): OptionType<T> {
  return {
    name: values.join("|"),
    parse(value) {
      if (!(values as readonly string[]).includes(value)) throw new Error(`must be one of ${values.join(", ")}`);
      return value as T;
    },
    format: (value) => value,
  };
}

/** host:port, or "off" (undefined) when offAllowed. */
export function listenAddress(offAllowed: true): OptionType<ListenAddress | undefined>;
export function listenAddress(offAllowed?: false): OptionType<ListenAddress>;
export function listenAddress(offAllowed = false): OptionType<ListenAddress | undefined> {
  return {
    name: offAllowed ? "host:port|off" : "host:port",
    parse(value) {
      if (offAllowed && value === "off") return undefined;
      const address = parseListenAddress(value);
      if (address === undefined) throw new Error(`is not host:port (for example 127.0.0.1:8443 or [::1]:8443)${offAllowed ? " or off" : ""}`);
      return address;
    },
    format: (value) => (value === undefined ? "off" : formatListenAddress(value)),
  };
}

/** A comma-separated list (a flag given several times adds to it). */
export function list(check: (item: string) => string | undefined): OptionType<string[]> {
  return {
    name: "list",
    parse(value) {
      const items = value.split(",").map((item) => item.trim()).filter((item) => item !== "");
      for (const item of items) {
        const problem = check(item);
        if (problem !== undefined) throw new Error(`${JSON.stringify(item)} ${problem}`);
      }
      return items;
    },
    format: (value) => value.join(","),
  };
}

/** A DNS name (letters, digits, hyphens; dot-separated labels) or an IP address, for a certificate's subjectAltName. */
function checkHostname(name: string): string | undefined {
  if (isIP(name.replace(/^\[|\]$/g, "")) !== 0) return undefined;
  const label = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
  return name.length <= 253 && new RegExp(`^${label}(?:\\.${label})*$`, "i").test(name) ? undefined : "is not a DNS name or an IP address";
}

function option<T>(spec: OptionSpec<T>): OptionSpec<T> {
  return spec;
}

const logLevels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/**
 * Every option of the relay. The order is the order of --help and of the docs' table. Reasons for
 * the defaults are in docs/operating.md ("Limits and timeouts").
 */
export const relayOptions = {
  listen: option({ flag: "listen", env: "RELAY_LISTEN", type: listenAddress(), default: { host: "127.0.0.1", port: 8443 }, help: "where to serve Connect, gRPC and gRPC-Web (mutual TLS)" }),
  mongodbUri: option({
    flag: "mongodb-uri",
    env: "MONGODB_URI",
    type: text((value) => (value === "" || /^mongodb(\+srv)?:\/\//.test(value) ? undefined : "must start with mongodb:// or mongodb+srv://")),
    default: "",
    help: "MongoDB URI (database from its path, default 'relay'); empty: the embedded in-memory store, lost on restart",
  }),
  lookupBatchSize: option({ flag: "lookup-batch-size", env: "RELAY_LOOKUP_BATCH_SIZE", type: whole(1, 10_000, "lookups"), default: defaultLookupBatchSize, help: "most Lookups one database query serves: above 1, Lookups that arrive while one is read go out together in the next (MongoDB store; try 256 on MongoDB, where that query is an index read); 1: one read by _id per Lookup, the faster on FerretDB, which decodes every stored broadcast for a query of several emails" }),
  lookupCacheSize: option({ flag: "lookup-cache-size", env: "RELAY_LOOKUP_CACHE_SIZE", type: whole(0, 10_000_000, "broadcasts"), default: defaultLookupCacheSize, help: "most online peers whose broadcast Lookup keeps in memory, kept true by the database's change feed (MongoDB store; about 1.5 KiB each); 0: every Lookup reads the database" }),
  tlsCert: option({ flag: "tls-cert", env: "RELAY_TLS_CERT", type: text(), default: "", help: "the relay's certificate, a PEM file; empty: generate one in --data-dir" }),
  tlsKey: option({ flag: "tls-key", env: "RELAY_TLS_KEY", type: text(), default: "", help: "the relay's private key, a PEM file (goes with --tls-cert)" }),
  tlsHostnames: option({ flag: "tls-hostname", env: "RELAY_TLS_HOSTNAMES", type: list(checkHostname), default: [] as string[], help: "a DNS name or IP address peers reach the relay by, added to the generated certificate (repeatable or comma-separated); a change regenerates it" }),
  dataDir: option({ flag: "data-dir", env: "RELAY_DATA_DIR", type: text((value) => (value === "" ? "must not be empty" : undefined)), default: ".data", help: "directory for the generated relay certificate and the TLS session ticket keys" }),
  broadcastTtlMs: option({ flag: "broadcast-ttl", env: "RELAY_BROADCAST_TTL", type: duration(1000, 7 * 86_400_000), default: 3_600_000, help: "how long a broadcast lives after Ready or a heartbeat" }),
  presenceGraceMs: option({ flag: "presence-grace", env: "RELAY_PRESENCE_GRACE", type: duration(1000, 3_600_000), default: 30_000, help: "how long a peer whose connection was lost stays online, time to reconnect to this or another instance" }),
  registrationRetentionMs: option({ flag: "registration-retention", env: "RELAY_REGISTRATION_RETENTION", type: duration(3_600_000, 3650 * 86_400_000), default: defaultRegistrationRetentionMs, help: "a registration that has not announced (Ready) for this long is deleted, freeing its email" }),
  registrationsPerNetwork: option({ flag: "registrations-per-network", env: "RELAY_REGISTRATIONS_PER_NETWORK", type: whole(0, 1_000_000, "registrations"), default: defaultRegistrationsPerNetworkPerHour, help: "new registrations per hour per source network (IPv4 address, IPv6 /64); registering again is free; 0: no limit" }),
  listVisibility: option({ flag: "list-visibility", env: "RELAY_LIST_VISIBILITY", type: choice(["all", "none"] as const), default: "all" as "all" | "none", help: "none: List answers permission_denied (Lookup by email still works)" }),
  rateLimitWindowMs: option({ flag: "rate-limit-window", env: "RELAY_RATE_LIMIT_WINDOW", type: duration(1000, 3_600_000), default: defaultRateLimits.windowSeconds * 1000, help: "length of one rate-limit counting window" }),
  rateLimitPerCertificate: option({ flag: "rate-limit-per-cert", env: "RELAY_RATE_LIMIT_PER_CERT", type: whole(0, 1_000_000, "requests"), default: defaultRateLimits.perCertificate, help: "requests (and heartbeat messages) per window per client certificate; 0: no limit" }),
  rateLimitPerIp: option({ flag: "rate-limit-per-ip", env: "RELAY_RATE_LIMIT_PER_IP", type: whole(0, 1_000_000, "requests"), default: defaultRateLimits.perIp, help: "requests per window per source address; 0: no limit" }),
  maxUnauthenticatedPerSource: option({ flag: "max-unauthenticated-per-source", env: "RELAY_MAX_UNAUTHENTICATED_PER_SOURCE", type: whole(0, 1_000_000, "connections"), default: defaultConnectionLimits.maxUnauthenticatedPerSource, help: "connections per source network (IPv4 address, IPv6 /64) not yet authenticated by a registered certificate; one more closes the oldest; 0: no limit" }),
  maxConnectionsPerCertificate: option({ flag: "max-conns-per-cert", env: "RELAY_MAX_CONNS_PER_CERT", type: whole(0, 1_000_000, "connections"), default: defaultConnectionLimits.maxConnectionsPerCertificate, help: "authenticated connections per client certificate; one more sends GOAWAY to the oldest; 0: no limit" }),
  maxConcurrentStreams: option({ flag: "max-streams", env: "RELAY_MAX_STREAMS", type: whole(1, 10_000, "streams"), default: defaultConnectionLimits.maxConcurrentStreams, help: "concurrent HTTP/2 streams per connection" }),
  maxStreamsPerCertificate: option({ flag: "max-streams-per-cert", env: "RELAY_MAX_STREAMS_PER_CERT", type: whole(0, 10_000, "streams"), default: 4, help: "open Heartbeat (and Watch) streams per client certificate, per RPC; more are refused with resource_exhausted; 0: no limit" }),
  idleTimeoutMs: option({ flag: "idle-timeout", env: "RELAY_IDLE_TIMEOUT", type: duration(0, 86_400_000), default: defaultConnectionLimits.idleTimeoutMs, help: "how long a connection may stay open with no stream before GOAWAY; 0: never" }),
  handshakeTimeoutMs: option({ flag: "handshake-timeout", env: "RELAY_HANDSHAKE_TIMEOUT", type: duration(1000, 600_000), default: defaultConnectionLimits.handshakeTimeoutMs, help: "how long a connection may take from TCP accept (through TLS and the HTTP/2 preface) to its first request before it is destroyed" }),
  requestTimeoutMs: option({ flag: "request-timeout", env: "RELAY_REQUEST_TIMEOUT", type: duration(0, 3_600_000), default: defaultConnectionLimits.requestTimeoutMs, help: "how long a unary request body may take to arrive before the stream is reset; 0: never" }),
  writeTimeoutMs: option({ flag: "write-timeout", env: "RELAY_WRITE_TIMEOUT", type: duration(0, 3_600_000), default: defaultConnectionLimits.writeTimeoutMs, help: "how long a response may wait for the client to read it before the stream is reset (and a stalled socket destroyed); 0: never" }),
  maxSessionBufferBytes: option({ flag: "max-session-buffer", env: "RELAY_MAX_SESSION_BUFFER", type: bytes(0, 1024 ** 3), default: defaultConnectionLimits.maxSessionBufferBytes, help: "unsent response bytes one connection may hold; the stream going over it is reset; 0: no limit" }),
  maxClientResetsPerMinute: option({ flag: "max-client-resets", env: "RELAY_MAX_CLIENT_RESETS", type: whole(0, 900, "resets"), default: defaultConnectionLimits.maxClientResetsPerMinute, help: "streams a client may reset per connection per minute; one more ends the connection (GOAWAY, then closed); 0: no limit" }),
  maxSessionMemoryMiB: option({ flag: "max-session-memory", env: "RELAY_MAX_SESSION_MEMORY", type: whole(1, 1024, "MiB"), default: defaultConnectionLimits.maxSessionMemoryMiB, help: "MiB of buffers one HTTP/2 connection may hold before new streams are refused" }),
  memoryReducer: option({ flag: "memory-reducer", env: "RELAY_MEMORY_REDUCER", type: choice(["off", "on"] as const), default: "off" as "off" | "on", help: "off: V8's memory reducer does not run, so no full collections give a storm's heap back (heartbeats held up to 87 ms at 10,000 peers) and about 3 KiB per peer more RSS stays; V8 takes this from node's command line only (--no-memory-reducer, which npm start and the Docker image give): without it, an off relay serves from one worker started with it" }),
  workers: option({ flag: "workers", env: "RELAY_WORKERS", type: whole(1, 256, "processes"), default: 1, help: "relay processes sharing the port and the database (node:cluster), one per core; more than 1 needs --mongodb-uri; worker i serves the admin listener on its port + i" }),
  listenBacklog: option({ flag: "listen-backlog", env: "RELAY_LISTEN_BACKLOG", type: whole(1, 65_535, "connections"), default: 4096, help: "connections the kernel queues before the relay accepts them (capped by net.core.somaxconn)" }),
  maxHandshakes: option({ flag: "max-handshakes", env: "RELAY_MAX_HANDSHAKES", type: whole(1, 100_000, "handshakes"), default: defaultHandshakeAdmission.maxHandshakes, help: "TLS handshakes in progress at once; later connections wait their turn" }),
  handshakeQueue: option({ flag: "handshake-queue", env: "RELAY_HANDSHAKE_QUEUE", type: whole(0, 1_000_000, "connections"), default: defaultHandshakeAdmission.maxQueued, help: "connections waiting for a handshake; more are closed at once, before TLS" }),
  handshakeQueueWaitMs: option({ flag: "handshake-queue-wait", env: "RELAY_HANDSHAKE_QUEUE_WAIT", type: duration(0, 600_000), default: defaultHandshakeAdmission.maxQueueWaitMs, help: "a connection that waited this long for its handshake is closed instead; the handshake timeout counts from the end of the wait" }),
  onboardingHoldMs: option({ flag: "onboarding-hold", env: "RELAY_ONBOARDING_HOLD", type: duration(0, 600_000), default: defaultHandshakeAdmission.maxOnboardingMs, help: "a connection keeps its handshake slot past TLS until it opens a stream other than Register or Ready, at most this long (0: freed at the end of TLS)" }),
  onboardingHoldPerSource: option({ flag: "onboarding-hold-per-source", env: "RELAY_ONBOARDING_HOLD_PER_SOURCE", type: whole(1, 100_000, "connections"), default: defaultHandshakeAdmission.maxOnboardingPerSource, help: "connections from one source network (IPv4 address, IPv6 /64) that keep their handshake slot while onboarding; the slot of any more frees at the end of TLS" }),
  drainDelayMs: option({ flag: "drain-delay", env: "RELAY_DRAIN_DELAY", type: duration(0, 3_600_000), default: 0, help: "how long shutdown keeps serving (health NOT_SERVING) before closing connections, for load balancers" }),
  shutdownTimeoutMs: option({ flag: "shutdown-timeout", env: "RELAY_SHUTDOWN_TIMEOUT", type: duration(1000, 3_600_000), default: 10_000, help: "the longest shutdown takes after the drain delay; connections still open then are destroyed" }),
  adminListen: option({ flag: "admin-listen", env: "RELAY_ADMIN_LISTEN", type: listenAddress(true), default: { host: "127.0.0.1", port: 8444 } as ListenAddress | undefined, help: "plain-HTTP admin listener (/metrics, /healthz, /readyz); off disables it" }),
  logLevel: option({ flag: "log-level", env: "RELAY_LOG_LEVEL", type: choice(logLevels), default: "info" as (typeof logLevels)[number], help: "least severe log level written (JSON lines on stdout)" }),
};

type Options = typeof relayOptions;

/** The relay's configuration: one field per row of {@link relayOptions}. */
export type RelayConfig = { -readonly [K in keyof Options]: Options[K] extends OptionSpec<infer T> ? T : never };

/** Help text listing every option with its env var and default. */
export function configHelp(): string {
  const rows = Object.values(relayOptions as Record<string, OptionSpec<unknown>>).map((spec) => {
    const shown = spec.type.format(spec.default);
    return `  --${`${spec.flag} <${spec.type.name}>`.padEnd(40)} ${spec.help}\n  ${" ".repeat(40)}  env ${spec.env}${shown === "" ? "" : `, default ${shown}`}`;
  });
  return `usage: relay [options]\n\noptions:\n${rows.join("\n")}\n  --${"help".padEnd(40)} this text\n`;
}

/** The options as a Markdown table: flag, env var, default, help (docs/operating.md holds it). */
export function configMarkdownTable(): string {
  const rows = Object.values(relayOptions as Record<string, OptionSpec<unknown>>).map((spec) => {
    const shown = spec.type.format(spec.default);
    return `| \`--${spec.flag}\` | \`${spec.env}\` | ${spec.type.name.replaceAll("|", "\\|")} | ${shown === "" ? "(empty)" : `\`${shown}\``} | ${spec.help} |`;
  });
  return ["| flag | env | type | default | what |", "|---|---|---|---|---|", ...rows].join("\n");
}

/**
 * Builds the configuration from flags, then env vars, then defaults, validating each value.
 * Flags are `--name value` or `--name=value`; a value may start with "-" (so `--broadcast-ttl -5`
 * is refused for its value, not mistaken for a flag). Returns "help" when --help was given.
 */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): RelayConfig | "help" {
  const byFlag = new Map<string, [keyof Options, OptionSpec<unknown>]>(Object.entries(relayOptions).map(([key, spec]) => [spec.flag, [key as keyof Options, spec as OptionSpec<unknown>]]));
  const given = new Map<keyof Options, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") return "help";
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}: options are --name value`);
    const entry = byFlag.get(match[1]!);
    if (entry === undefined) throw new ConfigError(`unknown option --${match[1]}`);
    let value = match[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new ConfigError(`--${match[1]} needs a value`);
      value = argv[++i]!;
    }
    given.set(entry[0], [...(given.get(entry[0]) ?? []), value]);
  }

  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(relayOptions) as Array<[keyof Options, OptionSpec<unknown>]>) {
    const flagValues = given.get(key);
    const source = flagValues !== undefined ? `--${spec.flag}` : env[spec.env] !== undefined ? spec.env : undefined;
    if (source === undefined) {
      config[key] = spec.default;
      continue;
    }
    const texts = flagValues ?? [env[spec.env]!];
    try {
      const values = texts.map((value) => spec.type.parse(value));
      // A list flag given several times adds up; any other takes its last value.
      config[key] = Array.isArray(spec.default) ? values.flat() : values[values.length - 1];
    } catch (error) {
      const bad = texts[texts.length - 1]!;
      throw new ConfigError(`${source} ${JSON.stringify(bad)} ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const result = config as RelayConfig;
  if (result.workers > 1 && result.mongodbUri === "") throw new ConfigError("--workers above 1 needs --mongodb-uri: the in-memory store is per process, so the workers would not share peers");
  if ((result.tlsCert === "") !== (result.tlsKey === "")) throw new ConfigError("--tls-cert and --tls-key go together: give both or neither");
  if (result.tlsCert !== "" && result.tlsHostnames.length > 0) throw new ConfigError("--tls-hostname names the hosts of the generated certificate: with --tls-cert, the names are those of your certificate");
  return result;
}

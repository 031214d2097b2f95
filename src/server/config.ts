import { parseArgs } from "node:util";
import { defaultConnectionLimits, type ConnectionLimits } from "./connection-limits.js";
import { defaultRateLimits, type RateLimits } from "./rate-limit.js";
import { parseListenAddress } from "./admin-server.js";

/** The relay's configuration: every field has a default, a flag, an env var and help text. */
export interface RelayConfig {
  /** host:port to listen on. */
  listenHost: string;
  listenPort: number;
  /** MongoDB URI; empty means the embedded in-memory store. */
  mongodbUri: string;
  /** PEM files of the relay's certificate and key; empty means one generated in dataDir. */
  tlsCert: string;
  tlsKey: string;
  /** Where the generated server certificate is kept. */
  dataDir: string;
  /** Broadcast lifetime after Ready or a heartbeat, seconds. */
  broadcastTtlSeconds: number;
  /** Per-IP connections, streams per connection, idle/handshake/request timeouts, session memory. */
  connectionLimits: ConnectionLimits;
  /** Requests per window per certificate and per source IP. */
  rateLimits: RateLimits;
  /** How long shutdown keeps serving (NOT_SERVING) before GOAWAY, ms. */
  drainDelayMs: number;
  logLevel: string;
  /** host:port of the admin listener (/metrics, /healthz, /readyz); empty disables it. */
  adminHost: string;
  adminPort: number;
  adminEnabled: boolean;
}

interface Field {
  flag: string;
  env: string;
  default: string;
  help: string;
}

/** The options table: the one place flags, env vars, defaults and help are defined. */
export const configFields = {
  listen: { flag: "listen", env: "RELAY_LISTEN", default: "127.0.0.1:8443", help: "host:port to serve Connect, gRPC and gRPC-Web on (mutual TLS)" },
  mongodbUri: { flag: "mongodb-uri", env: "MONGODB_URI", default: "", help: "MongoDB URI (database from its path, default 'relay'); empty: embedded in-memory store, lost on restart" },
  tlsCert: { flag: "tls-cert", env: "RELAY_TLS_CERT", default: "", help: "relay certificate PEM file; empty: generate one in --data-dir" },
  tlsKey: { flag: "tls-key", env: "RELAY_TLS_KEY", default: "", help: "relay private key PEM file (with --tls-cert)" },
  dataDir: { flag: "data-dir", env: "RELAY_DATA_DIR", default: ".data", help: "directory for the generated relay certificate" },
  broadcastTtl: { flag: "broadcast-ttl", env: "RELAY_BROADCAST_TTL", default: "3600", help: "seconds a broadcast lives after Ready or a heartbeat" },
  rateLimitWindow: { flag: "rate-limit-window", env: "RELAY_RATE_LIMIT_WINDOW", default: String(defaultRateLimits.windowSeconds), help: "seconds of one rate-limit counting window" },
  rateLimitPerCertificate: { flag: "rate-limit-per-cert", env: "RELAY_RATE_LIMIT_PER_CERT", default: String(defaultRateLimits.perCertificate), help: "requests (and heartbeat messages) per window per client certificate; 0: no limit" },
  rateLimitPerIp: { flag: "rate-limit-per-ip", env: "RELAY_RATE_LIMIT_PER_IP", default: String(defaultRateLimits.perIp), help: "requests per window per source IP; 0: no limit" },
  maxConnectionsPerIp: { flag: "max-conns-per-ip", env: "RELAY_MAX_CONNS_PER_IP", default: String(defaultConnectionLimits.maxConnectionsPerIp), help: "open connections per source IP; more are closed before TLS; 0: no limit" },
  maxStreams: { flag: "max-streams", env: "RELAY_MAX_STREAMS", default: String(defaultConnectionLimits.maxConcurrentStreams), help: "concurrent HTTP/2 streams per connection" },
  idleTimeout: { flag: "idle-timeout", env: "RELAY_IDLE_TIMEOUT", default: String(defaultConnectionLimits.idleTimeoutMs / 1000), help: "seconds a connection may stay open with no stream (no heartbeat) before GOAWAY; 0: never" },
  handshakeTimeout: { flag: "handshake-timeout", env: "RELAY_HANDSHAKE_TIMEOUT", default: String(defaultConnectionLimits.handshakeTimeoutMs / 1000), help: "seconds a TLS handshake may take" },
  requestTimeout: { flag: "request-timeout", env: "RELAY_REQUEST_TIMEOUT", default: String(defaultConnectionLimits.requestTimeoutMs / 1000), help: "seconds a unary request body may take to arrive before the stream is reset; 0: never" },
  maxSessionMemory: { flag: "max-session-memory", env: "RELAY_MAX_SESSION_MEMORY", default: String(defaultConnectionLimits.maxSessionMemoryMiB), help: "MiB of buffers one HTTP/2 connection may hold before new streams are refused" },
  drainDelay: { flag: "drain-delay", env: "RELAY_DRAIN_DELAY", default: "0", help: "seconds shutdown keeps serving (health NOT_SERVING) before closing connections, for load balancers" },
  adminListen: { flag: "admin-listen", env: "RELAY_ADMIN_LISTEN", default: "127.0.0.1:9464", help: "host:port of the plain-HTTP admin listener (/metrics, /healthz, /readyz); \"off\" disables it" },
  logLevel: { flag: "log-level", env: "RELAY_LOG_LEVEL", default: "info", help: "trace, debug, info, warn, error, fatal or silent" },
} satisfies Record<string, Field>;

/** A configuration problem, reported as one line and exit code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Help text listing every option. */
export function configHelp(): string {
  const lines = Object.values(configFields).map((field) => `  --${field.flag.padEnd(20)} ${field.help}\n  ${" ".repeat(22)} env ${field.env}${field.default ? `, default ${field.default}` : ""}`);
  return `usage: npm start -- [options]\n\noptions:\n${lines.join("\n")}\n  --help             this text\n`;
}

/**
 * Builds the configuration from flags, then env vars, then defaults, and validates it.
 * Returns "help" when --help was given.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): RelayConfig | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...Object.fromEntries(Object.values(configFields).map((field) => [field.flag, { type: "string" as const }])), help: { type: "boolean" as const } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message.split("\n")[0]! : String(error));
  }
  if (values.help) return "help";
  const get = (field: Field): string => {
    const flag = values[field.flag];
    return typeof flag === "string" ? flag : (env[field.env] ?? field.default);
  };

  const listen = get(configFields.listen);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const listenPort = Number(match?.[3]);
  if (!match || listenPort > 65535) throw new ConfigError(`--listen ${JSON.stringify(listen)} is not host:port (e.g. 127.0.0.1:8443 or [::1]:8443)`);

  const ttl = get(configFields.broadcastTtl);
  const broadcastTtlSeconds = Number(ttl);
  if (!/^\d+$/.test(ttl) || broadcastTtlSeconds < 1 || broadcastTtlSeconds > 7 * 24 * 3600) throw new ConfigError(`--broadcast-ttl ${JSON.stringify(ttl)} must be whole seconds, 1 to 604800`);

  /** A whole number from min to max. */
  const whole = (field: Field, min: number, max: number): number => {
    const text = get(field);
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min || value > max) throw new ConfigError(`--${field.flag} ${JSON.stringify(text)} must be a whole number, ${min} to ${max}`);
    return value;
  };
  const rateLimits: RateLimits = {
    windowSeconds: whole(configFields.rateLimitWindow, 1, 3600),
    perCertificate: whole(configFields.rateLimitPerCertificate, 0, 1_000_000),
    perIp: whole(configFields.rateLimitPerIp, 0, 1_000_000),
  };
  const connectionLimits: ConnectionLimits = {
    ...defaultConnectionLimits,
    maxConnectionsPerIp: whole(configFields.maxConnectionsPerIp, 0, 1_000_000),
    maxConcurrentStreams: whole(configFields.maxStreams, 1, 10_000),
    idleTimeoutMs: whole(configFields.idleTimeout, 0, 86_400) * 1000,
    handshakeTimeoutMs: whole(configFields.handshakeTimeout, 1, 600) * 1000,
    requestTimeoutMs: whole(configFields.requestTimeout, 0, 3600) * 1000,
    maxSessionMemoryMiB: whole(configFields.maxSessionMemory, 1, 1024),
  };
  const drainDelayMs = whole(configFields.drainDelay, 0, 3600) * 1000;

  const tlsCert = get(configFields.tlsCert);
  const tlsKey = get(configFields.tlsKey);
  if ((tlsCert === "") !== (tlsKey === "")) throw new ConfigError("--tls-cert and --tls-key go together: give both or neither");

  const mongodbUri = get(configFields.mongodbUri);
  if (mongodbUri !== "" && !/^mongodb(\+srv)?:\/\//.test(mongodbUri)) throw new ConfigError("--mongodb-uri must start with mongodb:// or mongodb+srv://");

  const logLevel = get(configFields.logLevel);
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) throw new ConfigError(`--log-level ${JSON.stringify(logLevel)} is not one of trace, debug, info, warn, error, fatal, silent`);

  const adminListen = get(configFields.adminListen);
  const admin = adminListen === "off" ? { host: "", port: 0 } : parseListenAddress(adminListen);
  if (!admin) throw new ConfigError(`--admin-listen ${JSON.stringify(adminListen)} is not host:port (e.g. 127.0.0.1:9464) or off`);

  return { connectionLimits, rateLimits, drainDelayMs, listenHost: match[1] ?? match[2]!, listenPort, mongodbUri, tlsCert, tlsKey, dataDir: get(configFields.dataDir), broadcastTtlSeconds, logLevel, adminHost: admin.host, adminPort: admin.port, adminEnabled: adminListen !== "off" };
}

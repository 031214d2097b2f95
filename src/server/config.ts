import { parseArgs } from "node:util";
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
  adminListen: { flag: "admin-listen", env: "RELAY_ADMIN_LISTEN", default: "127.0.0.1:9464", help: "host:port of the plain-HTTP admin listener (/metrics, /healthz, /readyz); \"off\" disables it" },
  logLevel: { flag: "log-level", env: "RELAY_LOG_LEVEL", default: "info", help: "trace, debug, info, warn, error, fatal or silent" },
} satisfies Record<string, Field>;

/** A configuration problem, reported as one line and exit code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Help text listing every option. */
export function configHelp(): string {
  const lines = Object.values(configFields).map((field) => `  --${field.flag.padEnd(16)} ${field.help}\n  ${" ".repeat(18)} env ${field.env}${field.default ? `, default ${field.default}` : ""}`);
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

  return { listenHost: match[1] ?? match[2]!, listenPort, mongodbUri, tlsCert, tlsKey, dataDir: get(configFields.dataDir), broadcastTtlSeconds, logLevel, adminHost: admin.host, adminPort: admin.port, adminEnabled: adminListen !== "off" };
}

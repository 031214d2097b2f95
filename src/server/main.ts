import { pathToFileURL } from "node:url";
import { pino, type Logger } from "pino";
import { ConfigError, configHelp, loadConfig, type RelayConfig } from "./ops/config.js";
import { formatListenAddress } from "../shared/listen-address.js";
import { MemoryStore } from "./store/memory-store.js";
import { MongoStore } from "./store/mongo-store.js";
import { createRelayServer, type RelayServer } from "./transport/relay-server.js";
import { createAdminServer, type AdminServer } from "./ops/admin-server.js";
import { loadServerCertificate, RelayCertificateError } from "./identity/relay-certificate.js";
import type { RelayStore } from "./store/store.js";

/** A relay started from its configuration, with what it owns. */
export interface RunningRelay {
  server: RelayServer;
  store: RelayStore;
  /** The admin listener, unless --admin-listen off. */
  admin: AdminServer | undefined;
  /** Stops the server, then closes the store. */
  stop(): Promise<void>;
}

/** Wires a relay from its configuration: logger, store, certificate, server. */
export async function runRelay(config: RelayConfig, logger: Logger): Promise<RunningRelay> {
  const certificate = await loadServerCertificate(config);
  if (certificate.generated) logger.info({ certificate: certificate.certificatePath, fingerprint: certificate.fingerprint }, "generated a self-signed relay certificate; peers trust it with --relay-ca");
  let store: RelayStore;
  if (config.mongodbUri === "") {
    store = new MemoryStore();
    logger.info("using the embedded in-memory store: state is lost on restart (set --mongodb-uri for MongoDB)");
  } else {
    store = await MongoStore.connect({ uri: config.mongodbUri, logger });
  }
  let server: RelayServer;
  try {
    server = await createRelayServer({
      host: config.listen.host,
      port: config.listen.port,
      tls: certificate,
      store,
      broadcastTtlSeconds: config.broadcastTtlMs / 1000,
      connectionLimits: {
        maxUnauthenticatedPerSource: config.maxUnauthenticatedPerSource,
        maxConnectionsPerCertificate: config.maxConnectionsPerCertificate,
        maxConcurrentStreams: config.maxConcurrentStreams,
        idleTimeoutMs: config.idleTimeoutMs,
        handshakeTimeoutMs: config.handshakeTimeoutMs,
        requestTimeoutMs: config.requestTimeoutMs,
        writeTimeoutMs: config.writeTimeoutMs,
        maxSessionBufferBytes: config.maxSessionBufferBytes,
        maxClientResetsPerMinute: config.maxClientResetsPerMinute,
        maxSessionMemoryMiB: config.maxSessionMemoryMiB,
      },
      rateLimits: { windowSeconds: config.rateLimitWindowMs / 1000, perCertificate: config.rateLimitPerCertificate, perIp: config.rateLimitPerIp },
      maxStreamsPerCertificate: config.maxStreamsPerCertificate,
      drainDelayMs: config.drainDelayMs,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      logger,
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  let admin: AdminServer | undefined;
  if (config.adminListen !== undefined) {
    try {
      admin = await createAdminServer({ host: config.adminListen.host, port: config.adminListen.port, registry: server.metrics.registry, readiness: server.readiness, logger });
    } catch (error) {
      await server.close();
      await store.close();
      throw error;
    }
    logger.info({ url: admin.url }, "admin listener serving /metrics, /healthz, /readyz");
  }
  logger.info({ url: server.url, store: store.kind, certificate: certificate.certificatePath, broadcastTtlMs: config.broadcastTtlMs }, "relay listening");
  return {
    server,
    store,
    admin,
    async stop() {
      // The relay first: /readyz answers 503 while its sessions drain.
      await server.close();
      await admin?.close();
      await store.close();
    },
  };
}

/**
 * The `relay` command: reads options from `argv` and `env`, starts the relay and stops it on
 * SIGINT or SIGTERM. Exits the process on a usage error (2) or a failure to start (1).
 */
export async function main(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config: RelayConfig | "help";
  try {
    config = loadConfig(argv, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`relay: ${error.message} (see relay --help)\n`);
    process.exit(2);
  }
  if (config === "help") {
    process.stdout.write(configHelp());
    return;
  }
  const logger = pino({ level: config.logLevel, base: { service: "relay" } });
  let relay: RunningRelay;
  try {
    relay = await runRelay(config, logger);
  } catch (error) {
    // Listen errors carry the address that failed: the relay's port or the admin listener's.
    const { code, address, port } = error as NodeJS.ErrnoException & { address?: string; port?: number };
    const where = address === undefined ? formatListenAddress(config.listen) : formatListenAddress({ host: address, port: port ?? 0 });
    const reason = error instanceof RelayCertificateError ? error.message : code === "EADDRINUSE" ? `cannot listen on ${where}: address already in use` : code === "EACCES" ? `cannot listen on ${where}: permission denied` : error instanceof Error ? error.message : String(error);
    process.stderr.write(`relay: ${reason}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "relay shutting down");
    relay.stop().then(
      () => {
        logger.info("relay stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "failed to stop cleanly");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

// Run when executed directly (`node dist/server/main.js`, `tsx src/server/main.ts`); bin/relay.js imports main.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  void main();
}

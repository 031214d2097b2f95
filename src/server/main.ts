import cluster from "node:cluster";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import { ConfigError, configHelp, loadConfig, type RelayConfig } from "./ops/config.js";
import { formatListenAddress } from "../shared/listen-address.js";
import { MemoryStore } from "./store/memory-store.js";
import { createRelayServer, type RelayServer } from "./transport/relay-server.js";
import { createAdminServer, type AdminServer } from "./ops/admin-server.js";
import { loadServerCertificate, RelayCertificateError } from "./identity/relay-certificate.js";
import type { RelayStore } from "./store/store.js";
import { createRelayMetrics } from "./ops/metrics.js";
import { createReadiness } from "./ops/health.js";
import { createLogDestination } from "./ops/log-destination.js";
import { createRelayLogger } from "./ops/relay-logger.js";
import { loadTicketKeys } from "./identity/tls-ticket-keys.js";
import { runWorkers, workerIndex } from "./ops/relay-workers.js";
import { execArgvWithMemoryReducer, memoryReducerRuns, noMemoryReducerFlag } from "./ops/memory-reducer.js";

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
  if (certificate.replacedNames !== undefined) {
    logger.warn(
      { certificate: certificate.certificatePath, fingerprint: certificate.fingerprint, previousNames: certificate.replacedNames, names: certificate.names },
      "the relay certificate's names changed (--tls-hostname or --listen): generated a new certificate; peers that pin the old one (--relay-ca) need this one",
    );
  } else if (certificate.generated) {
    logger.info({ certificate: certificate.certificatePath, fingerprint: certificate.fingerprint, names: certificate.names }, "generated a self-signed relay certificate; peers trust it with --relay-ca");
  }
  let store: RelayStore;
  if (config.mongodbUri === "") {
    store = new MemoryStore();
    logger.info("using the embedded in-memory store: state is lost on restart (set --mongodb-uri for MongoDB)");
  } else {
    // Loaded only when used: the driver costs start-up time and memory an in-memory relay never needs.
    const { MongoStore } = await import("./store/mongo-store.js");
    store = await MongoStore.connect({ uri: config.mongodbUri, logger, lookupBatchSize: config.lookupBatchSize });
  }
  // The admin listener binds first: a taken admin port fails the start before the relay takes
  // its port or says it serves. Its metrics and readiness are the relay's, made here for both.
  const metrics = createRelayMetrics({ store });
  const readiness = createReadiness();
  let admin: AdminServer | undefined;
  if (config.adminListen !== undefined) {
    try {
      // Under --workers, worker i serves its own metrics and readiness on the port + i.
      const port = config.adminListen.port === 0 ? 0 : config.adminListen.port + workerIndex();
      admin = await createAdminServer({ host: config.adminListen.host, port, registry: metrics.registry, readiness, logger });
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  let server: RelayServer;
  try {
    server = await createRelayServer({
      host: config.listen.host,
      port: config.listen.port,
      tls: certificate,
      store,
      metrics,
      readiness,
      broadcastTtlSeconds: config.broadcastTtlMs / 1000,
      presenceGraceMs: config.presenceGraceMs,
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
      registrationRetentionMs: config.registrationRetentionMs,
      lookupCacheSize: config.lookupCacheSize,
      registrationsPerNetworkPerHour: config.registrationsPerNetwork,
      listVisibility: config.listVisibility,
      drainDelayMs: config.drainDelayMs,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      listenBacklog: config.listenBacklog,
      handshakeAdmission: { maxHandshakes: config.maxHandshakes, maxQueued: config.handshakeQueue, maxQueueWaitMs: config.handshakeQueueWaitMs, maxOnboardingMs: config.onboardingHoldMs, maxOnboardingPerSource: config.onboardingHoldPerSource },
      tlsTicketKeys: await loadTicketKeys(config.dataDir),
      logger,
    });
  } catch (error) {
    await admin?.close();
    await store.close();
    throw error;
  }
  if (admin !== undefined) logger.info({ url: admin.url }, "admin listener serving /metrics, /healthz, /readyz");
  logger.info(
    { url: server.url, store: store.kind, memoryReducer: memoryReducerRuns(process.execArgv) ? "on" : "off", certificate: certificate.certificatePath, broadcastTtlMs: config.broadcastTtlMs, presenceGraceMs: config.presenceGraceMs, registrationRetentionMs: config.registrationRetentionMs, registrationsPerNetwork: config.registrationsPerNetwork, listVisibility: config.listVisibility },
    "relay listening",
  );
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
  // stderr carries only start-up failures; a closed stderr must not turn one into a crash.
  process.stderr.on("error", () => {});
  const destination = createLogDestination();
  const logger = createRelayLogger({ level: config.logLevel, destination });
  /** Exits once queued log lines are out, or after a second at most: lost lines, never a hang. */
  const exit = (code: number): void => {
    void destination.flush(1_000).then(() => process.exit(code));
  };

  const options = config;
  // V8 takes --no-memory-reducer only from node's command line (memory-reducer.ts): a process
  // started without the setting asked for serves through one worker started with it.
  const reducerWanted = options.memoryReducer === "on";
  const reducerMismatch = memoryReducerRuns(process.execArgv) !== reducerWanted;
  if (cluster.isPrimary && (options.workers > 1 || reducerMismatch)) {
    if (reducerMismatch && options.workers === 1) {
      logger.info(
        { memoryReducer: options.memoryReducer },
        reducerWanted ? `node was started with ${noMemoryReducerFlag}: serving from a worker started without it` : `node was started without ${noMemoryReducerFlag}: serving from a worker started with it (give node the flag to serve from this process)`,
      );
    }
    // A primary that only runs the workers (relay-workers.ts); each worker runs this function too.
    await runWorkers({ config: options, execArgv: execArgvWithMemoryReducer(process.execArgv, reducerWanted), logger, exit, shutdownDeadlineMs: options.drainDelayMs + options.shutdownTimeoutMs + shutdownMarginMs + 2_000 });
    return;
  }
  let relay: RunningRelay | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // The operator asked twice: stop now, without draining.
      logger.warn({ signal }, "second signal: exiting without finishing the shutdown");
      exit(1);
      return;
    }
    stopping = true;
    if (relay === undefined) {
      exit(0); // still starting: nothing is serving yet
      return;
    }
    logger.info({ signal }, "relay shutting down (a second signal forces the exit)");
    // A bound on the whole process, whatever hangs: the server ends within --drain-delay plus
    // --shutdown-timeout; the margin covers closing the admin listener and the database.
    const deadlineMs = options.drainDelayMs + options.shutdownTimeoutMs + shutdownMarginMs;
    setTimeout(() => {
      logger.error({ deadlineMs }, "shutdown did not finish in time: exiting");
      exit(1);
    }, deadlineMs).unref();
    relay.stop().then(
      () => {
        logger.info("relay stopped");
        exit(0);
      },
      (error: unknown) => {
        logger.error({ cause: briefCause(error) }, "failed to stop cleanly");
        exit(1);
      },
    );
  };
  // Signals are caught from the start: a SIGTERM during start-up (a database still connecting)
  // stops the relay as soon as it can, rather than killing it half-started.
  // A worker stops on the SIGTERM its primary sends; Ctrl-C in a terminal signals the whole
  // process group, and taking that SIGINT as well would read as a second signal (no drain).
  if (cluster.isWorker) process.on("SIGINT", () => {});
  else process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    relay = await runRelay(options, logger);
  } catch (error) {
    // Listen errors carry the address that failed: the relay's port or the admin listener's.
    const { code, address, port } = error as NodeJS.ErrnoException & { address?: string; port?: number };
    const where = address === undefined ? formatListenAddress(options.listen) : formatListenAddress({ host: address, port: port ?? 0 });
    const reason = error instanceof RelayCertificateError ? error.message : code === "EADDRINUSE" ? `cannot listen on ${where}: address already in use` : code === "EACCES" ? `cannot listen on ${where}: permission denied` : error instanceof Error ? error.message : String(error);
    process.stderr.write(`relay: ${reason}\n`);
    exit(1);
    return;
  }
  if (stopping) {
    // A signal came while starting: stop what started.
    await relay.stop().catch(() => {});
    exit(0);
  }
}

/** Time the process may take to exit beyond the server's own shutdown bound: the database's close. */
const shutdownMarginMs = 5_000;

/** An error as one short line for the log: its name and message, no stack. */
function briefCause(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 300) : String(error).slice(0, 300);
}

// Run when executed directly (`node dist/server/main.js`, `tsx src/server/main.ts`); bin/relay.js imports main.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  void main();
}

/**
 * `--workers N`: N relay processes on one port and one database, through node:cluster. One
 * Node process serves on one core; a relay's work (TLS, HTTP/2, the handlers) is all on its main
 * thread, so a machine with more cores holds more peers with more processes.
 *
 * The primary process does no relay work: it prepares what the workers share on disk (the
 * generated certificate, the TLS ticket keys, so that they do not race to create them), forks the
 * workers, starts a new one when one dies, and on SIGTERM/SIGINT stops them all. The primary
 * accepts connections and hands them to the workers in turn (cluster's round-robin), so each
 * worker's per-address and per-certificate connection limits and rate limits count its share of
 * the connections only. Worker i serves its admin listener on the configured port + i.
 *
 * A relay whose node was started without the memory-reducer setting it asks for runs as a
 * primary of one worker started with it (memory-reducer.ts); that worker accepts its connections
 * itself.
 */
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { RelayConfig } from "./config.js";
import { loadServerCertificate } from "../identity/relay-certificate.js";
import { loadTicketKeys } from "../identity/tls-ticket-keys.js";

/** Env var telling a worker its index (0 to N-1): the offset of its admin port. */
export const workerIndexEnv = "RELAY_WORKER_INDEX";

/** This process's worker index; 0 outside a cluster. */
export function workerIndex(): number {
  return cluster.isWorker ? Number(process.env[workerIndexEnv] ?? 0) : 0;
}

/** Options of {@link runWorkers}. */
export interface RunWorkersOptions {
  config: RelayConfig;
  /** Node's arguments for the workers (the primary's, with the memory reducer as configured). */
  execArgv: string[];
  logger: Logger;
  /** Exits the process with code (after flushing logs). */
  exit: (code: number) => void;
  /** How long the workers' shutdown may take before they are killed, ms. */
  shutdownDeadlineMs: number;
}

/** Pause before starting a worker again after one died, ms: a crash loop must not spin. */
const restartDelayMs = 1_000;

/**
 * Runs the primary of a relay of config.workers processes until SIGTERM or SIGINT. A worker that
 * dies before it ever listened (a port in use, a bad certificate) stops the whole relay: every
 * other would fail the same way.
 */
export async function runWorkers(options: RunWorkersOptions): Promise<void> {
  const { config, logger, exit } = options;
  const certificate = await loadServerCertificate(config);
  if (certificate.generated) logger.info({ certificate: certificate.certificatePath, fingerprint: certificate.fingerprint }, "generated a self-signed relay certificate; peers trust it with --relay-ca");
  await loadTicketKeys(config.dataDir);

  // One worker (a relay started without the memory-reducer setting it asked for) accepts its
  // connections itself; several take them in turn from the primary.
  if (config.workers === 1) cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: options.execArgv });
  const workers = new Map<Worker, number>();
  let stopping = false;
  const fork = (index: number) => {
    const worker = cluster.fork({ [workerIndexEnv]: String(index) });
    workers.set(worker, index);
    let listened = false;
    worker.once("listening", () => (listened = true));
    worker.once("exit", (code, signal) => {
      workers.delete(worker);
      if (stopping) {
        if (workers.size === 0) {
          logger.info("relay workers stopped");
          exit(0);
        }
        return;
      }
      if (!listened) {
        logger.error({ worker: index, code, signal }, "a relay worker exited before it listened: stopping the relay");
        stop(1);
        return;
      }
      logger.error({ worker: index, code, signal, restartDelayMs }, "a relay worker died: starting another");
      setTimeout(() => !stopping && fork(index), restartDelayMs).unref();
    });
  };

  const stop = (code: number) => {
    stopping = true;
    if (workers.size === 0) return exit(code);
    for (const worker of workers.keys()) worker.process.kill("SIGTERM");
    setTimeout(() => {
      logger.error({ deadlineMs: options.shutdownDeadlineMs }, "relay workers did not stop in time: killing them");
      for (const worker of workers.keys()) worker.process.kill("SIGKILL");
      exit(1);
    }, options.shutdownDeadlineMs).unref();
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: killing the relay workers");
      for (const worker of workers.keys()) worker.process.kill("SIGKILL");
      exit(1);
      return;
    }
    logger.info({ signal, workers: workers.size }, "relay shutting down its workers");
    stop(0);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  for (let index = 0; index < config.workers; index++) fork(index);
  logger.info({ workers: config.workers, listen: `${config.listen.host}:${config.listen.port}` }, "relay started its workers");
}

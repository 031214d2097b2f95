/**
 * gRPC health checking (`grpc.health.v1.Health`) driven by a {@link Readiness} the server
 * updates: NOT_SERVING while the database is unreachable or the relay shuts down.
 * Protocol: https://github.com/grpc/grpc/blob/master/doc/health-checking.md
 */
import { briefCause } from "../errors.js";
import { EventEmitter, on } from "node:events";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import type { Logger } from "pino";
import type { RelayStore } from "../store/store.js";
import { systemClock, type Clock } from "../../shared/clock.js";
import { createShutdownHooks } from "../transport/shutdown-hooks.js";

export { ServingStatus };

/** The health service names relay reports: "" (the server as a whole) and the relay service. */
export const HEALTH_SERVICE_NAMES: readonly string[] = ["", RelayService.typeName];

/** Serving status per health service name, with change notification. */
export interface Readiness {
  /** Status of service, or undefined when the name is not known. */
  status(service: string): ServingStatus | undefined;
  /** Sets the status of one service, or of every known service when service is omitted. */
  set(status: ServingStatus.SERVING | ServingStatus.NOT_SERVING, service?: string): void;
  /** All known services and their status. */
  all(): ReadonlyMap<string, ServingStatus>;
  /** Calls listener on every change (service, new status); returns the unsubscribe function. */
  onChange(listener: (service: string, status: ServingStatus) => void): () => void;
}

/** Options of {@link createReadiness}. */
export interface ReadinessOptions {
  /** Service names to report. Default {@link HEALTH_SERVICE_NAMES}. */
  services?: readonly string[];
  /** Status before the server first says otherwise. Default NOT_SERVING: not ready until started. */
  initial?: ServingStatus.SERVING | ServingStatus.NOT_SERVING;
}

/** Creates the readiness a relay updates and the health service and /readyz report. */
export function createReadiness(options: ReadinessOptions = {}): Readiness {
  const statuses = new Map<string, ServingStatus>();
  for (const service of options.services ?? HEALTH_SERVICE_NAMES) {
    statuses.set(service, options.initial ?? ServingStatus.NOT_SERVING);
  }
  const events = new EventEmitter();
  // Every Watch stream holds one listener; the default cap of 10 would warn under normal use.
  events.setMaxListeners(0);
  const change = (service: string, status: ServingStatus): void => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    events.emit("change", service, status);
  };
  return {
    status: (service) => statuses.get(service),
    set(status, service) {
      if (service === undefined) {
        for (const name of statuses.keys()) change(name, status);
      } else {
        change(service, status);
      }
    },
    all: () => new Map(statuses),
    onChange(listener) {
      events.on("change", listener);
      return () => events.off("change", listener);
    },
  };
}

/** Options of {@link createHealthRoutes}. */
export interface HealthRoutesOptions {
  /** Aborted when the relay shuts down: open Watch streams end then. Default: they end with their call. */
  shutdownSignal?: AbortSignal;
}

/** Returns routes serving `grpc.health.v1.Health` (Check, List, Watch) from readiness. */
export function createHealthRoutes(readiness: Readiness, options: HealthRoutesOptions = {}): (router: ConnectRouter) => void {
  // One listener on the shutdown signal for all Watch streams (see shutdown-hooks.ts).
  const shutdown = createShutdownHooks(options.shutdownSignal ?? new AbortController().signal);
  return (router) => {
    router.service(
      Health,
      {
        check(request) {
          const status = readiness.status(request.service);
          if (status === undefined) {
            throw new ConnectError(`unknown health service "${request.service}"`, Code.NotFound);
          }
          return { status };
        },
        list() {
          return { statuses: Object.fromEntries([...readiness.all()].map(([service, status]) => [service, { status }])) };
        },
        async *watch(request, context) {
          // Listen (and buffer) before reading the current status, so that no change falls
          // between the two or while the generator waits for the client to take a message.
          const emitter = new EventEmitter();
          // Ends with the call, or at shutdown.
          const ended = new AbortController();
          const end = () => ended.abort();
          context.signal.addEventListener("abort", end, { once: true });
          const forgetShutdown = shutdown.add(end);
          if (context.signal.aborted) end();
          const changes = on(emitter, "status", { signal: ended.signal }) as AsyncIterableIterator<[ServingStatus]>;
          const unsubscribe = readiness.onChange((service, status) => {
            if (service === request.service) emitter.emit("status", status);
          });
          try {
            let last = readiness.status(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
            yield { status: last };
            for await (const [status] of changes) {
              if (status === last) continue;
              last = status;
              yield { status };
            }
          } catch (error) {
            // The call ends (client gone, deadline, relay shutting down): the abort is the normal way out.
            if (!ended.signal.aborted) throw error;
          } finally {
            context.signal.removeEventListener("abort", end);
            forgetShutdown();
            unsubscribe();
          }
        },
      },
      { readMaxBytes: 4 * 1024 },
    );
  };
}

/** Options of {@link startStoreProbe}. */
export interface StoreProbeOptions {
  /** The store's ping() is the readiness signal (a database round trip for MongoStore). */
  store: Pick<RelayStore, "ping">;
  readiness: Readiness;
  logger: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** How often to ping, ms. Default 5000: health answers within one interval of a change. */
  intervalMs?: number;
}

/** A running store probe. */
export interface StoreProbe {
  /** Pings now and updates readiness; resolves with whether the store answered. */
  probe(): Promise<boolean>;
  /** Stops probing and marks every service NOT_SERVING (the relay is stopping). */
  stop(): void;
}

/**
 * Keeps readiness in step with the store: SERVING while ping() answers, NOT_SERVING while it
 * fails. The first probe runs at once, so a relay whose database answers is ready on start.
 */
export function startStoreProbe(options: StoreProbeOptions): StoreProbe {
  const { store, readiness, logger } = options;
  const clock = options.clock ?? systemClock;
  let stopped = false;
  let inFlight: Promise<boolean> | undefined;
  const probe = (): Promise<boolean> => {
    inFlight ??= store.ping().then(
      () => true,
      (error: unknown) => {
        if (readiness.status("") !== ServingStatus.NOT_SERVING) logger.error({ cause: briefCause(error) }, "failed to reach the store: not serving");
        return false;
      },
    ).then((ok) => {
      inFlight = undefined;
      if (stopped) return ok;
      if (ok && readiness.status("") !== ServingStatus.SERVING) logger.info("store reachable: serving");
      readiness.set(ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
      return ok;
    });
    return inFlight;
  };
  const timer = clock.setInterval(() => void probe(), options.intervalMs ?? 5000, { unref: true });
  void probe();
  return {
    probe,
    stop() {
      stopped = true;
      clock.clearInterval(timer);
      readiness.set(ServingStatus.NOT_SERVING);
    },
  };
}

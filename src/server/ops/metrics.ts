/**
 * The relay's Prometheus metrics (prom-client), served on the admin listener's /metrics.
 * Every series an operator alerts on exists at zero from the start, so `rate()` and absence
 * alerts work before the first event.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { RelayService } from "../../gen/relay/v1/relay_pb.js";
import { dateOf, systemClock, type Clock } from "../../shared/clock.js";
import { createTallyHistogram, type TallyHistogram } from "./tally-histogram.js";
import { limitReasons } from "../transport/connection-limits.js";
import { interceptStoreFailures, storeOperations, type RelayStore, type StoreStats } from "../store/store.js";

/** The relay's metrics and the registry they live in. */
export interface RelayMetrics {
  readonly registry: Registry;
  /** relay_rpc_requests_total{rpc, code}: finished RPCs by outcome ("ok" or a Connect code). */
  readonly requests: Counter<"rpc" | "code">;
  /**
   * Counts one finished RPC on relay_rpc_requests_total{rpc, code}. In plain numbers, handed to
   * the counter when it is scraped: prom-client validates and hashes labels on every inc.
   */
  readonly countRequest: (rpc: string, code: string) => void;
  /** relay_rpc_duration_seconds{rpc}: duration of unary RPCs. */
  readonly duration: TallyHistogram;
  /** relay_stream_duration_seconds{rpc}: lifetime of streaming RPCs (Heartbeat, Watch). */
  readonly streamDuration: TallyHistogram;
  /** relay_heartbeat_streams_open: Heartbeat streams open now. */
  readonly heartbeatStreamsOpen: Gauge;
  /** relay_watch_streams_open: Watch streams open now. */
  readonly watchStreamsOpen: Gauge;
  /** relay_store_errors_total{operation}: failed store calls, by store method. */
  readonly storeErrors: Counter<"operation">;
  /** relay_rate_limited_total{by}: relay RPCs refused by a rate limit, per source IP or certificate. */
  readonly rateLimited: Counter<"by">;
  /** relay_connection_limited_total{reason}: connections or streams closed by a connection limit. */
  readonly connectionLimited: Counter<"reason">;
  /** relay_tls_handshakes_total{resumed}: TLS handshakes done, by whether they resumed a session ("true", "false"). */
  readonly tlsHandshakes: Counter<"resumed">;
  /**
   * Counts one Lookup on relay_lookup_cache_total{result}: "hit" when the Lookup cache answered,
   * "miss" when the store was read. Plain numbers until a scrape, as countRequest.
   */
  readonly countLookupCache: (hit: boolean) => void;
}

/** Options of {@link createRelayMetrics}. */
export interface RelayMetricsOptions {
  /**
   * Store whose stats() feed relay_online_peers, relay_online_peers_by_family and
   * relay_registered_peers on each scrape. Without it those gauges stay at zero.
   */
  store?: RelayStore;
  /** Default: the system clock. */
  clock?: Clock;
  /** Services whose RPCs get zero-valued series from the start. Default: relay.v1.RelayService. */
  services?: readonly DescService[];
  /**
   * Also export Node's process metrics (CPU, memory, event loop lag, GC). Default true.
   * A registry of its own per relay, so several relays in one process (tests) do not collide.
   */
  processMetrics?: boolean;
}


/** The label value of an RPC: "relay.v1.RelayService/Register", as in the gRPC path. */
export function rpcLabel(service: DescService, method: string): string {
  return `${service.typeName}/${method}`;
}


/** Creates the relay's metrics in a new registry. */
export function createRelayMetrics(options: RelayMetricsOptions = {}): RelayMetrics {
  const registry = new Registry();
  const clock = options.clock ?? systemClock;
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  // RPCs counted since the last scrape, by rpc then code: the interceptor's per-call cost is two
  // map lookups and an addition; the counter gets the sums (one inc per series) when scraped.
  const pendingRequests = new Map<string, Map<string, { readonly labels: { rpc: string; code: string }; count: number }>>();
  const requests = new Counter({
    name: "relay_rpc_requests_total",
    help: "Finished RPCs by rpc and outcome code (ok or a Connect code).",
    labelNames: ["rpc", "code"] as const,
    registers: [registry],
    collect() {
      for (const byCode of pendingRequests.values()) {
        for (const pending of byCode.values()) {
          if (pending.count === 0) continue;
          this.inc(pending.labels, pending.count);
          pending.count = 0;
        }
      }
    },
  });
  const countRequest = (rpc: string, code: string): void => {
    let byCode = pendingRequests.get(rpc);
    if (byCode === undefined) pendingRequests.set(rpc, (byCode = new Map()));
    const pending = byCode.get(code);
    if (pending === undefined) byCode.set(code, { labels: { rpc, code }, count: 1 });
    else pending.count++;
  };
  const duration = createTallyHistogram({
    name: "relay_rpc_duration_seconds",
    help: "Duration of unary RPCs, from request to response or error.",
    labelName: "rpc",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registry,
  });
  const streamDuration = createTallyHistogram({
    name: "relay_stream_duration_seconds",
    help: "Lifetime of streaming RPCs (Heartbeat, health Watch).",
    labelName: "rpc",
    buckets: [1, 10, 60, 300, 900, 1800, 3600, 7200, 21600, 86400],
    registry,
  });
  const heartbeatStreamsOpen = new Gauge({
    name: "relay_heartbeat_streams_open",
    help: "Heartbeat streams open now.",
    registers: [registry],
  });
  const watchStreamsOpen = new Gauge({
    name: "relay_watch_streams_open",
    help: "Watch streams open now.",
    registers: [registry],
  });
  const storeErrors = new Counter({
    name: "relay_store_errors_total",
    help: "Failed store calls by store operation (an unreachable database counts here).",
    labelNames: ["operation"] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: "relay_rate_limited_total",
    help: "Relay RPCs refused by a rate limit (answered resource_exhausted with retry-after), by the limit: ip, certificate, or registrations (new registrations per source network).",
    labelNames: ["by"] as const,
    registers: [registry],
  });
  const connectionLimited = new Counter({
    name: "relay_connection_limited_total",
    help: `Connections or streams closed by a connection limit: ${limitReasons.join(", ")}.`,
    labelNames: ["reason"] as const,
    registers: [registry],
  });

  const tlsHandshakes = new Counter({
    name: "relay_tls_handshakes_total",
    help: "TLS handshakes done, by resumed: true when the peer resumed a session with a ticket (no certificate exchange or signatures), false for a full handshake.",
    labelNames: ["resumed"] as const,
    registers: [registry],
  });

  const lookupCacheCounts = { hit: 0, miss: 0 };
  new Counter({
    name: "relay_lookup_cache_total",
    help: "Lookups on a relay with a database, by result: hit when the Lookup cache answered, miss when the database was read (not online, not cached yet, or the change feed behind).",
    labelNames: ["result"] as const,
    registers: [registry],
    collect() {
      for (const result of ["hit", "miss"] as const) {
        this.inc({ result }, lookupCacheCounts[result]);
        lookupCacheCounts[result] = 0;
      }
    },
  });
  const countLookupCache = (hit: boolean): void => {
    if (hit) lookupCacheCounts.hit++;
    else lookupCacheCounts.miss++;
  };

  // Peer counts are read from the store when Prometheus scrapes, not kept in step by handlers:
  // they stay right across restarts, expiry and several relays sharing one database.
  const store = options.store && countStoreErrors(options.store, { storeErrors });
  let stats: Promise<StoreStats | undefined> | undefined;
  const readStats = (): Promise<StoreStats | undefined> => {
    // One store round trip per scrape, shared by the three gauges; a failure (counted as a
    // store error) leaves the last values in place rather than failing the scrape.
    stats ??= (store?.stats(dateOf(clock)) ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => setImmediate(() => (stats = undefined)));
    return stats;
  };
  new Gauge({
    name: "relay_online_peers",
    help: "Peers with a live broadcast.",
    registers: [registry],
    async collect() {
      const s = await readStats();
      if (s) this.set(s.online);
    },
  });
  const byFamily = new Gauge({
    name: "relay_online_peers_by_family",
    help: "Peers with a live broadcast announcing at least one address of the family (ipv4, ipv6).",
    labelNames: ["family"] as const,
    registers: [registry],
    async collect() {
      const s = await readStats();
      if (s) {
        this.set({ family: "ipv4" }, s.onlineIpv4);
        this.set({ family: "ipv6" }, s.onlineIpv6);
      }
    },
  });
  new Gauge({
    name: "relay_registered_peers",
    help: "Registered certificates (email bindings).",
    registers: [registry],
    async collect() {
      const s = await readStats();
      if (s) this.set(s.registrations);
    },
  });

  for (const service of options.services ?? [RelayService]) {
    for (const method of service.methods) {
      const rpc = rpcLabel(service, method.name);
      requests.inc({ rpc, code: "ok" }, 0);
      if (method.methodKind === "unary") duration.zero(rpc);
      else streamDuration.zero(rpc);
    }
  }
  for (const operation of storeOperations) storeErrors.inc({ operation }, 0);
  for (const by of ["ip", "certificate", "registrations"]) rateLimited.inc({ by }, 0);
  for (const reason of limitReasons) connectionLimited.inc({ reason }, 0);
  for (const family of ["ipv4", "ipv6"]) byFamily.set({ family }, 0);

  for (const resumed of ["true", "false"]) tlsHandshakes.inc({ resumed }, 0);

  return { registry, requests, countRequest, duration, streamDuration, heartbeatStreamsOpen, watchStreamsOpen, storeErrors, rateLimited, connectionLimited, tlsHandshakes, countLookupCache };
}

/**
 * Wraps store so that every rejected call counts on relay_store_errors_total{operation}.
 * The error itself still reaches the caller (and is mapped to a Connect code there).
 */
export function countStoreErrors(store: RelayStore, metrics: Pick<RelayMetrics, "storeErrors">): RelayStore {
  return interceptStoreFailures(store, (operation, error) => {
    metrics.storeErrors.inc({ operation });
    return error;
  });
}

import { pino } from "pino";
import { createRelayServer, type RelayServer, type RelayServerOptions } from "../../src/server/transport/relay-server.js";
import { MemoryStore } from "../../src/server/store/memory-store.js";
import { MongoStore } from "../../src/server/store/mongo-store.js";
import type { RelayStore } from "../../src/server/store/store.js";
import { createSelfSignedCertificate, type CertificateAndKey } from "../../src/shared/self-signed-certificate.js";

let serverCertificate: Promise<CertificateAndKey> | undefined;

/** One relay certificate per test process (valid for 127.0.0.1, ::1 and localhost). */
export function testServerCertificate(): Promise<CertificateAndKey> {
  serverCertificate ??= createSelfSignedCertificate({ commonName: "relay-test", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"], keyType: "ecdsa-p256" });
  return serverCertificate;
}

/** Options of {@link startTestRelay}. */
export interface TestRelayOptions extends Partial<Omit<RelayServerOptions, "store" | "tls">> {
  /** A MongoDB URI (e.g. FerretDB's), or omitted for the in-memory store. */
  mongodbUri?: string;
  /** A store to share (e.g. between two relays); overrides mongodbUri. */
  store?: RelayStore;
}

/** A relay on a free loopback port, with what a test needs to reach it. */
export interface TestRelay {
  readonly url: string;
  readonly port: number;
  /** The relay's certificate, to trust as CA. */
  readonly caPem: string;
  readonly store: RelayStore;
  readonly server: RelayServer;
  /** Stops the server (gracefully) and closes a store it opened. */
  stop(): Promise<void>;
  /**
   * Stops the server and starts it again on the same port. A MongoDB store is reopened (state
   * survives); an in-memory store is replaced by an empty one, as a real restart would.
   */
  restart(): Promise<void>;
}

export async function startTestRelay(options: TestRelayOptions = {}): Promise<TestRelay> {
  const tls = await testServerCertificate();
  const logger = options.logger ?? pino({ level: process.env.RELAY_TEST_LOG_LEVEL ?? "silent" });
  const ownsStore = options.store === undefined;
  const openStore = async (): Promise<RelayStore> => options.store ?? (options.mongodbUri ? await MongoStore.connect({ uri: options.mongodbUri, logger }) : new MemoryStore());
  let store = await openStore();
  // Every test connects from 127.0.0.1, many clients each: the per-source limits, and the count of
  // connections per certificate, are lifted unless a test sets them (test/security.test.ts does);
  // per-certificate rate limits stay at their defaults.
  const start = (port: number) =>
    createRelayServer({
      shutdownGraceMs: 1000,
      ...options,
      connectionLimits: { maxUnauthenticatedPerSource: 0, maxConnectionsPerCertificate: 0, ...options.connectionLimits },
      rateLimits: { perIp: 0, ...options.rateLimits },
      registrationsPerNetworkPerHour: options.registrationsPerNetworkPerHour ?? 0,
      logger,
      host: options.host ?? "127.0.0.1",
      port,
      tls,
      store,
    });
  let server = await start(options.port ?? 0);
  const port = server.port;
  return {
    get url() {
      return server.url;
    },
    port,
    caPem: tls.certificatePem,
    get store() {
      return store;
    },
    get server() {
      return server;
    },
    async stop() {
      await server.close();
      if (ownsStore) await store.close();
    },
    async restart() {
      await server.close();
      if (ownsStore) {
        await store.close();
        store = await openStore();
      }
      server = await start(port);
    },
  };
}

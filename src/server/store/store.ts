/**
 * The relay's state behind one small interface. Two implementations pass one contract suite
 * (test/store-contract.test.ts): MemoryStore, the embedded default, and MongoStore.
 * Nothing above this interface knows which one it has.
 */

/** A certificate bound to an email by Register. */
export interface RegistrationRecord {
  /** Hex SHA-256 of the certificate's DER: the peer's identity and its client_id. */
  fingerprint: string;
  /** Lower-cased. */
  email: string;
  certificatePem: string;
  registeredAt: Date;
}

/** A peer's announcement that it is online; replaced by each Ready, extended by heartbeats. */
export interface BroadcastRecord {
  broadcastId: string;
  fingerprint: string;
  /** Lower-cased email of the registration behind this broadcast. */
  email: string;
  port: number;
  /** IP literals in the peer's preferred order. */
  addresses: string[];
  capabilities: Record<string, string>;
  /** Source IP of the connection that announced it. */
  observedAddress: string;
  /** Time of the last Ready or heartbeat. */
  lastSeen: Date;
  expiresAt: Date;
}

/** Outcome of {@link RelayStore.register}. */
export type RegisterResult =
  | { outcome: "created" | "existing"; registration: RegistrationRecord }
  /** The email is bound to another certificate. */
  | { outcome: "email_taken" }
  /** This certificate is bound to another email. */
  | { outcome: "certificate_taken"; email: string };

/** Outcome of {@link RelayStore.extendBroadcast}. */
export type ExtendResult =
  | { outcome: "extended"; broadcast: BroadcastRecord }
  /** No live broadcast for this peer. */
  | { outcome: "not_found" }
  /** The peer has a live broadcast, but not the one named. */
  | { outcome: "mismatch" };

/** Counts for metrics and readiness. */
export interface StoreStats {
  registrations: number;
  onlineIpv4: number;
  onlineIpv6: number;
  online: number;
}

export interface RelayStore {
  /** "memory" or "mongodb", for logs and metrics. */
  readonly kind: string;
  /**
   * Binds registration.email to registration.fingerprint unless either is already bound
   * elsewhere. Concurrent calls for one email end in one "created" and the rest
   * "existing" (same certificate) or "email_taken" (another certificate).
   */
  register(registration: RegistrationRecord): Promise<RegisterResult>;
  findRegistration(fingerprint: string): Promise<RegistrationRecord | undefined>;
  /** The registration of email (lower-cased), if any. */
  findRegistrationByEmail(email: string): Promise<RegistrationRecord | undefined>;
  /** Stores broadcast as the peer's only one, replacing any previous broadcast of that fingerprint. */
  putBroadcast(broadcast: BroadcastRecord): Promise<void>;
  /**
   * Moves the live broadcast of fingerprint to expiresAt (lastSeen = now). When broadcastId is
   * given it must be the live broadcast's id. A broadcast with expiresAt <= now is not live.
   */
  extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date): Promise<ExtendResult>;
  /** The live broadcast of email (lower-cased), if any. */
  findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined>;
  /** Up to limit live broadcasts with email > afterEmail, ordered by email. */
  listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]>;
  /** Deletes broadcasts with expiresAt <= now; returns how many. Reads never depend on it. */
  sweepExpired(now: Date): Promise<number>;
  stats(now: Date): Promise<StoreStats>;
  /** Resolves when the store can serve (a database round trip for MongoStore). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The store methods that reach the database: every one but close. */
export const storeOperations = [
  "register",
  "findRegistration",
  "findRegistrationByEmail",
  "putBroadcast",
  "extendBroadcast",
  "findBroadcast",
  "listBroadcasts",
  "sweepExpired",
  "stats",
  "ping",
] as const satisfies ReadonlyArray<keyof RelayStore>;

export type StoreOperation = (typeof storeOperations)[number];

/**
 * Wraps store so that the error of every rejected call goes through onFailure, which returns
 * what to throw instead (the same error, or a mapped one). The one mechanism behind error
 * mapping (errors.ts) and error counting (metrics.ts).
 */
export function interceptStoreFailures(store: RelayStore, onFailure: (operation: StoreOperation, error: unknown) => unknown): RelayStore {
  const guard = <T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> =>
    call().catch((error: unknown) => {
      throw onFailure(operation, error);
    });
  return {
    kind: store.kind,
    register: (registration) => guard("register", () => store.register(registration)),
    findRegistration: (fingerprint) => guard("findRegistration", () => store.findRegistration(fingerprint)),
    findRegistrationByEmail: (email) => guard("findRegistrationByEmail", () => store.findRegistrationByEmail(email)),
    putBroadcast: (broadcast) => guard("putBroadcast", () => store.putBroadcast(broadcast)),
    extendBroadcast: (fingerprint, broadcastId, now, expiresAt) => guard("extendBroadcast", () => store.extendBroadcast(fingerprint, broadcastId, now, expiresAt)),
    findBroadcast: (email, now) => guard("findBroadcast", () => store.findBroadcast(email, now)),
    listBroadcasts: (afterEmail, limit, now) => guard("listBroadcasts", () => store.listBroadcasts(afterEmail, limit, now)),
    sweepExpired: (now) => guard("sweepExpired", () => store.sweepExpired(now)),
    stats: (now) => guard("stats", () => store.stats(now)),
    ping: () => guard("ping", () => store.ping()),
    close: () => store.close(),
  };
}

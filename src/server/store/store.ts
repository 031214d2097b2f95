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
  /**
   * When the registration may be deleted: the last Register or Ready plus the registration
   * retention. Moved forward by each Ready ({@link RelayStore.retainRegistration}), so only
   * registrations that stopped announcing go; that keeps the number of registrations bounded.
   */
  retainUntil: Date;
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
  /** The ttl bound: Ready or the last heartbeat plus the ttl. */
  expiresAt: Date;
  /**
   * The stream bound (broadcast-rules.ts): kept a grace ahead by the instance holding the peer's
   * Heartbeat stream; now when withdrawn. Unset until a stream holds the broadcast.
   */
  presenceUntil?: Date;
  /** The relay instance holding the peer's Heartbeat stream, while one does. */
  holder?: string;
  /** That stream's token, so that only the stream holding the broadcast ends or releases it. */
  streamId?: string;
  /** When the peer withdrew it (Offline, or a clean end of its stream). */
  withdrawnAt?: Date;
  /**
   * When Ready or a withdraw last changed what watchers see. Heartbeats and presence refreshes do
   * not touch it, so a poll for changes since a time reads only real changes.
   */
  changedAt?: Date;
}

/** A Heartbeat stream taking hold of its peer's broadcast: see {@link RelayStore.extendBroadcast}. */
export interface StreamClaim {
  holder: string;
  streamId: string;
  presenceUntil: Date;
}

/** Outcome of {@link RelayStore.withdrawBroadcast}. */
export type WithdrawResult =
  | { outcome: "withdrawn"; broadcast: BroadcastRecord }
  /** No live broadcast for this peer (or not the one the condition named): nothing changed. */
  | { outcome: "not_online" }
  /** The peer has a live broadcast, but not the one named by broadcastId. */
  | { outcome: "mismatch" };

/** What a presence change feed reports: a broadcast changed by Ready or a withdraw. */
export interface BroadcastChange {
  email: string;
}

/** A running feed of broadcast changes, from {@link RelayStore.watchChanges}. */
export interface ChangeFeed {
  /** "local" (this process's writes), "change-stream" or "poll": logged, and shown in metrics. */
  readonly mode: string;
  /**
   * How far behind the feed may be now, ms: every change written longer ago than this has been
   * reported. 0 for a change stream that is following, the time since the last poll began for a
   * poll, Infinity until the feed first follows and while it has fallen back to starting over.
   */
  readonly lagMs: number;
  stop(): Promise<void>;
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
  /** Moves the registration of fingerprint to retainUntil (a Ready); no-op when there is none. */
  retainRegistration(fingerprint: string, retainUntil: Date): Promise<void>;
  /**
   * Deletes registrations with retainUntil <= now; returns how many (0 where the database's own
   * TTL monitor does it). Their emails are free to register again.
   */
  sweepRegistrations(now: Date): Promise<number>;
  /** Stores broadcast as the peer's only one, replacing any previous broadcast of that fingerprint. */
  putBroadcast(broadcast: BroadcastRecord): Promise<void>;
  /**
   * Moves the live broadcast of fingerprint to expiresAt (lastSeen = now). When broadcastId is
   * given it must be the live broadcast's id. A broadcast that is not live (isLive) is not found.
   * With a claim, the stream named takes hold of the broadcast (holder, streamId, presenceUntil).
   */
  extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date, claim?: StreamClaim): Promise<ExtendResult>;
  /**
   * Withdraws the live broadcast of fingerprint: presenceUntil = withdrawnAt = changedAt = now,
   * no holder. With broadcastId, a live broadcast with another id is a mismatch; with streamId,
   * only a broadcast that stream holds is withdrawn (else not_online: a newer stream or Ready
   * took over). Idempotent: a broadcast already not live is not_online.
   */
  withdrawBroadcast(fingerprint: string, now: Date, condition?: { broadcastId?: string; streamId?: string }): Promise<WithdrawResult>;
  /** Sets presenceUntil on every live broadcast holder holds, in one write; returns how many. */
  refreshPresence(holder: string, now: Date, presenceUntil: Date): Promise<number>;
  /**
   * Lets go of live broadcasts held by holder: those of the streams named, or all when streamIds
   * is undefined (shutdown). They keep presence until presenceUntil (the grace), then are offline
   * unless a new stream takes hold. Returns how many.
   */
  releasePresence(holder: string, streamIds: string[] | undefined, now: Date, presenceUntil: Date): Promise<number>;
  /**
   * The broadcasts of emails (lower-cased) as stored, live or not (a Watch tells why one is
   * offline). Not a read path for Lookup or List: callers apply isLive themselves.
   */
  findBroadcastRecords(emails: string[]): Promise<BroadcastRecord[]>;
  /**
   * Starts reporting broadcasts changed by Ready or a withdraw, on any relay instance sharing
   * this store, within about a second. Failures are logged by the feed, never thrown. onResync
   * is called when changes may have gone unreported (a poll that found more than it reads, a
   * change stream given up for polling): whatever was read before should be read again.
   */
  watchChanges(onChange: (changes: BroadcastChange[]) => void, onResync?: () => void): ChangeFeed;
  /** The live broadcast of email (lower-cased), if any. */
  findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined>;
  /** Up to limit live broadcasts with email > afterEmail, ordered by email. */
  listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]>;
  /**
   * Deletes broadcasts not live at `before` (expiresAt or presenceUntil <= before); returns how
   * many. Reads never depend on it.
   */
  sweepExpired(before: Date): Promise<number>;
  stats(now: Date): Promise<StoreStats>;
  /** Resolves when the store can serve (a database round trip for MongoStore). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Most Lookups one database query serves (MongoStore's lookupBatchSize, the relay's
 * --lookup-batch-size): 1, no batching. See MongoStoreOptions.lookupBatchSize for the reason.
 */
export const defaultLookupBatchSize = 1;

/**
 * Most live broadcasts a relay on a database keeps for Lookup (the relay's --lookup-cache-size):
 * about 1.5 KiB of heap each with two addresses (measured with 100,000), so at most about
 * 75 MiB, and only as many as distinct online peers are looked up; the least recently looked up
 * go first. Twice the 25,000 peers a process is sized for (docs/operating.md). See cacheLookups.
 */
export const defaultLookupCacheSize = 50_000;

/** The store methods that reach the database: every one but close and watchChanges (its feed logs its own failures). */
export const storeOperations = [
  "register",
  "findRegistration",
  "findRegistrationByEmail",
  "retainRegistration",
  "sweepRegistrations",
  "putBroadcast",
  "extendBroadcast",
  "withdrawBroadcast",
  "refreshPresence",
  "releasePresence",
  "findBroadcastRecords",
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
    retainRegistration: (fingerprint, retainUntil) => guard("retainRegistration", () => store.retainRegistration(fingerprint, retainUntil)),
    sweepRegistrations: (now) => guard("sweepRegistrations", () => store.sweepRegistrations(now)),
    putBroadcast: (broadcast) => guard("putBroadcast", () => store.putBroadcast(broadcast)),
    extendBroadcast: (fingerprint, broadcastId, now, expiresAt, claim) => guard("extendBroadcast", () => store.extendBroadcast(fingerprint, broadcastId, now, expiresAt, claim)),
    withdrawBroadcast: (fingerprint, now, condition) => guard("withdrawBroadcast", () => store.withdrawBroadcast(fingerprint, now, condition)),
    refreshPresence: (holder, now, presenceUntil) => guard("refreshPresence", () => store.refreshPresence(holder, now, presenceUntil)),
    releasePresence: (holder, streamIds, now, presenceUntil) => guard("releasePresence", () => store.releasePresence(holder, streamIds, now, presenceUntil)),
    findBroadcastRecords: (emails) => guard("findBroadcastRecords", () => store.findBroadcastRecords(emails)),
    watchChanges: (onChange, onResync) => store.watchChanges(onChange, onResync),
    findBroadcast: (email, now) => guard("findBroadcast", () => store.findBroadcast(email, now)),
    listBroadcasts: (afterEmail, limit, now) => guard("listBroadcasts", () => store.listBroadcasts(afterEmail, limit, now)),
    sweepExpired: (now) => guard("sweepExpired", () => store.sweepExpired(now)),
    stats: (now) => guard("stats", () => store.stats(now)),
    ping: () => guard("ping", () => store.ping()),
    close: () => store.close(),
  };
}

import { MongoBulkWriteError, MongoClient, MongoError, type Collection, type Db, type MongoClientOptions } from "mongodb";
import type { Logger } from "pino";
import { defaultLookupBatchSize, type BroadcastChange, type BroadcastRecord, type ChangeFeed, type ExtendResult, type RegisterResult, type RegistrationRecord, type RelayStore, type StoreStats, type StreamClaim, type WithdrawResult } from "./store.js";
import { isDuplicateKeyError, StoreUnavailableError } from "../errors.js";
import { expiredFilter, isLive, liveFilter } from "../service/broadcast-rules.js";
import { systemClock, type Clock } from "../../shared/clock.js";
import { changeLogRetentionMs, startMongoChangeFeed, type ChangedDocument, type ChangeLogDocument } from "./mongo-change-feed.js";
import { createCoalescedReads, type CoalescedReads } from "./coalesced-reads.js";

/** Options of {@link MongoStore.connect}. */
export interface MongoStoreOptions {
  /** mongodb:// URI; its path names the database (default "relay"). */
  uri: string;
  logger: Logger;
  /**
   * How long an operation waits for a reachable server, ms. Default 2000: the driver's 30 s
   * default would hold every RPC for 30 s while the database is down, instead of answering
   * `unavailable` at once.
   */
  serverSelectionTimeoutMS?: number;
  /** Bound on a stalled operation, ms (driver's socketTimeoutMS). Default 10 000. */
  operationTimeoutMS?: number;
  /** Timers of the change feed's poll. Default: the system clock. */
  clock?: Clock;
  /** How often broadcast changes are polled on a server without change streams, ms. Default 500. */
  changePollIntervalMs?: number;
  /**
   * Most Lookups one database query serves: above 1, findBroadcast reads the Lookups that
   * arrive while a read is in flight together. Default 1 ({@link defaultLookupBatchSize}): every
   * Lookup its own read by `_id`, nothing held back. On FerretDB 1.24, the measured database,
   * batching did not pay end to end: it decodes every stored broadcast for `_id: { $in }`, so at
   * 300 peers Lookup ran about 1.2 times as fast on SQLite (within the spread of the runs) and at
   * about half the rate on PostgreSQL, where reads by `_id` run in parallel from its index
   * (docs/BENCHMARKS.md, "MongoDB (FerretDB): Lookups read together"). On MongoDB `$in` on
   * `_id` is an index read; 256 there bounds one query to about 128 KiB of broadcasts, one
   * reply (not measured: no MongoDB on the benchmark machine).
   */
  lookupBatchSize?: number;
  /**
   * Lookup reads in flight at once; Lookups arriving while all are wait for the next one.
   * Default 1: FerretDB's batched read costs about as much for 2 emails as for 64 (it decodes
   * every stored broadcast), so one read at a time, which lets the batch grow with the load,
   * costs it the least per Lookup; two measured within the noise of one on SQLite
   * (docs/BENCHMARKS.md, "MongoDB (FerretDB): Lookups read together").
   */
  lookupReadsInFlight?: number;
  /**
   * Fewest distinct emails that a batched Lookup read asks for with one `$in` query; fewer are
   * read by `_id` one each, in parallel, as without batching (one email always is). Default
   * 32: FerretDB 1.24 evaluates `_id: { $in }` by decoding every stored broadcast (about 48 ms
   * of its CPU at 300 broadcasts on SQLite and on PostgreSQL), the cost of about 20 reads by
   * `_id` on SQLite and 40 on PostgreSQL there; below 32 the reads by `_id` are the cheaper.
   * MongoDB answers both from the `_id` index.
   */
  lookupInMinimum?: number;
}

interface Connection {
  client: MongoClient;
  db: Db;
  registrations: Collection<RegistrationDocument>;
  broadcasts: Collection<BroadcastDocument>;
  changes: Collection<ChangeLogDocument>;
}

interface RegistrationDocument {
  _id: string; // fingerprint
  email: string;
  certificatePem: string;
  registeredAt: Date;
  /** Absent on registrations stored before retention existed: those are kept until their next Ready. */
  retainUntil?: Date;
}

/**
 * A broadcast, keyed by its email: Lookup, the hottest read, is then a read by `_id`, the one
 * filter FerretDB 1.x (SQLite) evaluates in SQLite rather than by decoding every document. Even
 * that is no index read there: its condition (`_ferretdb_sjson->'$._id'`) is not the expression
 * of its `_id` index (`_ferretdb_sjson->"_id"`), so SQLite parses every stored broadcast, at a
 * cost that grows with their number and their fields (docs/operating.md). MongoDB uses `_id`.
 */
interface BroadcastDocument {
  _id: string; // email, lower-cased
  fingerprint: string;
  broadcastId: string;
  port: number;
  addresses: string[];
  /**
   * Absent when empty (most peers announce none). FerretDB 1.x (SQLite) parses every stored
   * document on each read, `_id` included, and an empty object still costs a nested schema there.
   */
  capabilities?: Record<string, string>;
  observedAddress: string;
  lastSeen: Date;
  expiresAt: Date;
  presenceUntil?: Date;
  holder?: string;
  streamId?: string;
  withdrawnAt?: Date;
  changedAt?: Date;
}

/**
 * Where broadcasts are stored. The earlier layout (`broadcasts`, keyed by fingerprint with a
 * unique email index) is moved here at start: see migrateLegacyBroadcasts.
 */
export const broadcastsCollection = "broadcasts_by_email";
/**
 * The change log: one small entry per Ready or withdraw, which the change feed polls on a server
 * without change streams, and the sweep deletes after a few minutes (mongo-change-feed.ts).
 */
export const changesCollection = "broadcast_changes";
/** The collection of the earlier layout. */
export const legacyBroadcastsCollection = "broadcasts";

/** Documents of the legacy layout: `_id` is the fingerprint. */
interface LegacyBroadcastDocument extends Omit<BroadcastDocument, "_id" | "fingerprint"> {
  _id: string;
  email: string;
}

// Server answers to createIndexes with expireAfterSeconds that mean "no TTL indexes here"
// (FerretDB 1.x answers NotImplemented, 238); the relay then sweeps expired broadcasts itself.
const ttlUnsupportedCodes = new Set([238, 115 /* CommandNotSupported */, 67 /* CannotCreateIndex */]);

/** RelayStore on MongoDB (or a MongoDB wire-protocol server such as FerretDB). */
export class MongoStore implements RelayStore {
  readonly kind = "mongodb";
  /** False when the server refused the TTL index: sweepExpired then deletes expired broadcasts itself. */
  ttlIndex = true;
  /** False when the server refused the TTL index on registrations: sweepRegistrations then deletes stale ones itself. */
  registrationTtlIndex = true;

  private connection: Promise<Connection> | undefined;
  /** Index creation and the layout move, once per store: concurrent first calls share it. */
  private indexes: Promise<void> | undefined;
  private closed = false;
  /** Lookup's reads, coalesced (see findBroadcast); undefined with a lookupBatchSize of 1. */
  private readonly lookups: CoalescedReads<string, BroadcastDocument> | undefined;

  private constructor(
    private readonly uri: string,
    private readonly clientOptions: MongoClientOptions,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly changePollIntervalMs: number | undefined,
    lookupBatch: { size: number; readsInFlight: number; inMinimum: number },
  ) {
    this.lookups = lookupBatch.size === 1 ? undefined : createCoalescedReads({ read: (emails) => this.readBroadcasts(emails, lookupBatch.inMinimum), maxBatchSize: lookupBatch.size, maxReadsInFlight: lookupBatch.readsInFlight });
  }

  /**
   * Connects and creates the indexes. Does not fail when the database is down at start: RPCs
   * answer `unavailable` until it is up, and the indexes are created before any operation
   * (see ready), so uniqueness never goes unenforced.
   */
  static async connect(options: MongoStoreOptions): Promise<MongoStore> {
    const store = new MongoStore(
      options.uri,
      {
        serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
        connectTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
        // Bounds a stalled operation on a connected socket. (Driver 7.9 ignores timeoutMS and
        // warns that it is deprecated, so it is not set.)
        socketTimeoutMS: options.operationTimeoutMS ?? 10_000,
        appName: "relay",
      },
      options.logger,
      options.clock ?? systemClock,
      options.changePollIntervalMs,
      { size: options.lookupBatchSize ?? defaultLookupBatchSize, readsInFlight: options.lookupReadsInFlight ?? 1, inMinimum: options.lookupInMinimum ?? 32 },
    );
    try {
      await store.ready();
    } catch (error) {
      options.logger.error({ err: error }, "failed to reach the database at start; RPCs answer unavailable until it is up");
    }
    return store;
  }

  /**
   * The collections, once connected and indexed. A client whose first connection failed is
   * closed by the driver for good ("Topology is closed"), so a failed connect is forgotten and
   * the next call starts a new client; after one success the driver reconnects by itself.
   */
  private async ready(): Promise<Connection> {
    if (this.closed) throw new StoreUnavailableError("store is closed");
    this.connection ??= this.open().catch((error: unknown) => {
      this.connection = undefined;
      throw error;
    });
    const connection = await this.connection;
    this.indexes ??= this.ensureIndexes(connection).catch((error: unknown) => {
      this.indexes = undefined;
      throw error;
    });
    await this.indexes;
    return connection;
  }

  private async open(): Promise<Connection> {
    const client = new MongoClient(this.uri, this.clientOptions);
    try {
      await client.connect();
    } catch (error) {
      await client.close().catch(() => {});
      throw error;
    }
    const db: Db = client.db();
    return { client, db, registrations: db.collection("registrations"), broadcasts: db.collection(broadcastsCollection), changes: db.collection(changesCollection) };
  }

  /** Creates the indexes once; safe to call again after a failure. */
  private async ensureIndexes(connection: Connection): Promise<void> {
    const { registrations, broadcasts, changes } = connection;
    await registrations.createIndex({ email: 1 }, { unique: true, name: "email_unique" });
    // Heartbeats, Offline and stream ends name the peer by fingerprint; one broadcast per peer.
    await broadcasts.createIndex({ fingerprint: 1 }, { unique: true, name: "fingerprint_unique" });
    // TTL indexes where the server has them; plain indexes for the relay's own sweeps where not.
    // One warning names every refused index.
    const refused: Array<{ index: string; code: number }> = [];
    const ttl = async (collection: Collection<RegistrationDocument> | Collection<BroadcastDocument>, field: string, name: string): Promise<boolean> => {
      try {
        await collection.createIndex({ [field]: 1 }, { expireAfterSeconds: 0, name: `${name}_ttl` });
        return true;
      } catch (error) {
        if (!(error instanceof MongoError) || typeof error.code !== "number" || !ttlUnsupportedCodes.has(error.code)) throw error;
        refused.push({ index: `${collection.collectionName}.${field}`, code: error.code });
        await collection.createIndex({ [field]: 1 }, { name });
        return false;
      }
    };
    this.ttlIndex = await ttl(broadcasts, "expiresAt", "expires_at");
    this.registrationTtlIndex = await ttl(registrations, "retainUntil", "retain_until");
    if (refused.length > 0) {
      this.logger.warn({ code: refused[0]!.code, indexes: refused.map((r) => r.index) }, `database refused the TTL index on ${refused.map((r) => r.index).join(" and ")}; the relay sweeps expired broadcasts and stale registrations itself`);
    }
    // The presence refresh and release find an instance's broadcasts by holder; the sweep finds
    // ended presence by presenceUntil; the change poll and the sweep read the log by time.
    await broadcasts.createIndex({ holder: 1 }, { name: "holder" });
    await broadcasts.createIndex({ changedAt: 1 }, { name: "changed_at" });
    await broadcasts.createIndex({ presenceUntil: 1 }, { name: "presence_until" });
    await changes.createIndex({ at: 1 }, { name: "at" });
    await this.migrateLegacyBroadcasts(connection);
  }

  /**
   * Moves the broadcasts of the earlier layout (collection `broadcasts`, `_id` = fingerprint)
   * into {@link broadcastsCollection} (`_id` = email), then drops the old collection. Only live
   * broadcasts are worth moving: the others are offline whatever happens. A broadcast already
   * in the new collection (a later Ready through this version) wins. Safe to run again after a
   * failure part-way: the old collection is dropped only once everything was copied.
   * Registrations keep their layout: nothing of them is touched.
   */
  private async migrateLegacyBroadcasts({ db, broadcasts }: Connection): Promise<void> {
    const legacy = await db.listCollections({ name: legacyBroadcastsCollection }, { nameOnly: true }).toArray();
    if (legacy.length === 0) return;
    const now = new Date(this.clock.now());
    const old = db.collection<LegacyBroadcastDocument>(legacyBroadcastsCollection);
    let moved = 0;
    let kept = 0;
    const batch: BroadcastDocument[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const documents = batch.splice(0);
      try {
        moved += (await broadcasts.insertMany(documents, { ordered: false })).insertedCount;
      } catch (error) {
        // Duplicates are broadcasts the new layout already has: those win. Anything else fails the start.
        if (!(error instanceof MongoBulkWriteError) || error.writeErrors === undefined || !writeErrorsOf(error).every((e) => e.code === 11000)) throw error;
        moved += error.insertedCount;
        kept += writeErrorsOf(error).length;
      }
    };
    for await (const document of old.find(liveFilter(now))) {
      const { _id: fingerprint, email, ...rest } = document;
      batch.push({ ...rest, _id: email, fingerprint });
      if (batch.length >= 500) await flush();
    }
    await flush();
    await old.drop().catch((error: unknown) => {
      // Another instance migrating at the same time dropped it first (NamespaceNotFound).
      if (!(error instanceof MongoError && error.code === 26)) throw error;
    });
    this.logger.info({ moved, kept, from: legacyBroadcastsCollection, to: broadcastsCollection }, `moved ${moved} live broadcasts of the previous layout to ${broadcastsCollection} and dropped ${legacyBroadcastsCollection}`);
  }

  async register(registration: RegistrationRecord): Promise<RegisterResult> {
    const { registrations } = await this.ready();
    // By fingerprint first (a read by `_id`), then an insert that the unique email index guards:
    // the paths of a reconnect and of a new peer never read by email, which FerretDB 1.x does by
    // reading every registration. Two tries: a duplicate key means another Register won a race
    // (the MongoDB manual: concurrent inserts on a unique key fail with E11000), read it back.
    for (let attempt = 0; attempt < 2; attempt++) {
      const byFingerprint = await registrations.findOne({ _id: registration.fingerprint });
      if (byFingerprint !== null) {
        if (byFingerprint.email === registration.email) return { outcome: "existing", registration: toRegistration(byFingerprint) };
        // Both bound elsewhere: the email's binding is what the caller asked about first.
        const byEmail = await registrations.findOne({ email: registration.email });
        return byEmail !== null ? { outcome: "email_taken" } : { outcome: "certificate_taken", email: byFingerprint.email };
      }
      try {
        await registrations.insertOne({ _id: registration.fingerprint, email: registration.email, certificatePem: registration.certificatePem, registeredAt: registration.registeredAt, retainUntil: registration.retainUntil });
        return { outcome: "created", registration };
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
        const byEmail = await registrations.findOne({ email: registration.email });
        if (byEmail !== null) return byEmail._id === registration.fingerprint ? { outcome: "existing", registration: toRegistration(byEmail) } : { outcome: "email_taken" };
        // The duplicate was this fingerprint, bound to another email meanwhile: read it again.
        if (attempt > 0) throw error;
      }
    }
    throw new Error("unreachable");
  }

  async findRegistration(fingerprint: string): Promise<RegistrationRecord | undefined> {
    const { registrations } = await this.ready();
    const document = await registrations.findOne({ _id: fingerprint });
    return document === null ? undefined : toRegistration(document);
  }

  async findRegistrationByEmail(email: string): Promise<RegistrationRecord | undefined> {
    const { registrations } = await this.ready();
    const document = await registrations.findOne({ email });
    return document === null ? undefined : toRegistration(document);
  }

  async retainRegistration(fingerprint: string, retainUntil: Date): Promise<void> {
    const { registrations } = await this.ready();
    await registrations.updateOne({ _id: fingerprint }, { $set: { retainUntil } });
  }

  async sweepRegistrations(now: Date): Promise<number> {
    const { registrations } = await this.ready();
    // With a TTL index the database deletes them itself (within a minute or so of retainUntil).
    if (this.registrationTtlIndex) return 0;
    const result = await registrations.deleteMany({ retainUntil: { $lte: now } });
    return result.deletedCount;
  }

  async putBroadcast(broadcast: BroadcastRecord): Promise<void> {
    const { broadcasts, changes } = await this.ready();
    const { email, capabilities, ...rest } = broadcast;
    const changedAt = rest.changedAt ?? rest.lastSeen;
    const document = definedOnly({ ...rest, capabilities: Object.keys(capabilities).length > 0 ? capabilities : undefined, changedAt });
    try {
      await broadcasts.replaceOne({ _id: email }, document, { upsert: true });
    } catch (error) {
      // Two Ready calls of one peer racing to insert: the loser's upsert hits the unique _id. Or
      // this certificate still has a broadcast under an email it was registered to before (that
      // registration expired and it registered again): the peer has one broadcast, this one.
      if (!isDuplicateKeyError(error)) throw error;
      await broadcasts.deleteMany({ fingerprint: broadcast.fingerprint, _id: { $ne: email } });
      await broadcasts.replaceOne({ _id: email }, document, { upsert: true });
    }
    // After the broadcast: an entry never announces what a read cannot find yet. Should it fail,
    // the Ready fails and the peer announces again.
    await changes.insertOne({ email, at: changedAt });
  }

  async extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date, claim?: StreamClaim): Promise<ExtendResult> {
    const { broadcasts } = await this.ready();
    const live = { fingerprint, ...liveFilter(now) };
    const updated = await broadcasts.findOneAndUpdate(broadcastId === undefined ? live : { ...live, broadcastId }, { $set: { lastSeen: now, expiresAt, ...claim } }, { returnDocument: "after" });
    if (updated !== null) return { outcome: "extended", broadcast: toBroadcast(updated) };
    if (broadcastId === undefined) return { outcome: "not_found" };
    return (await broadcasts.countDocuments(live, { limit: 1 })) > 0 ? { outcome: "mismatch" } : { outcome: "not_found" };
  }

  async withdrawBroadcast(fingerprint: string, now: Date, condition: { broadcastId?: string; streamId?: string } = {}): Promise<WithdrawResult> {
    const { broadcasts, changes } = await this.ready();
    const live = { fingerprint, ...liveFilter(now) };
    const updated = await broadcasts.findOneAndUpdate(
      { ...live, ...(condition.broadcastId === undefined ? {} : { broadcastId: condition.broadcastId }), ...(condition.streamId === undefined ? {} : { streamId: condition.streamId }) },
      { $set: { presenceUntil: now, withdrawnAt: now, changedAt: now }, $unset: { holder: "", streamId: "" } },
      { returnDocument: "after" },
    );
    if (updated !== null) {
      await changes.insertOne({ email: updated._id, at: now });
      return { outcome: "withdrawn", broadcast: toBroadcast(updated) };
    }
    if (condition.broadcastId === undefined) return { outcome: "not_online" };
    return (await broadcasts.countDocuments(live, { limit: 1 })) > 0 ? { outcome: "mismatch" } : { outcome: "not_online" };
  }

  async refreshPresence(holder: string, now: Date, presenceUntil: Date): Promise<number> {
    const { broadcasts } = await this.ready();
    const result = await broadcasts.updateMany({ holder, ...liveFilter(now) }, { $set: { presenceUntil } });
    return result.modifiedCount;
  }

  async releasePresence(holder: string, streamIds: string[] | undefined, now: Date, presenceUntil: Date): Promise<number> {
    const { broadcasts } = await this.ready();
    const result = await broadcasts.updateMany({ holder, ...liveFilter(now), ...(streamIds === undefined ? {} : { streamId: { $in: streamIds } }) }, { $set: { presenceUntil }, $unset: { holder: "", streamId: "" } });
    return result.modifiedCount;
  }

  async findBroadcastRecords(emails: string[]): Promise<BroadcastRecord[]> {
    const { broadcasts } = await this.ready();
    const documents = await broadcasts.find({ _id: { $in: [...new Set(emails)] } }).toArray();
    return documents.map(toBroadcast);
  }

  watchChanges(onChange: (changes: BroadcastChange[]) => void, onResync?: () => void): ChangeFeed {
    return startMongoChangeFeed({
      broadcasts: async () => (await this.ready()).broadcasts as unknown as Collection<ChangedDocument>,
      changes: async () => (await this.ready()).changes,
      onChange,
      ...(onResync === undefined ? {} : { onResync }),
      clock: this.clock,
      logger: this.logger,
      ...(this.changePollIntervalMs === undefined ? {} : { pollIntervalMs: this.changePollIntervalMs }),
    });
  }

  /**
   * Lookup's read: by `_id`, or with a lookupBatchSize above 1 batched: Lookups arriving while
   * a read is in flight wait and are read together when it returns (createCoalescedReads), so
   * one query serves many Lookups, and a Lookup on an idle relay goes out at once. Each caller
   * checks liveness at its own `now`, so the answer is what a read of its own, made after the
   * call, would say.
   */
  async findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined> {
    const document = this.lookups === undefined ? await this.readBroadcast(email) : await this.lookups.load(email);
    return document === undefined || !isLive(document, now) ? undefined : toBroadcast(document);
  }

  /** The broadcast of one email, by `_id` alone. */
  private async readBroadcast(email: string): Promise<BroadcastDocument | undefined> {
    const { broadcasts } = await this.ready();
    return (await broadcasts.findOne({ _id: email })) ?? undefined;
  }

  /** The broadcasts of distinct emails, by email, for findBroadcast. */
  private async readBroadcasts(emails: string[], inMinimum: number): Promise<Map<string, BroadcastDocument>> {
    // By `_id` alone, liveness checked by the caller: FerretDB 1.x evaluates any other filter
    // (even `_id` with one more condition) by decoding every document, about 45 ms at 3,000
    // broadcasts (`_id` alone: about 16 ms of its CPU there, 2 ms at 300, see BroadcastDocument).
    // `$in` is decoded that way too, so it pays only for many emails at once (lookupInMinimum),
    // never for one. One reply for the whole batch: the first reply otherwise holds 101 documents.
    const documents =
      emails.length > 1 && emails.length >= inMinimum
        ? await (await this.ready()).broadcasts.find({ _id: { $in: emails } }, { batchSize: emails.length }).toArray()
        : await Promise.all(emails.map((email) => this.readBroadcast(email)));
    return new Map(documents.filter((document) => document !== undefined).map((document) => [document._id, document]));
  }

  async listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]> {
    const { broadcasts } = await this.ready();
    const documents = await broadcasts
      .find({ _id: { $gt: afterEmail }, ...liveFilter(now) })
      .sort({ _id: 1 })
      .limit(limit)
      .toArray();
    return documents.map(toBroadcast);
  }

  async sweepExpired(before: Date): Promise<number> {
    const { broadcasts, changes } = await this.ready();
    // A TTL index reclaims broadcasts past expiresAt, not those whose presence ended (lost or
    // withdrawn), so the sweep runs either way. Reads filter on liveness: it only frees space.
    const result = await broadcasts.deleteMany(expiredFilter(before));
    // The change log keeps what a poll may still read, whatever the sweep's retention.
    await changes.deleteMany({ at: { $lt: new Date(before.getTime() - changeLogRetentionMs) } });
    return result.deletedCount;
  }

  async stats(now: Date): Promise<StoreStats> {
    const { registrations, broadcasts } = await this.ready();
    const live = liveFilter(now);
    const [registered, online, onlineIpv6, onlineIpv4] = await Promise.all([
      registrations.estimatedDocumentCount(),
      broadcasts.countDocuments(live),
      broadcasts.countDocuments({ ...live, $or: [{ addresses: { $regex: ":" } }, { observedAddress: { $regex: ":" } }] }),
      broadcasts.countDocuments({ ...live, $or: [{ addresses: { $regex: "^[0-9.]+$" } }, { observedAddress: { $regex: "^[0-9.]+$" } }] }),
    ]);
    return { registrations: registered, online, onlineIpv4, onlineIpv6 };
  }

  async ping(): Promise<void> {
    const { client } = await this.ready();
    await client.db().command({ ping: 1 });
  }

  async close(): Promise<void> {
    this.closed = true;
    const connection = await this.connection?.catch(() => undefined);
    await connection?.client.close();
  }
}

/** The latest time a Date holds: "not scheduled for deletion". */
const farFuture = new Date(8.64e15);

function toRegistration(document: RegistrationDocument): RegistrationRecord {
  // A registration from before retention existed has no retainUntil: kept until its next Ready.
  return { fingerprint: document._id, email: document.email, certificatePem: document.certificatePem, registeredAt: document.registeredAt, retainUntil: document.retainUntil ?? farFuture };
}

function toBroadcast(document: BroadcastDocument): BroadcastRecord {
  return {
    broadcastId: document.broadcastId,
    fingerprint: document.fingerprint,
    email: document._id,
    port: document.port,
    // Copies: one read's document answers every Lookup of that email in its batch.
    addresses: [...document.addresses],
    capabilities: { ...document.capabilities },
    observedAddress: document.observedAddress,
    lastSeen: document.lastSeen,
    expiresAt: document.expiresAt,
    ...definedOnly({ presenceUntil: document.presenceUntil ?? undefined, holder: document.holder ?? undefined, streamId: document.streamId ?? undefined, withdrawnAt: document.withdrawnAt ?? undefined, changedAt: document.changedAt ?? undefined }),
  };
}

/** object without its undefined fields: the driver would store them as null. */
function definedOnly<T extends object>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as T;
}

/** The write errors of a bulk write, one or many (the driver's type says one or an array). */
function writeErrorsOf(error: MongoBulkWriteError): Array<{ code: number }> {
  const errors = error.writeErrors as unknown;
  return Array.isArray(errors) ? errors : [errors as { code: number }];
}

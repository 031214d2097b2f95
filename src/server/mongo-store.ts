import { MongoClient, MongoError, type Collection, type Db, type MongoClientOptions } from "mongodb";
import type { Logger } from "pino";
import type { Broadcast, ExtendResult, RegisterResult, Registration, RelayStore, StoreStats } from "./store.js";
import { isDuplicateKeyError } from "./errors.js";

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
  /** Bound on each whole operation, ms (driver's timeoutMS, safe from driver 7.8). Default 5000. */
  operationTimeoutMS?: number;
}

interface RegistrationDocument {
  _id: string; // fingerprint
  email: string;
  certificatePem: string;
  registeredAt: Date;
}

interface BroadcastDocument {
  _id: string; // fingerprint
  broadcastId: string;
  email: string;
  port: number;
  addresses: string[];
  capabilities: Record<string, string>;
  observedAddress: string;
  lastSeen: Date;
  expiresAt: Date;
}

// Server answers to createIndexes with expireAfterSeconds that mean "no TTL indexes here"
// (FerretDB 1.x answers NotImplemented, 238); the relay then sweeps expired broadcasts itself.
const ttlUnsupportedCodes = new Set([238, 115 /* CommandNotSupported */, 67 /* CannotCreateIndex */]);

/** RelayStore on MongoDB (or a MongoDB wire-protocol server such as FerretDB). */
export class MongoStore implements RelayStore {
  readonly kind = "mongodb";
  /** False when the server refused the TTL index: sweepExpired then deletes expired broadcasts itself. */
  ttlIndex = true;

  private constructor(
    private readonly client: MongoClient,
    private readonly registrations: Collection<RegistrationDocument>,
    private readonly broadcasts: Collection<BroadcastDocument>,
    private readonly logger: Logger,
  ) {}

  /**
   * Connects and creates the indexes. Does not fail when the database is down at start: RPCs
   * answer `unavailable` until it is up, and the indexes are created before the first write
   * (see ensureIndexes), so uniqueness never goes unenforced.
   */
  static async connect(options: MongoStoreOptions): Promise<MongoStore> {
    const clientOptions: MongoClientOptions = {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
      connectTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
      timeoutMS: options.operationTimeoutMS ?? 5000,
      appName: "relay",
    };
    const client = new MongoClient(options.uri, clientOptions);
    const db: Db = client.db();
    const store = new MongoStore(client, db.collection("registrations"), db.collection("broadcasts"), options.logger);
    try {
      await store.ensureIndexes();
    } catch (error) {
      options.logger.error({ err: error }, "failed to reach the database at start; RPCs answer unavailable until it is up");
    }
    return store;
  }

  private indexesReady = false;

  /** Creates the indexes once; safe to call again after a failure. */
  async ensureIndexes(): Promise<void> {
    if (this.indexesReady) return;
    await this.registrations.createIndex({ email: 1 }, { unique: true, name: "email_unique" });
    await this.broadcasts.createIndex({ email: 1 }, { unique: true, name: "email_unique" });
    try {
      await this.broadcasts.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0, name: "expires_at_ttl" });
    } catch (error) {
      if (!(error instanceof MongoError) || typeof error.code !== "number" || !ttlUnsupportedCodes.has(error.code)) throw error;
      this.ttlIndex = false;
      this.logger.warn({ code: error.code, message: error.message }, "database refused the TTL index on broadcasts.expiresAt; the relay sweeps expired broadcasts itself");
      await this.broadcasts.createIndex({ expiresAt: 1 }, { name: "expires_at" });
    }
    this.indexesReady = true;
  }

  async register(registration: Registration): Promise<RegisterResult> {
    await this.ensureIndexes();
    // Two tries: a duplicate-key failure means another Register won a race, so the second read
    // sees the winner (DESIGN.md: concurrent upserts on a unique key can fail with E11000).
    for (let attempt = 0; attempt < 2; attempt++) {
      const byEmail = await this.registrations.findOne({ email: registration.email });
      if (byEmail !== null) return byEmail._id === registration.fingerprint ? { outcome: "existing", registration: toRegistration(byEmail) } : { outcome: "email_taken" };
      const byFingerprint = await this.registrations.findOne({ _id: registration.fingerprint });
      if (byFingerprint !== null) {
        // A concurrent Register of this very binding may have landed between the two reads.
        return byFingerprint.email === registration.email ? { outcome: "existing", registration: toRegistration(byFingerprint) } : { outcome: "certificate_taken", email: byFingerprint.email };
      }
      try {
        await this.registrations.insertOne({ _id: registration.fingerprint, email: registration.email, certificatePem: registration.certificatePem, registeredAt: registration.registeredAt });
        return { outcome: "created", registration };
      } catch (error) {
        if (!isDuplicateKeyError(error) || attempt > 0) throw error;
      }
    }
    throw new Error("unreachable");
  }

  async findRegistration(fingerprint: string): Promise<Registration | undefined> {
    const document = await this.registrations.findOne({ _id: fingerprint });
    return document === null ? undefined : toRegistration(document);
  }

  async putBroadcast(broadcast: Broadcast): Promise<void> {
    await this.ensureIndexes();
    const { fingerprint, ...rest } = broadcast;
    try {
      await this.broadcasts.replaceOne({ _id: fingerprint }, rest, { upsert: true });
    } catch (error) {
      // Two Ready calls of one peer racing to insert: the loser's upsert hits the unique _id.
      if (!isDuplicateKeyError(error)) throw error;
      await this.broadcasts.replaceOne({ _id: fingerprint }, rest, { upsert: true });
    }
  }

  async extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date): Promise<ExtendResult> {
    const live = { _id: fingerprint, expiresAt: { $gt: now } };
    const updated = await this.broadcasts.findOneAndUpdate(broadcastId === undefined ? live : { ...live, broadcastId }, { $set: { lastSeen: now, expiresAt } }, { returnDocument: "after" });
    if (updated !== null) return { outcome: "extended", broadcast: toBroadcast(updated) };
    if (broadcastId === undefined) return { outcome: "not_found" };
    return (await this.broadcasts.countDocuments(live, { limit: 1 })) > 0 ? { outcome: "mismatch" } : { outcome: "not_found" };
  }

  async findBroadcast(email: string, now: Date): Promise<Broadcast | undefined> {
    const document = await this.broadcasts.findOne({ email, expiresAt: { $gt: now } });
    return document === null ? undefined : toBroadcast(document);
  }

  async listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<Broadcast[]> {
    const documents = await this.broadcasts
      .find({ email: { $gt: afterEmail }, expiresAt: { $gt: now } })
      .sort({ email: 1 })
      .limit(limit)
      .toArray();
    return documents.map(toBroadcast);
  }

  async sweepExpired(now: Date): Promise<number> {
    // With a TTL index the database reclaims expired broadcasts itself; reads filter on expiry
    // either way, so the sweep only frees space.
    if (this.ttlIndex) return 0;
    const result = await this.broadcasts.deleteMany({ expiresAt: { $lte: now } });
    return result.deletedCount;
  }

  async stats(now: Date): Promise<StoreStats> {
    const live = { expiresAt: { $gt: now } };
    const [registrations, online, onlineIpv6, onlineIpv4] = await Promise.all([
      this.registrations.estimatedDocumentCount(),
      this.broadcasts.countDocuments(live),
      this.broadcasts.countDocuments({ ...live, $or: [{ addresses: { $regex: ":" } }, { observedAddress: { $regex: ":" } }] }),
      this.broadcasts.countDocuments({ ...live, $or: [{ addresses: { $regex: "^[0-9.]+$" } }, { observedAddress: { $regex: "^[0-9.]+$" } }] }),
    ]);
    return { registrations, online, onlineIpv4, onlineIpv6 };
  }

  async ping(): Promise<void> {
    await this.client.db().command({ ping: 1 });
    await this.ensureIndexes();
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function toRegistration(document: RegistrationDocument): Registration {
  return { fingerprint: document._id, email: document.email, certificatePem: document.certificatePem, registeredAt: document.registeredAt };
}

function toBroadcast(document: BroadcastDocument): Broadcast {
  return {
    broadcastId: document.broadcastId,
    fingerprint: document._id,
    email: document.email,
    port: document.port,
    addresses: document.addresses,
    capabilities: document.capabilities ?? {},
    observedAddress: document.observedAddress,
    lastSeen: document.lastSeen,
    expiresAt: document.expiresAt,
  };
}

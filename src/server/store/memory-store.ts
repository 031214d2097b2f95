import type { BroadcastChange, BroadcastRecord, ChangeFeed, ExtendResult, RegisterResult, RegistrationRecord, RelayStore, StoreStats, StreamClaim, WithdrawResult } from "./store.js";
import { addressFamily } from "../service/validation.js";
import { isLiveAt } from "../service/broadcast-rules.js";
import { forEachInSlices } from "../../shared/in-slices.js";
import { SortedKeys } from "./sorted-keys.js";

/**
 * The embedded store: state in this process only, lost on restart. For one relay on one machine
 * (development, small deployments); several relays need MongoStore.
 *
 * The passes over every entry (the presence refresh, the sweeps) run in slices with a turn of the
 * event loop between them (in-slices.ts): done at once they held every call for tens of ms at
 * 10,000 peers. Each entry is judged as it is when its slice reaches it.
 *
 * Broadcasts are kept as {@link StoredBroadcast}s, their times as numbers written in place: a
 * heartbeat or a presence refresh allocates nothing that the broadcast keeps.
 */
export class MemoryStore implements RelayStore {
  readonly kind = "memory";
  private readonly registrations = new Map<string, RegistrationRecord>();
  private readonly fingerprintByEmail = new Map<string, string>();
  private readonly broadcasts = new Map<string, StoredBroadcast>();
  private readonly fingerprintByBroadcastEmail = new Map<string, string>();
  /** The keys of fingerprintByBroadcastEmail in order, for List's pages. */
  private readonly broadcastEmails = new SortedKeys();
  /**
   * Which broadcast each open Heartbeat stream claimed, so a lost stream is released without a
   * walk over every broadcast (a mass disconnect would otherwise cost the square of the peers).
   * A hint: every use checks the broadcast still names the stream. Entries go when the stream
   * ends (a withdraw or a release naming it).
   */
  private readonly fingerprintByStream = new Map<string, string>();
  private readonly feeds = new Set<(changes: BroadcastChange[]) => void>();

  async register(registration: RegistrationRecord): Promise<RegisterResult> {
    const boundFingerprint = this.fingerprintByEmail.get(registration.email);
    if (boundFingerprint !== undefined) {
      return boundFingerprint === registration.fingerprint ? { outcome: "existing", registration: { ...this.registrations.get(boundFingerprint)! } } : { outcome: "email_taken" };
    }
    const existing = this.registrations.get(registration.fingerprint);
    if (existing !== undefined) return { outcome: "certificate_taken", email: existing.email };
    this.registrations.set(registration.fingerprint, { ...registration });
    this.fingerprintByEmail.set(registration.email, registration.fingerprint);
    return { outcome: "created", registration: { ...registration } };
  }

  async findRegistration(fingerprint: string): Promise<RegistrationRecord | undefined> {
    const registration = this.registrations.get(fingerprint);
    return registration === undefined ? undefined : { ...registration };
  }

  async findRegistrationByEmail(email: string): Promise<RegistrationRecord | undefined> {
    const fingerprint = this.fingerprintByEmail.get(email);
    return fingerprint === undefined ? undefined : this.findRegistration(fingerprint);
  }

  async retainRegistration(fingerprint: string, retainUntil: Date): Promise<void> {
    const registration = this.registrations.get(fingerprint);
    if (registration !== undefined) this.registrations.set(fingerprint, { ...registration, retainUntil });
  }

  async sweepRegistrations(now: Date): Promise<number> {
    let swept = 0;
    await forEachInSlices(this.registrations, ([fingerprint, registration]) => {
      if (registration.retainUntil > now) return;
      this.registrations.delete(fingerprint);
      if (this.fingerprintByEmail.get(registration.email) === fingerprint) this.fingerprintByEmail.delete(registration.email);
      swept++;
    });
    return swept;
  }

  async putBroadcast(broadcast: BroadcastRecord): Promise<void> {
    this.broadcasts.set(broadcast.fingerprint, new StoredBroadcast(broadcast));
    if (!this.fingerprintByBroadcastEmail.has(broadcast.email)) this.broadcastEmails.add(broadcast.email);
    this.fingerprintByBroadcastEmail.set(broadcast.email, broadcast.fingerprint);
    this.notify(broadcast.email);
  }

  async extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date, claim?: StreamClaim): Promise<ExtendResult> {
    const broadcast = this.broadcasts.get(fingerprint);
    if (broadcast === undefined || !broadcast.isLive(now.getTime())) return { outcome: "not_found" };
    if (broadcastId !== undefined && broadcast.broadcastId !== broadcastId) return { outcome: "mismatch" };
    broadcast.lastSeenMs = now.getTime();
    broadcast.expiresAtMs = expiresAt.getTime();
    if (claim !== undefined) {
      broadcast.holder = claim.holder;
      broadcast.streamId = claim.streamId;
      broadcast.presenceUntilMs = claim.presenceUntil.getTime();
      if (claim.streamId !== undefined) this.fingerprintByStream.set(claim.streamId, fingerprint);
    }
    return { outcome: "extended", broadcast: broadcast.toRecord() };
  }

  async withdrawBroadcast(fingerprint: string, now: Date, condition: { broadcastId?: string; streamId?: string } = {}): Promise<WithdrawResult> {
    if (condition.streamId !== undefined) this.fingerprintByStream.delete(condition.streamId);
    const broadcast = this.broadcasts.get(fingerprint);
    const nowMs = now.getTime();
    if (broadcast === undefined || !broadcast.isLive(nowMs)) return { outcome: "not_online" };
    if (condition.broadcastId !== undefined && broadcast.broadcastId !== condition.broadcastId) return { outcome: "mismatch" };
    if (condition.streamId !== undefined && broadcast.streamId !== condition.streamId) return { outcome: "not_online" };
    broadcast.presenceUntilMs = nowMs;
    broadcast.withdrawnAtMs = nowMs;
    broadcast.changedAtMs = nowMs;
    broadcast.holder = undefined;
    broadcast.streamId = undefined;
    this.notify(broadcast.email);
    return { outcome: "withdrawn", broadcast: broadcast.toRecord() };
  }

  async refreshPresence(holder: string, now: Date, presenceUntil: Date): Promise<number> {
    let refreshed = 0;
    const nowMs = now.getTime();
    const untilMs = presenceUntil.getTime();
    await forEachInSlices(this.broadcasts.values(), (broadcast) => {
      if (broadcast.holder !== holder || !broadcast.isLive(nowMs)) return;
      // Never back: a beat between two slices may have claimed it with a later deadline.
      if (broadcast.presenceUntilMs === unset || broadcast.presenceUntilMs < untilMs) broadcast.presenceUntilMs = untilMs;
      refreshed++;
    });
    return refreshed;
  }

  async releasePresence(holder: string, streamIds: string[] | undefined, now: Date, presenceUntil: Date): Promise<number> {
    // Named streams (one lost stream): through the index. All of a holder's (shutdown): a walk.
    const candidates: Iterable<StoredBroadcast> =
      streamIds === undefined
        ? this.broadcasts.values()
        : streamIds.flatMap((streamId) => {
            const fingerprint = this.fingerprintByStream.get(streamId);
            this.fingerprintByStream.delete(streamId);
            const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
            return broadcast !== undefined && broadcast.streamId === streamId ? [broadcast] : [];
          });
    let released = 0;
    const nowMs = now.getTime();
    for (const broadcast of candidates) {
      if (broadcast.holder !== holder || !broadcast.isLive(nowMs)) continue;
      if (broadcast.streamId !== undefined) this.fingerprintByStream.delete(broadcast.streamId);
      broadcast.presenceUntilMs = presenceUntil.getTime();
      broadcast.holder = undefined;
      broadcast.streamId = undefined;
      released++;
    }
    return released;
  }

  async findBroadcastRecords(emails: string[]): Promise<BroadcastRecord[]> {
    const found: BroadcastRecord[] = [];
    for (const email of new Set(emails)) {
      const fingerprint = this.fingerprintByBroadcastEmail.get(email);
      const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
      if (broadcast !== undefined) found.push(broadcast.toRecord());
    }
    return found;
  }

  watchChanges(onChange: (changes: BroadcastChange[]) => void): ChangeFeed {
    // One process holds all the state: every change is a write through this object.
    this.feeds.add(onChange);
    return {
      mode: "local",
      lagMs: 0,
      stop: async () => {
        this.feeds.delete(onChange);
      },
    };
  }

  private notify(email: string): void {
    if (this.feeds.size === 0) return;
    const feeds = [...this.feeds];
    // After the write's promise settles, as a database's feed would report it.
    queueMicrotask(() => {
      for (const feed of feeds) feed([{ email }]);
    });
  }

  async findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined> {
    const fingerprint = this.fingerprintByBroadcastEmail.get(email);
    const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
    return broadcast !== undefined && broadcast.isLive(now.getTime()) ? broadcast.toRecord() : undefined;
  }

  async listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]> {
    // From the cursor in email order: the page, plus whatever is no longer live between its
    // entries (the sweep removes those within its retention).
    const page: BroadcastRecord[] = [];
    const nowMs = now.getTime();
    for (const email of this.broadcastEmails.after(afterEmail)) {
      if (page.length >= limit) break;
      const fingerprint = this.fingerprintByBroadcastEmail.get(email);
      const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
      // An email whose peer has announced under another since is that other email's entry.
      if (broadcast !== undefined && broadcast.email === email && broadcast.isLive(nowMs)) page.push(broadcast.toRecord());
    }
    return page;
  }

  async sweepExpired(before: Date): Promise<number> {
    let swept = 0;
    const beforeMs = before.getTime();
    await forEachInSlices(this.broadcasts, ([fingerprint, broadcast]) => {
      if (broadcast.isLive(beforeMs)) return;
      this.broadcasts.delete(fingerprint);
      if (this.fingerprintByBroadcastEmail.get(broadcast.email) === fingerprint) {
        this.fingerprintByBroadcastEmail.delete(broadcast.email);
        this.broadcastEmails.delete(broadcast.email);
      }
      swept++;
    });
    return swept;
  }

  async stats(now: Date): Promise<StoreStats> {
    const stats: StoreStats = { registrations: this.registrations.size, online: 0, onlineIpv4: 0, onlineIpv6: 0 };
    // Read on every metrics scrape: in slices, and with no array or set per broadcast.
    const nowMs = now.getTime();
    await forEachInSlices(this.broadcasts.values(), (broadcast) => {
      if (!broadcast.isLive(nowMs)) return;
      stats.online++;
      const families = familiesOf(broadcast);
      if (families & ipv4) stats.onlineIpv4++;
      if (families & ipv6) stats.onlineIpv6++;
    });
    return stats;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}

const ipv4 = 1;
const ipv6 = 2;

/** The address families a broadcast announces or was seen from, as bits (ipv4 | ipv6). */
function familiesOf(broadcast: StoredBroadcast): number {
  let families = 0;
  for (const address of broadcast.addresses) if (address) families |= addressFamily(address) === "ipv6" ? ipv6 : ipv4;
  if (broadcast.observedAddress) families |= addressFamily(broadcast.observedAddress) === "ipv6" ? ipv6 : ipv4;
  return families;
}

/** A time not set (presenceUntil before a stream holds the broadcast, withdrawnAt before a withdraw). */
const unset = Number.POSITIVE_INFINITY;

/**
 * A broadcast as the memory store keeps it, its times in epoch ms. A heartbeat, a presence
 * refresh and a release overwrite these numbers in place; a Date per write kept by the
 * broadcast (three per beat, one per refresh) lived until the next write, long enough to be
 * promoted to V8's old generation and die there, which filled it between mark-compacts (see
 * docs/BENCHMARKS.md). V8 overwrites a field that has only ever held numbers in place, while a
 * field that has also held undefined gets a new heap number per write: so "not set" is Infinity.
 * What callers get is always a new BroadcastRecord ({@link StoredBroadcast.toRecord}).
 */
class StoredBroadcast {
  // Declared only (`declare`): a class field defined before the constructor runs (ES2022) holds
  // undefined first, and the number fields would then take a new heap number per write.
  declare readonly broadcastId: string;
  declare readonly fingerprint: string;
  declare readonly email: string;
  declare readonly port: number;
  declare readonly addresses: string[];
  declare readonly capabilities: Record<string, string>;
  declare readonly observedAddress: string;
  declare lastSeenMs: number;
  declare expiresAtMs: number;
  declare presenceUntilMs: number;
  declare withdrawnAtMs: number;
  declare changedAtMs: number;
  declare holder: string | undefined;
  declare streamId: string | undefined;

  constructor(broadcast: BroadcastRecord) {
    this.broadcastId = broadcast.broadcastId;
    this.fingerprint = broadcast.fingerprint;
    this.email = broadcast.email;
    this.port = broadcast.port;
    this.addresses = [...broadcast.addresses];
    this.capabilities = { ...broadcast.capabilities };
    this.observedAddress = broadcast.observedAddress;
    this.lastSeenMs = broadcast.lastSeen.getTime();
    this.expiresAtMs = broadcast.expiresAt.getTime();
    this.presenceUntilMs = broadcast.presenceUntil?.getTime() ?? unset;
    this.withdrawnAtMs = broadcast.withdrawnAt?.getTime() ?? unset;
    this.changedAtMs = (broadcast.changedAt ?? broadcast.lastSeen).getTime();
    this.holder = broadcast.holder;
    this.streamId = broadcast.streamId;
  }

  /** The liveness rule (broadcast-rules.ts) at nowMs. */
  isLive(nowMs: number): boolean {
    return isLiveAt(this.expiresAtMs, this.presenceUntilMs, nowMs);
  }

  /** A copy as the store interface shows it: unset times and holder are absent. */
  toRecord(): BroadcastRecord {
    const record: BroadcastRecord = {
      broadcastId: this.broadcastId,
      fingerprint: this.fingerprint,
      email: this.email,
      port: this.port,
      addresses: [...this.addresses],
      capabilities: { ...this.capabilities },
      observedAddress: this.observedAddress,
      lastSeen: new Date(this.lastSeenMs),
      expiresAt: new Date(this.expiresAtMs),
      changedAt: new Date(this.changedAtMs),
    };
    if (this.presenceUntilMs !== unset) record.presenceUntil = new Date(this.presenceUntilMs);
    if (this.holder !== undefined) record.holder = this.holder;
    if (this.streamId !== undefined) record.streamId = this.streamId;
    if (this.withdrawnAtMs !== unset) record.withdrawnAt = new Date(this.withdrawnAtMs);
    return record;
  }
}

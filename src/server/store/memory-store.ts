import type { BroadcastChange, BroadcastRecord, ChangeFeed, ExtendResult, RegisterResult, RegistrationRecord, RelayStore, StoreStats, StreamClaim, WithdrawResult } from "./store.js";
import { addressFamily } from "../service/validation.js";
import { isLive } from "../service/broadcast-rules.js";
import { forEachInSlices } from "../../shared/in-slices.js";
import { SortedKeys } from "./sorted-keys.js";

/**
 * The embedded store: state in this process only, lost on restart. For one relay on one machine
 * (development, small deployments); several relays need MongoStore.
 *
 * The passes over every entry (the presence refresh, the sweeps) run in slices with a turn of the
 * event loop between them (in-slices.ts): done at once they held every call for tens of ms at
 * 10,000 peers. Each entry is judged as it is when its slice reaches it.
 */
export class MemoryStore implements RelayStore {
  readonly kind = "memory";
  private readonly registrations = new Map<string, RegistrationRecord>();
  private readonly fingerprintByEmail = new Map<string, string>();
  private readonly broadcasts = new Map<string, BroadcastRecord>();
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
    this.broadcasts.set(broadcast.fingerprint, { ...copy(broadcast), changedAt: broadcast.changedAt ?? broadcast.lastSeen });
    if (!this.fingerprintByBroadcastEmail.has(broadcast.email)) this.broadcastEmails.add(broadcast.email);
    this.fingerprintByBroadcastEmail.set(broadcast.email, broadcast.fingerprint);
    this.notify(broadcast.email);
  }

  async extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date, claim?: StreamClaim): Promise<ExtendResult> {
    const broadcast = this.broadcasts.get(fingerprint);
    if (broadcast === undefined || !isLive(broadcast, now)) return { outcome: "not_found" };
    if (broadcastId !== undefined && broadcast.broadcastId !== broadcastId) return { outcome: "mismatch" };
    broadcast.lastSeen = now;
    broadcast.expiresAt = expiresAt;
    if (claim !== undefined) {
      Object.assign(broadcast, claim);
      if (claim.streamId !== undefined) this.fingerprintByStream.set(claim.streamId, fingerprint);
    }
    return { outcome: "extended", broadcast: copy(broadcast) };
  }

  async withdrawBroadcast(fingerprint: string, now: Date, condition: { broadcastId?: string; streamId?: string } = {}): Promise<WithdrawResult> {
    if (condition.streamId !== undefined) this.fingerprintByStream.delete(condition.streamId);
    const broadcast = this.broadcasts.get(fingerprint);
    if (broadcast === undefined || !isLive(broadcast, now)) return { outcome: "not_online" };
    if (condition.broadcastId !== undefined && broadcast.broadcastId !== condition.broadcastId) return { outcome: "mismatch" };
    if (condition.streamId !== undefined && broadcast.streamId !== condition.streamId) return { outcome: "not_online" };
    Object.assign(broadcast, { presenceUntil: now, withdrawnAt: now, changedAt: now });
    delete broadcast.holder;
    delete broadcast.streamId;
    this.notify(broadcast.email);
    return { outcome: "withdrawn", broadcast: copy(broadcast) };
  }

  async refreshPresence(holder: string, now: Date, presenceUntil: Date): Promise<number> {
    let refreshed = 0;
    await forEachInSlices(this.broadcasts.values(), (broadcast) => {
      if (broadcast.holder !== holder || !isLive(broadcast, now)) return;
      // Never back: a beat between two slices may have claimed it with a later deadline.
      if (broadcast.presenceUntil === undefined || broadcast.presenceUntil.getTime() < presenceUntil.getTime()) broadcast.presenceUntil = presenceUntil;
      refreshed++;
    });
    return refreshed;
  }

  async releasePresence(holder: string, streamIds: string[] | undefined, now: Date, presenceUntil: Date): Promise<number> {
    // Named streams (one lost stream): through the index. All of a holder's (shutdown): a walk.
    const candidates: Iterable<BroadcastRecord> =
      streamIds === undefined
        ? this.broadcasts.values()
        : streamIds.flatMap((streamId) => {
            const fingerprint = this.fingerprintByStream.get(streamId);
            this.fingerprintByStream.delete(streamId);
            const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
            return broadcast !== undefined && broadcast.streamId === streamId ? [broadcast] : [];
          });
    let released = 0;
    for (const broadcast of candidates) {
      if (broadcast.holder !== holder || !isLive(broadcast, now)) continue;
      if (broadcast.streamId !== undefined) this.fingerprintByStream.delete(broadcast.streamId);
      broadcast.presenceUntil = presenceUntil;
      delete broadcast.holder;
      delete broadcast.streamId;
      released++;
    }
    return released;
  }

  async findBroadcastRecords(emails: string[]): Promise<BroadcastRecord[]> {
    const found: BroadcastRecord[] = [];
    for (const email of new Set(emails)) {
      const fingerprint = this.fingerprintByBroadcastEmail.get(email);
      const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
      if (broadcast !== undefined) found.push(copy(broadcast));
    }
    return found;
  }

  watchChanges(onChange: (changes: BroadcastChange[]) => void): ChangeFeed {
    // One process holds all the state: every change is a write through this object.
    this.feeds.add(onChange);
    return {
      mode: "local",
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
    return broadcast !== undefined && isLive(broadcast, now) ? copy(broadcast) : undefined;
  }

  async listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]> {
    // From the cursor in email order: the page, plus whatever is no longer live between its
    // entries (the sweep removes those within its retention).
    const page: BroadcastRecord[] = [];
    for (const email of this.broadcastEmails.after(afterEmail)) {
      if (page.length >= limit) break;
      const fingerprint = this.fingerprintByBroadcastEmail.get(email);
      const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
      // An email whose peer has announced under another since is that other email's entry.
      if (broadcast !== undefined && broadcast.email === email && isLive(broadcast, now)) page.push(copy(broadcast));
    }
    return page;
  }

  async sweepExpired(before: Date): Promise<number> {
    let swept = 0;
    await forEachInSlices(this.broadcasts, ([fingerprint, broadcast]) => {
      if (isLive(broadcast, before)) return;
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
    await forEachInSlices(this.broadcasts.values(), (broadcast) => {
      if (!isLive(broadcast, now)) return;
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
function familiesOf(broadcast: BroadcastRecord): number {
  let families = 0;
  for (const address of broadcast.addresses) if (address) families |= addressFamily(address) === "ipv6" ? ipv6 : ipv4;
  if (broadcast.observedAddress) families |= addressFamily(broadcast.observedAddress) === "ipv6" ? ipv6 : ipv4;
  return families;
}

function copy(broadcast: BroadcastRecord): BroadcastRecord {
  return { ...broadcast, addresses: [...broadcast.addresses], capabilities: { ...broadcast.capabilities } };
}

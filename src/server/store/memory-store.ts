import type { BroadcastRecord, ExtendResult, RegisterResult, RegistrationRecord, RelayStore, StoreStats } from "./store.js";
import { addressFamily } from "../service/validation.js";
import { isLive } from "../service/broadcast-rules.js";

/**
 * The embedded store: state in this process only, lost on restart. For one relay on one machine
 * (development, small deployments); several relays need MongoStore.
 */
export class MemoryStore implements RelayStore {
  readonly kind = "memory";
  private readonly registrations = new Map<string, RegistrationRecord>();
  private readonly fingerprintByEmail = new Map<string, string>();
  private readonly broadcasts = new Map<string, BroadcastRecord>();
  private readonly fingerprintByBroadcastEmail = new Map<string, string>();

  async register(registration: RegistrationRecord): Promise<RegisterResult> {
    const boundFingerprint = this.fingerprintByEmail.get(registration.email);
    if (boundFingerprint !== undefined) {
      return boundFingerprint === registration.fingerprint ? { outcome: "existing", registration: this.registrations.get(boundFingerprint)! } : { outcome: "email_taken" };
    }
    const existing = this.registrations.get(registration.fingerprint);
    if (existing !== undefined) return { outcome: "certificate_taken", email: existing.email };
    this.registrations.set(registration.fingerprint, { ...registration });
    this.fingerprintByEmail.set(registration.email, registration.fingerprint);
    return { outcome: "created", registration: { ...registration } };
  }

  async findRegistration(fingerprint: string): Promise<RegistrationRecord | undefined> {
    return this.registrations.get(fingerprint);
  }

  async findRegistrationByEmail(email: string): Promise<RegistrationRecord | undefined> {
    const fingerprint = this.fingerprintByEmail.get(email);
    return fingerprint === undefined ? undefined : this.registrations.get(fingerprint);
  }

  async putBroadcast(broadcast: BroadcastRecord): Promise<void> {
    this.broadcasts.set(broadcast.fingerprint, copy(broadcast));
    this.fingerprintByBroadcastEmail.set(broadcast.email, broadcast.fingerprint);
  }

  async extendBroadcast(fingerprint: string, broadcastId: string | undefined, now: Date, expiresAt: Date): Promise<ExtendResult> {
    const broadcast = this.broadcasts.get(fingerprint);
    if (broadcast === undefined || !isLive(broadcast, now)) return { outcome: "not_found" };
    if (broadcastId !== undefined && broadcast.broadcastId !== broadcastId) return { outcome: "mismatch" };
    broadcast.lastSeen = now;
    broadcast.expiresAt = expiresAt;
    return { outcome: "extended", broadcast: copy(broadcast) };
  }

  async findBroadcast(email: string, now: Date): Promise<BroadcastRecord | undefined> {
    const fingerprint = this.fingerprintByBroadcastEmail.get(email);
    const broadcast = fingerprint === undefined ? undefined : this.broadcasts.get(fingerprint);
    return broadcast !== undefined && isLive(broadcast, now) ? copy(broadcast) : undefined;
  }

  async listBroadcasts(afterEmail: string, limit: number, now: Date): Promise<BroadcastRecord[]> {
    // A sort per page: O(n log n) over online peers, measured in bench/ (fine to tens of
    // thousands of peers; MongoStore serves larger sets from its email index).
    return [...this.broadcasts.values()]
      .filter((broadcast) => broadcast.email > afterEmail && isLive(broadcast, now))
      .sort((a, b) => (a.email < b.email ? -1 : 1))
      .slice(0, limit)
      .map(copy);
  }

  async sweepExpired(now: Date): Promise<number> {
    let swept = 0;
    for (const [fingerprint, broadcast] of this.broadcasts) {
      if (isLive(broadcast, now)) continue;
      this.broadcasts.delete(fingerprint);
      this.fingerprintByBroadcastEmail.delete(broadcast.email);
      swept++;
    }
    return swept;
  }

  async stats(now: Date): Promise<StoreStats> {
    const stats: StoreStats = { registrations: this.registrations.size, online: 0, onlineIpv4: 0, onlineIpv6: 0 };
    for (const broadcast of this.broadcasts.values()) {
      if (!isLive(broadcast, now)) continue;
      stats.online++;
      const families = new Set([...broadcast.addresses, broadcast.observedAddress].filter(Boolean).map(addressFamily));
      if (families.has("ipv4")) stats.onlineIpv4++;
      if (families.has("ipv6")) stats.onlineIpv6++;
    }
    return stats;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}

function copy(broadcast: BroadcastRecord): BroadcastRecord {
  return { ...broadcast, addresses: [...broadcast.addresses], capabilities: { ...broadcast.capabilities } };
}

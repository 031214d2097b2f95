import { LRUCache } from "lru-cache";
import { systemClock, type Clock } from "../../shared/clock.js";

/**
 * Who may read a share: a visitor is known by the SHA-256 fingerprint of the certificate it
 * presented on TLS, and the relay says which email (if any) that certificate is registered to.
 * The share server asks once per fingerprint and remembers the answer for a while, so a visitor
 * downloading many files costs one relay call, not one per request.
 */

/** What the relay says about a fingerprint: its email, or undefined when it is not registered. */
export type RegistrationLookup = (fingerprint: string) => Promise<{ email: string } | undefined>;

/** Options of {@link createVisitorCheck}. */
export interface VisitorCheckOptions {
  /** The relay's GetRegistration by fingerprint. */
  lookup: RegistrationLookup;
  /** Emails allowed to read (`--allow`), compared case-insensitively. Default: empty, any registered peer. */
  allow?: readonly string[];
  /**
   * How long a registered visitor's answer is reused. Default: 60 s, as long as the relay's own
   * registration cache: registrations are never unbound, so a longer time only delays nothing.
   */
  cacheTtlMs?: number;
  /**
   * How long "not registered" is reused. Default: 5 s, so a visitor that registers right after
   * being refused gets in almost at once, while a flood of one unknown certificate costs the
   * relay one call per 5 s.
   */
  refusedCacheTtlMs?: number;
  /** Most fingerprints remembered. Default: 10,000 (about 1 MiB). */
  maxEntries?: number;
  /** Default: the system clock. */
  clock?: Clock;
}

/** The check's answer for one visitor. */
export type VisitorVerdict =
  | { allowed: true; email: string }
  | {
      allowed: false;
      status: 401 | 403 | 503;
      /** Machine-readable reason, the `error` field of the share server's answer. */
      error: "no_certificate" | "not_registered" | "not_allowed" | "relay_unavailable";
      message: string;
      /** The visitor's email, when it is registered. */
      email?: string;
      /** The relay call's failure, for the log (relay_unavailable). */
      cause?: unknown;
    };

/** Decides whether a visitor may read; see {@link createVisitorCheck}. */
export interface VisitorCheck {
  /** The verdict for a certificate fingerprint; undefined means no certificate was presented. */
  check(fingerprint: string | undefined): Promise<VisitorVerdict>;
}

interface Entry {
  email: string | undefined;
  expiresAt: number;
}

/** Creates a {@link VisitorCheck}. */
export function createVisitorCheck(options: VisitorCheckOptions): VisitorCheck {
  const clock = options.clock ?? systemClock;
  const allow = new Set((options.allow ?? []).map((email) => email.trim().toLowerCase()));
  const cacheTtlMs = options.cacheTtlMs ?? 60_000;
  const refusedCacheTtlMs = options.refusedCacheTtlMs ?? 5_000;
  const cache = new LRUCache<string, Entry>({ max: options.maxEntries ?? 10_000 });
  // Concurrent requests of one new visitor (a browser opens several connections) share one call.
  const inFlight = new Map<string, Promise<Entry>>();

  async function registration(fingerprint: string): Promise<Entry> {
    const cached = cache.get(fingerprint);
    if (cached && cached.expiresAt > clock.now()) return cached;
    let pending = inFlight.get(fingerprint);
    if (!pending) {
      pending = options
        .lookup(fingerprint)
        .then((found) => {
          const entry = { email: found?.email.toLowerCase(), expiresAt: clock.now() + (found ? cacheTtlMs : refusedCacheTtlMs) };
          cache.set(fingerprint, entry);
          return entry;
        })
        .finally(() => inFlight.delete(fingerprint));
      inFlight.set(fingerprint, pending);
    }
    return pending;
  }

  return {
    async check(fingerprint) {
      if (fingerprint === undefined) {
        return { allowed: false, status: 401, error: "no_certificate", message: "present your peer certificate (TLS client certificate) to read this share" };
      }
      let entry: Entry;
      try {
        entry = await registration(fingerprint);
      } catch (cause) {
        // The caller logs the relay failure; the visitor gets a retryable answer, never the details.
        return { allowed: false, status: 503, error: "relay_unavailable", message: "the relay could not be asked who you are; try again shortly", cause };
      }
      if (entry.email === undefined) {
        return { allowed: false, status: 403, error: "not_registered", message: "your certificate is not registered with the relay: register it first" };
      }
      if (allow.size > 0 && !allow.has(entry.email)) {
        return { allowed: false, status: 403, error: "not_allowed", message: `${entry.email} is not allowed to read this share`, email: entry.email };
      }
      return { allowed: true, email: entry.email };
    },
  };
}

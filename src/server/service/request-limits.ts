/**
 * Bounds on everything a client controls. Each is a field of the relay's configuration
 * (src/server/ops/config.ts); these are the defaults, documented in docs/operating.md.
 */
export interface Limits {
  /** Largest accepted certificate PEM in Register, bytes. A 4096-bit RSA certificate is ~2 KiB. */
  maxCertificatePemBytes: number;
  /** Most addresses one Ready may announce (after duplicates are removed). */
  maxAddresses: number;
  /** Most capability entries one Ready may carry. */
  maxCapabilities: number;
  /** Longest capability key, bytes (UTF-8). */
  maxCapabilityKeyBytes: number;
  /** Longest capability value, bytes (UTF-8). */
  maxCapabilityValueBytes: number;
  /** Largest total of all capability keys and values, bytes. */
  maxCapabilitiesBytes: number;
  /** List page size when the request says 0. */
  defaultPageSize: number;
  /** Largest List page size. */
  maxPageSize: number;
  /**
   * Largest List page, bytes (an upper bound on its encoding): a page that would be larger is cut
   * short with a next_page_token. 1000 peers with the largest broadcasts are about 5 MiB; a client
   * that does not read its responses can pin at most this per List call.
   */
  maxPageBytes: number;
  /** Most emails one Watch may name (the wire contract says 256). */
  maxWatchedEmails: number;
}

export const defaultLimits: Limits = {
  maxCertificatePemBytes: 16 * 1024,
  maxAddresses: 16,
  maxCapabilities: 32,
  maxCapabilityKeyBytes: 64,
  maxCapabilityValueBytes: 256,
  maxCapabilitiesBytes: 4 * 1024,
  defaultPageSize: 100,
  maxPageSize: 1000,
  maxPageBytes: 1024 * 1024,
  maxWatchedEmails: 256,
};

/**
 * Largest request message per RPC, bytes (connect's readMaxBytes). Register carries a PEM;
 * the other requests are small, so a flood of large bodies is refused before it is parsed.
 */
export const readMaxBytes = {
  register: 32 * 1024,
  ready: 16 * 1024,
  heartbeat: 256,
  lookup: 1024,
  list: 2048, // a page_token is up to 1040 characters (page-token.ts)
  getRegistration: 1024,
  offline: 256,
  // 256 emails of up to 254 characters, with their framing.
  watch: 72 * 1024,
} as const;

import type { X509Certificate } from "node:crypto";

/**
 * The identity rule both sides must agree on: a peer is the lowercase hex SHA-256 of its
 * certificate's DER. The relay registers it (client_id), the relay's Peer.fingerprint carries
 * it, and a visitor checks a peer's served certificate against it.
 */
export function fingerprintOf(certificate: X509Certificate): string {
  return certificate.fingerprint256.replaceAll(":", "").toLowerCase();
}

/** True for a string shaped like a fingerprint: 64 lowercase hex digits. */
export function isFingerprint(value: string): boolean {
  return /^[0-9a-f]{64}$/.test(value);
}

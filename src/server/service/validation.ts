import { Code, ConnectError } from "@connectrpc/connect";
import ipaddr from "ipaddr.js";
import type { Limits } from "./request-limits.js";
import { isFingerprint } from "../../shared/fingerprint.js";

/**
 * Request rules as plain functions: each returns the normalized value or throws a
 * ConnectError with Code.InvalidArgument and a message a person can act on.
 */

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

const maxEmailLength = 254; // RFC 5321 path limit

/** Lower-cases and checks an email: one "@", a non-empty local part and domain, no spaces or control characters. */
export function normalizeEmail(email: string, field = "email"): string {
  if (email.length === 0) throw invalid(`${field} is required`);
  if (email.length > maxEmailLength) throw invalid(`${field} is longer than ${maxEmailLength} characters`);
  // eslint-disable-next-line no-control-regex
  if (!/^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+$/.test(email)) throw invalid(`${field} "${printable(email)}" is not an email address`);
  return email.toLowerCase();
}

/**
 * Normalizes a certificate fingerprint: hex SHA-256, 64 digits, case-insensitive, colons allowed
 * (as openssl prints it); returns it lower-case without colons.
 */
export function normalizeFingerprint(fingerprint: string, field = "fingerprint"): string {
  const normalized = fingerprint.replaceAll(":", "").toLowerCase();
  if (!isFingerprint(normalized)) throw invalid(`${field} "${printable(fingerprint.slice(0, 100))}" is not a hex SHA-256 fingerprint (64 hex digits)`);
  return normalized;
}

/** Checks a TCP port is 1-65535. */
export function validatePort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`port ${port} is out of range: use 1-65535`);
  return port;
}

/**
 * Checks every address is an IPv4 or IPv6 literal (no host names, no ports, no zone ids) and
 * returns them in canonical form, duplicates removed, the peer's order kept.
 */
export function normalizeAddresses(addresses: readonly string[], limits: Pick<Limits, "maxAddresses">): string[] {
  // Bound the work before parsing: duplicates cannot make a list of 10x the limit acceptable.
  if (addresses.length > limits.maxAddresses * 4) throw tooMany(addresses.length, limits.maxAddresses);
  const seen = new Set<string>();
  for (const address of addresses) {
    const canonical = canonicalAddress(address);
    if (canonical === undefined) throw invalid(`address "${printable(address)}" is not an IPv4 or IPv6 literal`);
    seen.add(canonical);
  }
  if (seen.size > limits.maxAddresses) throw tooMany(seen.size, limits.maxAddresses);
  return [...seen];
}

function tooMany(count: number, max: number): ConnectError {
  return invalid(`too many addresses: ${count}, at most ${max}`);
}

/** Canonical text of an IP literal (IPv4-mapped IPv6 becomes IPv4), or undefined if it is not one. */
export function canonicalAddress(address: string): string | undefined {
  if (address.length === 0 || address.length > 45) return undefined;
  // ipaddr.js accepts forms that are not literals peers should announce (e.g. "0x7f.1", "127.1"):
  // the strict IPv4 four-part check and the IPv6 parser without zone id keep it to real literals.
  if (ipaddr.IPv4.isValidFourPartDecimal(address)) return ipaddr.IPv4.parse(address).toString();
  if (address.includes(":") && !address.includes("%") && ipaddr.IPv6.isValid(address)) {
    const parsed = ipaddr.IPv6.parse(address);
    return parsed.isIPv4MappedAddress() ? parsed.toIPv4Address().toString() : parsed.toString();
  }
  return undefined;
}

/** "ipv4" or "ipv6" for a canonical literal. */
export function addressFamily(address: string): "ipv4" | "ipv6" {
  return address.includes(":") ? "ipv6" : "ipv4";
}

/** Checks the capability map's size bounds. */
export function validateCapabilities(capabilities: Record<string, string>, limits: Limits): Record<string, string> {
  const entries = Object.entries(capabilities);
  if (entries.length > limits.maxCapabilities) throw invalid(`too many capabilities: ${entries.length}, at most ${limits.maxCapabilities}`);
  let total = 0;
  for (const [key, value] of entries) {
    const keyBytes = Buffer.byteLength(key);
    const valueBytes = Buffer.byteLength(value);
    if (keyBytes === 0) throw invalid("capability keys must not be empty");
    if (keyBytes > limits.maxCapabilityKeyBytes) throw invalid(`capability key "${printable(key.slice(0, 32))}…" is longer than ${limits.maxCapabilityKeyBytes} bytes`);
    if (valueBytes > limits.maxCapabilityValueBytes) throw invalid(`capability "${printable(key)}" is longer than ${limits.maxCapabilityValueBytes} bytes`);
    total += keyBytes + valueBytes;
  }
  if (total > limits.maxCapabilitiesBytes) throw invalid(`capabilities total ${total} bytes, at most ${limits.maxCapabilitiesBytes}`);
  return Object.fromEntries(entries);
}

/** The page size to use: 0 means the default; otherwise 1..maxPageSize. */
export function resolvePageSize(pageSize: number, limits: Pick<Limits, "defaultPageSize" | "maxPageSize">): number {
  if (pageSize === 0) return limits.defaultPageSize;
  if (pageSize > limits.maxPageSize) throw invalid(`page_size ${pageSize} is out of range: use 1-${limits.maxPageSize}, or 0 for ${limits.defaultPageSize}`);
  return pageSize;
}

/** Quotes client text in messages without letting control characters or huge strings through. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = text.replace(/[\x00-\x1f\x7f]/g, "?");
  return cleaned.length > 64 ? `${cleaned.slice(0, 64)}…` : cleaned;
}

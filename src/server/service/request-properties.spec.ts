// Property-based tests of everything that reads client input before the store: the request
// validators, page tokens and the certificate parser. Each must return a canonical value or throw
// ConnectError(InvalidArgument), nothing else, for any input.
//
// Runs FC_NUM_RUNS cases per property (default 200, kept short for CI); for a longer search:
//   FC_NUM_RUNS=20000 npx vitest run src/server/request-properties.spec.ts
import { X509Certificate } from "node:crypto";
import { fc, test } from "@fast-check/vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect } from "vitest";
import { createSelfSignedCertificate } from "../../shared/self-signed-certificate.js";
import { certificateEmails, checkCertificateEmail, checkCertificateUsable, parseCertificatePem } from "../identity/certificate-checks.js";
import { defaultLimits } from "./request-limits.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { canonicalAddress, normalizeAddresses, normalizeEmail, resolvePageSize, validateCapabilities, validatePort } from "./validation.js";

// FC_SEED fixes the cases (mutation testing sets it, so its score does not move between runs).
fc.configureGlobal({ numRuns: Number(process.env.FC_NUM_RUNS ?? 200), ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}) });

/** Runs fn; returns its value, or undefined when it threw ConnectError(InvalidArgument). Anything else it throws fails the property. */
function validOrInvalidArgument<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.InvalidArgument) return undefined;
    throw error;
  }
}

/** Text as hostile clients send it: any code points, lone surrogates, controls, long runs. */
const anyText = fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), fc.string({ maxLength: 300 }), fc.string({ unit: "grapheme", maxLength: 80 }));

describe("request validators", () => {
  // Random text is almost never an email: well-formed ones (some upper-case) are mixed in so the
  // valid branch is exercised on every run, not on one case in a hundred.
  test.prop([fc.oneof(anyText, fc.emailAddress(), fc.emailAddress().map((email) => email.toUpperCase()))])("normalizeEmail answers a lower-case fixed point or InvalidArgument", (email) => {
    const normalized = validOrInvalidArgument(() => normalizeEmail(email));
    // fc.pre discards the invalid cases (already checked to be InvalidArgument); fast-check fails
    // the property when too many are discarded, so it cannot pass without checking valid ones.
    fc.pre(normalized !== undefined);
    expect(normalized).toBe(normalized.toLowerCase());
    expect(normalizeEmail(normalized)).toBe(normalized);
  });

  test.prop([fc.emailAddress()])("normalizeEmail accepts well-formed addresses up to 254 characters", (email) => {
    fc.pre(email.length <= 254);
    expect(normalizeEmail(email)).toBe(email.toLowerCase());
  });

  test.prop([anyText])("canonicalAddress is undefined or a canonical literal that maps to itself", (address) => {
    const canonical = canonicalAddress(address);
    expect(canonical === undefined ? undefined : canonicalAddress(canonical)).toBe(canonical);
  });

  test.prop([fc.oneof(fc.ipV4(), fc.ipV6())])("canonicalAddress accepts every IPv4 and IPv6 literal", (address) => {
    const canonical = canonicalAddress(address);
    expect(canonical).toBeDefined();
    expect(canonicalAddress(canonical!)).toBe(canonical);
  });

  test.prop([fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), anyText), { maxLength: 80 })])("normalizeAddresses answers canonical, distinct, bounded lists that re-validate unchanged", (addresses) => {
    const normalized = validOrInvalidArgument(() => normalizeAddresses(addresses, defaultLimits));
    fc.pre(normalized !== undefined);
    expect(normalized.length).toBeLessThanOrEqual(defaultLimits.maxAddresses);
    expect(new Set(normalized).size).toBe(normalized.length);
    expect(normalizeAddresses(normalized, defaultLimits)).toEqual(normalized);
  });

  test.prop([fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, 1, 65535, 65536, -1, 2 ** 32 - 1))])("validatePort answers an integer 1-65535 or InvalidArgument", (port) => {
    const valid = validOrInvalidArgument(() => validatePort(port));
    expect(valid).toBe(Number.isInteger(port) && port >= 1 && port <= 65535 ? port : undefined);
  });

  test.prop([fc.dictionary(anyText, anyText, { maxKeys: 40 })])("validateCapabilities answers a map within every bound that re-validates, or InvalidArgument", (capabilities) => {
    const valid = validOrInvalidArgument(() => validateCapabilities(capabilities, defaultLimits));
    fc.pre(valid !== undefined);
    const entries = Object.entries(valid);
    expect(entries.length).toBeLessThanOrEqual(defaultLimits.maxCapabilities);
    expect(entries.reduce((total, [key, value]) => total + Buffer.byteLength(key) + Buffer.byteLength(value), 0)).toBeLessThanOrEqual(defaultLimits.maxCapabilitiesBytes);
    expect(validateCapabilities(valid, defaultLimits)).toEqual(valid);
  });

  test.prop([fc.oneof(fc.nat({ max: 2 ** 32 - 1 }), fc.nat({ max: 1100 }))])("resolvePageSize answers the default for 0, the size for 1 to maxPageSize, else InvalidArgument", (pageSize) => {
    const size = validOrInvalidArgument(() => resolvePageSize(pageSize, defaultLimits));
    expect(size).toBe(pageSize === 0 ? defaultLimits.defaultPageSize : pageSize <= defaultLimits.maxPageSize ? pageSize : undefined);
  });
});

describe("page tokens", () => {
  test.prop([fc.oneof(anyText, fc.base64String(), fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") }))])("decodePageToken answers a non-empty email or InvalidArgument", (token) => {
    const after = validOrInvalidArgument(() => decodePageToken(token));
    expect(after === undefined || (token === "" ? after === "" : after.length > 0)).toBe(true);
  });

  // The longest emails, in the characters that make the longest tokens.
  const longestEmails = fc.constantFrom("\u20ac".repeat(250) + "@a.b", '"'.repeat(250) + "@a.b", "\\".repeat(250) + "@a.b", "\u{1F600}".repeat(125) + "@a.b");
  test.prop([fc.oneof(fc.emailAddress(), anyText, longestEmails)])("decodePageToken reads back every token issued for an email the relay accepts", (email) => {
    const accepted = validOrInvalidArgument(() => normalizeEmail(email));
    fc.pre(accepted !== undefined);
    expect(decodePageToken(encodePageToken(accepted!))).toBe(accepted);
  });

  test.prop([fc.json()])("decodePageToken refuses any JSON that is not a token it issued", (json) => {
    const token = Buffer.from(json).toString("base64url");
    const after = validOrInvalidArgument(() => decodePageToken(token));
    const parsed: unknown = JSON.parse(json);
    const issued = typeof parsed === "object" && parsed !== null && (parsed as { v?: unknown }).v === 1 && typeof (parsed as { after?: unknown }).after === "string" && (parsed as { after: string }).after !== "" && token.length <= 1040;
    expect(after).toBe(issued ? (parsed as { after: string }).after : undefined);
  });
});

describe("certificate parser", () => {
  let pem: string;
  beforeAll(async () => {
    ({ certificatePem: pem } = await createSelfSignedCertificate({ commonName: "prop@example.com", emails: ["prop@example.com"] }));
  });
  const maxBytes = defaultLimits.maxCertificatePemBytes;

  test.prop([anyText])("parseCertificatePem answers a certificate or InvalidArgument for any text", (text) => {
    validOrInvalidArgument(() => parseCertificatePem(text, maxBytes));
  });

  test.prop([fc.uint8Array({ maxLength: 2048 })])("parseCertificatePem answers InvalidArgument for random DER in a PEM block", (der) => {
    const base64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n");
    validOrInvalidArgument(() => parseCertificatePem(`-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`, maxBytes));
  });

  test.prop([fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 })])("parseCertificatePem answers a certificate or InvalidArgument for a real certificate with bytes changed", (edits) => {
    const der = Buffer.from(new X509Certificate(pem).raw);
    for (const { at, byte } of edits) der[at % der.length] = byte;
    const mutated = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----\n`;
    const certificate = validOrInvalidArgument(() => parseCertificatePem(mutated, maxBytes));
    fc.pre(certificate !== undefined);
    // Whatever parses goes through the other checks without throwing anything else.
    validOrInvalidArgument(() => checkCertificateUsable(certificate, new Date()));
    for (const email of certificateEmails(certificate)) expect(email).toBe(email.toLowerCase());
    validOrInvalidArgument(() => checkCertificateEmail(certificate, "prop@example.com"));
  });

  test.prop([anyText])("checkCertificateEmail accepts only the email the certificate names", (email) => {
    const certificate = parseCertificatePem(pem, maxBytes);
    const accepted = validOrInvalidArgument(() => (checkCertificateEmail(certificate, email), true)) ?? false;
    expect(accepted).toBe(email === "prop@example.com");
  });
});

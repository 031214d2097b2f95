import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { defaultLimits } from "./request-limits.js";
import { addressFamily, canonicalAddress, normalizeAddresses, normalizeEmail, normalizeFingerprint, resolvePageSize, validateCapabilities, validatePort } from "./validation.js";
import { failureOfSync, outcomeOfSync } from "../../../test/support/codes.js";


describe("normalizeEmail", () => {
  it.each([
    ["Alice@Example.COM", "alice@example.com"],
    ["a.b+c@sub.example.org", "a.b+c@sub.example.org"],
  ])("should lower-case %s", (input, expected) => expect(normalizeEmail(input)).toBe(expected));

  it.each(["", "alice", "@example.com", "alice@", "a@b@c", "a b@example.com", "a\n@example.com", `${"a".repeat(250)}@example.com`])("should refuse %j", (input) => {
    expect(outcomeOfSync(() => normalizeEmail(input))).toBe(Code.InvalidArgument);
  });
});

describe("validatePort", () => {
  it.each([1, 80, 65535])("should accept %i", (port) => expect(validatePort(port)).toBe(port));
  it.each([0, 65536, 1.5, -1])("should refuse %d", (port) => expect(outcomeOfSync(() => validatePort(port))).toBe(Code.InvalidArgument));
});

// These literals are parsed, never dialled.
describe("canonicalAddress", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["::1", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["::ffff:127.0.0.2", "127.0.0.2"],
    ["FD00::1", "fd00::1"],
    ["2001:db8::1", "2001:db8::1"],
  ])("should canonicalize %s to %s", (input, expected) => expect(canonicalAddress(input)).toBe(expected));

  it.each(["", "localhost", "example.com", "127.1", "0x7f.0.0.1", "127.0.0.1:80", "[::1]", "fe80::1%eth0", "256.0.0.1", "1.2.3.4.5", " 127.0.0.1"])("should refuse %j", (input) => {
    expect(canonicalAddress(input)).toBeUndefined();
  });
});

describe("normalizeAddresses", () => {
  it("should remove duplicates and keep the peer's order", () => {
    expect(normalizeAddresses(["127.0.0.3", "::1", "127.0.0.2", "::ffff:127.0.0.3", "0::1"], defaultLimits)).toEqual(["127.0.0.3", "::1", "127.0.0.2"]);
  });
  it("should accept an empty list", () => expect(normalizeAddresses([], defaultLimits)).toEqual([]));
  it("should count addresses after removing duplicates", () => {
    expect(normalizeAddresses(Array(4).fill("127.0.0.1"), { maxAddresses: 1 })).toEqual(["127.0.0.1"]);
  });
  it.each([
    ["more distinct addresses than the limit", Array.from({ length: 3 }, (_, i) => `127.0.0.${i + 1}`), 2],
    ["a list far over the limit", Array(9).fill("127.0.0.1"), 2],
    ["a host name among literals", ["127.0.0.1", "example.com"], 16],
  ])("should refuse %s", (_, addresses, maxAddresses) => {
    expect(outcomeOfSync(() => normalizeAddresses(addresses, { maxAddresses }))).toBe(Code.InvalidArgument);
  });
});

describe("validateCapabilities", () => {
  it("should accept a map within the bounds", () => expect(validateCapabilities({ proto: "http/1.1" }, defaultLimits)).toEqual({ proto: "http/1.1" }));
  it.each([
    ["an empty key", { "": "v" }],
    ["a long key", { ["k".repeat(65)]: "v" }],
    ["a long value", { k: "v".repeat(257) }],
    ["too many entries", Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, ""]))],
    ["too many bytes in all", Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, "v".repeat(250)]))],
    ["multi-byte characters over the byte bound", { k: "é".repeat(129) }],
  ])("should refuse %s", (_, capabilities) => {
    expect(outcomeOfSync(() => validateCapabilities(capabilities, defaultLimits))).toBe(Code.InvalidArgument);
  });
});

describe("resolvePageSize", () => {
  it.each([
    [0, 100],
    [1, 1],
    [1000, 1000],
  ])("should resolve %i to %i", (input, expected) => expect(resolvePageSize(input, defaultLimits)).toBe(expected));
  it("should refuse a page size over the maximum", () => expect(outcomeOfSync(() => resolvePageSize(1001, defaultLimits))).toBe(Code.InvalidArgument));
});

// What a client reads: each refusal names the field, the value (made printable and cut at 64
// characters) and the bound.
describe("refusal messages", () => {
  const invalid = (message: string) => ({ code: Code.InvalidArgument, message });
  it.each([
    ["an empty email", () => normalizeEmail(""), invalid("email is required")],
    ["an empty email in another field", () => normalizeEmail("", "emails[0]"), invalid("emails[0] is required")],
    ["an email of 255 characters", () => normalizeEmail(`${"a".repeat(243)}@example.com`), invalid("email is longer than 254 characters")],
    ["an email with a control character", () => normalizeEmail("a\u0007b@example.com"), invalid('email "a?b@example.com" is not an email address')],
    ["a long non-email", () => normalizeEmail("x".repeat(100)), invalid(`email "${"x".repeat(64)}…" is not an email address`)],
    ["port 0", () => validatePort(0), invalid("port 0 is out of range: use 1-65535")],
    ["a host name", () => normalizeAddresses(["peer.example"], defaultLimits), invalid('address "peer.example" is not an IPv4 or IPv6 literal')],
    ["17 addresses", () => normalizeAddresses(Array.from({ length: 17 }, (_, i) => `127.0.0.${i + 1}`), defaultLimits), invalid("too many addresses: 17, at most 16")],
    ["65 addresses", () => normalizeAddresses(Array(65).fill("127.0.0.1"), defaultLimits), invalid("too many addresses: 65, at most 16")],
    ["33 capabilities", () => validateCapabilities(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, ""])), defaultLimits), invalid("too many capabilities: 33, at most 32")],
    ["an empty capability key", () => validateCapabilities({ "": "v" }, defaultLimits), invalid("capability keys must not be empty")],
    ["a capability key of 65 bytes", () => validateCapabilities({ ["k".repeat(65)]: "v" }, defaultLimits), invalid(`capability key "${"k".repeat(32)}…" is longer than 64 bytes`)],
    ["a capability value of 257 bytes", () => validateCapabilities({ files: "v".repeat(257) }, defaultLimits), invalid('capability "files" is longer than 256 bytes')],
    ["capabilities of 4097 bytes in all", () => validateCapabilities({ ...Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${String(i).padStart(2, "0")}`, "v".repeat(253)])), last: "v".repeat(253) }, defaultLimits), invalid("capabilities total 4097 bytes, at most 4096")],
    ["page size 1001", () => resolvePageSize(1001, defaultLimits), invalid("page_size 1001 is out of range: use 1-1000, or 0 for 100")],
    ["a fingerprint that is not hex", () => normalizeFingerprint("zz"), invalid('fingerprint "zz" is not a hex SHA-256 fingerprint (64 hex digits)')],
  ])("should refuse %s, saying so", (_, run, expected) => {
    expect(failureOfSync(run)).toEqual(expected);
  });

  it("should accept capabilities of exactly 4096 bytes, keys of 64 and values of 256", () => {
    const capabilities = { ...Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${String(i).padStart(2, "0")}`, "v".repeat(253)])), last: "v".repeat(252) };
    expect(validateCapabilities(capabilities, defaultLimits)).toEqual(capabilities);
    expect(validateCapabilities({ ["k".repeat(64)]: "v".repeat(256) }, defaultLimits)).toEqual({ ["k".repeat(64)]: "v".repeat(256) });
  });

  it("should accept an email of exactly 254 characters", () => {
    const email = `${"a".repeat(242)}@example.com`;
    expect(normalizeEmail(email)).toBe(email);
  });

  it("should accept 16 distinct addresses, and 64 entries that are duplicates", () => {
    expect(normalizeAddresses(Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 1}`), defaultLimits)).toHaveLength(16);
    expect(normalizeAddresses(Array(64).fill("127.0.0.1"), defaultLimits)).toEqual(["127.0.0.1"]);
  });
});

describe("normalizeFingerprint", () => {
  const hex = "ab".repeat(32);
  it.each([
    [hex, hex],
    [hex.toUpperCase(), hex],
    [hex.match(/../g)!.join(":").toUpperCase(), hex],
  ])("should read %s as %s", (input, expected) => expect(normalizeFingerprint(input)).toBe(expected));
  it.each(["", "ab".repeat(31), "ab".repeat(33), "g".repeat(64)])("should refuse %j", (input) => {
    expect(outcomeOfSync(() => normalizeFingerprint(input))).toBe(Code.InvalidArgument);
  });
  it("should name the field it checks", () => {
    expect(failureOfSync(() => normalizeFingerprint("x", "client_id"))).toEqual({ code: Code.InvalidArgument, message: 'client_id "x" is not a hex SHA-256 fingerprint (64 hex digits)' });
  });
});

describe("canonicalAddress bounds and addressFamily", () => {
  it("should accept the longest literal, 45 characters", () => {
    const longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    expect(longest).toHaveLength(45);
    expect(canonicalAddress(longest)).toBe("255.255.255.255");
  });
  it.each([
    ["127.0.0.1", "ipv4"],
    ["::1", "ipv6"],
    ["2001:db8::1", "ipv6"],
  ])("should tell %s is %s", (address, family) => expect(addressFamily(address)).toBe(family));
});

import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { defaultLimits } from "./request-limits.js";
import { canonicalAddress, normalizeAddresses, normalizeEmail, resolvePageSize, validateCapabilities, validatePort } from "./validation.js";
import { outcomeOfSync } from "../../../test/support/codes.js";


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

import { describe, expect, it } from "vitest";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PeerSchema } from "../../gen/relay/v1/relay_pb.js";
import type { BroadcastRecord } from "../store/store.js";
import { fitPage, peerBytesAtMost } from "./page-bytes.js";

function broadcast(email: string, capabilityValue: string): BroadcastRecord {
  const now = new Date("2026-01-01T00:00:00Z");
  return {
    broadcastId: "b",
    fingerprint: "ab".repeat(32),
    email,
    port: 65535,
    addresses: Array.from({ length: 16 }, (_, i) => `2001:db8:ffff:ffff:ffff:ffff:ffff:${(0xff00 + i).toString(16)}`),
    capabilities: Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`key-${i}-${"k".repeat(50)}`, capabilityValue])),
    observedAddress: "2001:db8::1",
    lastSeen: now,
    expiresAt: now,
  };
}

function asPeer(b: BroadcastRecord) {
  return create(PeerSchema, { ...b, lastSeen: timestampFromDate(b.lastSeen), expiresAt: timestampFromDate(b.expiresAt) });
}

describe("peerBytesAtMost", () => {
  it.each([
    ["ASCII", "v".repeat(200)],
    ["control characters (six bytes each in JSON)", "\u0001".repeat(200)],
    ["non-ASCII", "é".repeat(100)],
    ["quotes and backslashes", '"\\'.repeat(100)],
  ])("should bound a peer's binary and JSON size with %s", (_, value) => {
    const b = broadcast("someone@example.com", value);
    const peer = asPeer(b);
    const bound = peerBytesAtMost(b);
    expect(toBinary(PeerSchema, peer).length).toBeLessThanOrEqual(bound);
    expect(Buffer.byteLength(toJsonString(PeerSchema, peer))).toBeLessThanOrEqual(bound);
  });
});

describe("fitPage", () => {
  it("should cut a page at the byte budget, keeping order", () => {
    const all = Array.from({ length: 10 }, (_, i) => broadcast(`p${i}@example.com`, "v".repeat(200)));
    const one = peerBytesAtMost(all[0]!);
    expect(fitPage(all, one * 3 + 1).map((b) => b.email)).toEqual(["p0@example.com", "p1@example.com", "p2@example.com"]);
    expect(fitPage(all, one * 100)).toHaveLength(10);
  });

  it("should always keep one peer, so paging makes progress", () => {
    expect(fitPage([broadcast("a@example.com", "v")], 1)).toHaveLength(1);
    expect(fitPage([], 1)).toEqual([]);
  });
});

import { describe, expect, it } from "vitest";
import { sourceNetworkOf } from "./source-network.js";

describe("sourceNetworkOf", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["203.0.113.7", "203.0.113.7"],
    ["::1", "0:0:0:0::/64"],
    ["2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:3::1", "2001:db8:1:3::/64"],
    ["", ""],
  ])("should key %j as %j", (address, key) => {
    expect(sourceNetworkOf(address)).toBe(key);
  });

  it("should give every host of one /64 the same key and neighbouring /64s different keys", () => {
    const keys = new Set(["2001:db8:0:5::1", "2001:db8:0:5:ffff:ffff:ffff:ffff", "2001:db8:0:5:1234::9"].map(sourceNetworkOf));
    expect(keys.size).toBe(1);
    expect(sourceNetworkOf("2001:db8:0:6::1")).not.toBe(sourceNetworkOf("2001:db8:0:5::1"));
  });
});

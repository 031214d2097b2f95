import { describe, expect, it } from "vitest";
import { announcedAddresses, classifyAddress, gatherLocalAddresses, orderAddresses, type InterfaceTable } from "./addresses.js";

// Literal strings only: these functions compare addresses, and nothing here is ever dialled.
describe("classifyAddress", () => {
  it.each([
    ["192.168.1.50", "lan-ipv4"],
    ["10.0.0.5", "lan-ipv4"],
    ["172.16.0.1", "lan-ipv4"],
    ["172.31.255.254", "lan-ipv4"],
    ["172.32.0.1", "public"],
    ["100.64.0.1", "private"],
    ["100.127.255.254", "private"],
    ["100.128.0.1", "public"],
    ["fd00::1", "private"],
    ["fc00::1", "private"],
    ["2001:db8::1", "ipv6"],
    ["2a00:1450:4001::1", "ipv6"],
    ["203.0.113.42", "public"],
    ["8.8.8.8", "public"],
    ["::ffff:192.168.1.7", "lan-ipv4"],
    ["127.0.0.1", "excluded"],
    ["::1", "excluded"],
    ["169.254.10.10", "excluded"],
    ["fe80::1", "excluded"],
    ["fe80::1%eth0", "excluded"],
    ["0.0.0.0", "excluded"],
    ["::", "excluded"],
    ["224.0.0.1", "excluded"],
    ["ff02::1", "excluded"],
  ])("should classify %s as %s", (address, expected) => {
    expect(classifyAddress(address)).toBe(expected);
  });

  it.each(["", "example.com", "192.168.1", "1.2.3.4.5", "0x7f.1"])("should reject %j as not an IP literal", (address) => {
    expect(() => classifyAddress(address)).toThrow(TypeError);
  });
});

describe("orderAddresses", () => {
  it.each([
    {
      name: "one address of each class, shuffled",
      input: ["203.0.113.42", "2001:db8::1", "10.0.0.5", "192.168.1.50"],
      expected: ["192.168.1.50", "10.0.0.5", "2001:db8::1", "203.0.113.42"],
    },
    {
      name: "LAN ranges as 192.168, then 10, then 172.16",
      input: ["172.17.0.1", "10.1.2.3", "192.168.0.9"],
      expected: ["192.168.0.9", "10.1.2.3", "172.17.0.1"],
    },
    {
      name: "CGNAT and ULA after LAN, before other IPv6 and public",
      input: ["198.51.100.7", "2001:db8::7", "fd12:3456::1", "100.100.1.1", "192.168.2.2"],
      expected: ["192.168.2.2", "100.100.1.1", "fd12:3456::1", "2001:db8::7", "198.51.100.7"],
    },
    {
      name: "given order kept within a class",
      input: ["192.168.1.9", "192.168.1.2", "192.168.1.5"],
      expected: ["192.168.1.9", "192.168.1.2", "192.168.1.5"],
    },
    {
      name: "loopback, link-local and duplicates dropped",
      input: ["127.0.0.1", "fe80::1", "192.168.1.2", "::1", "169.254.1.1", "192.168.1.2"],
      expected: ["192.168.1.2"],
    },
    { name: "nothing in, nothing out", input: [], expected: [] },
  ])("should order $name", ({ input, expected }) => {
    expect(orderAddresses(input)).toEqual(expected);
  });
});

const interfaces: InterfaceTable = {
  lo: [
    { address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "00:00:00:00:00:00", internal: true, cidr: "127.0.0.1/8" },
    { address: "::1", netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", family: "IPv6", mac: "00:00:00:00:00:00", internal: true, cidr: "::1/128", scopeid: 0 },
  ],
  eth0: [
    { address: "203.0.113.9", netmask: "255.255.255.0", family: "IPv4", mac: "02:00:00:00:00:01", internal: false, cidr: "203.0.113.9/24" },
    { address: "fe80::2", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "02:00:00:00:00:01", internal: false, cidr: "fe80::2/64", scopeid: 2 },
    { address: "2001:db8::9", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "02:00:00:00:00:01", internal: false, cidr: "2001:db8::9/64", scopeid: 0 },
  ],
  wlan0: [
    { address: "192.168.1.50", netmask: "255.255.255.0", family: "IPv4", mac: "02:00:00:00:00:02", internal: false, cidr: "192.168.1.50/24" },
  ],
};

describe("gatherLocalAddresses", () => {
  it("should keep non-loopback, non-link-local addresses in dialling order", () => {
    expect(gatherLocalAddresses(interfaces)).toEqual(["192.168.1.50", "2001:db8::9", "203.0.113.9"]);
  });
});

describe("announcedAddresses", () => {
  it("should announce exactly the override, in its order, even loopback", () => {
    expect(announcedAddresses({ override: ["127.0.0.2", "127.0.0.1"], interfaces })).toEqual(["127.0.0.2", "127.0.0.1"]);
  });

  it("should merge extra addresses into the gathered ones and order them", () => {
    expect(announcedAddresses({ extra: ["100.64.1.1"], interfaces })).toEqual(["192.168.1.50", "100.64.1.1", "2001:db8::9", "203.0.113.9"]);
  });

  it("should announce at most maxAddresses gathered addresses, the best ones", async () => {
    expect(announcedAddresses({ extra: ["100.64.1.1"], interfaces, maxAddresses: 2 })).toEqual(["192.168.1.50", "100.64.1.1"]);
  });

  it("should reject an override that is not an IP literal", () => {
    expect(() => announcedAddresses({ override: ["peer.example"], interfaces })).toThrow(/not an IP literal/);
  });
});

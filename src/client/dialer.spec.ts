import { describe, expect, it } from "vitest";
import { baseUrlOf, dialCandidates } from "./dialer.js";

// Pure functions over literal strings: nothing here is dialled.
describe("dialCandidates", () => {
  it.each([
    {
      name: "announced addresses in the peer's order, then the observed address",
      peer: { port: 8080, addresses: ["192.168.1.50", "2001:db8::1"], observedAddress: "203.0.113.42" },
      remembered: undefined,
      expected: ["192.168.1.50", "2001:db8::1", "203.0.113.42"],
    },
    {
      name: "the remembered winner first when the port is unchanged",
      peer: { port: 8080, addresses: ["192.168.1.50", "10.0.0.5"], observedAddress: "203.0.113.42" },
      remembered: { address: "10.0.0.5", port: 8080 },
      expected: ["10.0.0.5", "192.168.1.50", "203.0.113.42"],
    },
    {
      name: "the remembered winner ignored when the peer moved to another port",
      peer: { port: 9090, addresses: ["192.168.1.50", "10.0.0.5"], observedAddress: "" },
      remembered: { address: "10.0.0.5", port: 8080 },
      expected: ["192.168.1.50", "10.0.0.5"],
    },
    {
      name: "an observed address equal to an announced one once",
      peer: { port: 8080, addresses: ["198.51.100.7"], observedAddress: "198.51.100.7" },
      remembered: undefined,
      expected: ["198.51.100.7"],
    },
    {
      name: "nothing that is not an IP literal",
      peer: { port: 8080, addresses: ["peer.example", "192.168.1.50"], observedAddress: "" },
      remembered: undefined,
      expected: ["192.168.1.50"],
    },
    { name: "nothing from nothing", peer: { port: 8080, addresses: [], observedAddress: "" }, remembered: undefined, expected: [] },
  ])("should list $name", ({ peer, remembered, expected }) => {
    expect(dialCandidates(peer, remembered)).toEqual(expected);
  });
});

describe("baseUrlOf", () => {
  it.each([
    ["192.168.1.50", 8080, "https://192.168.1.50:8080"],
    ["2001:db8::1", 8080, "https://[2001:db8::1]:8080"],
    ["::1", 1, "https://[::1]:1"],
  ])("should write %s port %d as %s", (address, port, expected) => {
    expect(baseUrlOf(address, port)).toBe(expected);
  });
});

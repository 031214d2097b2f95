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

describe("Dialer.follow", () => {
  it("should turn the relay's Watch into states: offline at once with the reason, online dialled, and watch again after aborted", async () => {
    const { Code, ConnectError } = await import("@connectrpc/connect");
    const { createDialer } = await import("./dialer.js");
    const { ManualClock, settle } = await import("../shared/manual-clock.js");
    const clock = new ManualClock();
    // The peer announces a closed port on loopback with no fingerprint: the dial ends in "error"
    // without any traffic (nothing it could verify), which is enough to show a dial happened.
    const peer = { email: "alice@example.com", port: 1, addresses: ["127.0.0.1"], observedAddress: "", capabilities: {}, fingerprint: "" } as never;
    let watches = 0;
    const client = {
      async *watch(_emails: string[], { signal }: { signal?: AbortSignal } = {}) {
        watches += 1;
        if (watches === 1) {
          yield { email: "alice@example.com", online: false, reason: "not_online" as const, initial: true };
          yield { email: "alice@example.com", online: true, peer, initial: false };
          yield { email: "alice@example.com", online: false, reason: "lost" as const, initial: false };
          throw new ConnectError("fell behind", Code.Aborted);
        }
        yield { email: "alice@example.com", online: false, reason: "withdrawn" as const, initial: false };
        // Open until the follower stops, as a real watch is.
        await new Promise((resolve) => signal?.addEventListener("abort", resolve, { once: true }));
      },
    };
    const dialer = createDialer({ identity: {} as never, clock });
    const states: string[] = [];
    dialer.on("state", (email, state, result) => states.push(`${email} ${state}${result?.presence ? ` (${result.presence})` : ""}`));
    const abort = new AbortController();
    const following = dialer.follow(client, ["alice@example.com"], { signal: abort.signal, random: () => 0 });
    await settle();
    expect(states).toEqual(["alice@example.com offline (not_online)", "alice@example.com checking", "alice@example.com error", "alice@example.com offline (lost)"]);
    expect(watches).toBe(1);
    await clock.advance(250); // the first backoff step with random 0
    expect(watches).toBe(2);
    expect(states.at(-1)).toBe("alice@example.com offline (withdrawn)");
    abort.abort();
    await following;
  });
});

import { describe, expect, it } from "vitest";
import { ManualClock } from "../../shared/manual-clock.js";
import { createVisitorCheck, type RegistrationLookup } from "./visitor-check.js";

const bob = "b".repeat(64);
const stranger = "5".repeat(64);

/** A relay's GetRegistration answering from a table, counting calls; `down` makes it fail. */
function scriptedRelay(registered: Record<string, string>) {
  const relay = { calls: 0, down: false, registered };
  const lookup: RegistrationLookup = async (fingerprint) => {
    relay.calls += 1;
    if (relay.down) throw new Error("relay unreachable");
    const email = relay.registered[fingerprint];
    return email === undefined ? undefined : { email };
  };
  return { relay, lookup };
}

// The visitor check's rules on a manual clock, with the relay scripted: the share server and the
// real relay are tested together in test/share/.
describe("createVisitorCheck", () => {
  it("should answer each kind of visitor with its status and code", async () => {
    const { lookup } = scriptedRelay({ [bob]: "Bob@Example.com" });
    const check = createVisitorCheck({ lookup });
    expect(await check.check(undefined)).toMatchObject({ allowed: false, status: 401, error: "no_certificate" });
    expect(await check.check(stranger)).toMatchObject({ allowed: false, status: 403, error: "not_registered" });
    expect(await check.check(bob)).toEqual({ allowed: true, email: "bob@example.com" });
  });

  it("should let in only --allow emails, compared case-insensitively", async () => {
    const { lookup } = scriptedRelay({ [bob]: "bob@example.com", ["c".repeat(64)]: "carol@example.com" });
    const check = createVisitorCheck({ lookup, allow: ["Carol@Example.com"] });
    expect(await check.check(bob)).toMatchObject({ allowed: false, status: 403, error: "not_allowed", email: "bob@example.com" });
    expect(await check.check("c".repeat(64))).toMatchObject({ allowed: true, email: "carol@example.com" });
  });

  it("should ask the relay once per fingerprint for cacheTtlMs, and again after", async () => {
    const clock = new ManualClock();
    const { relay, lookup } = scriptedRelay({ [bob]: "bob@example.com" });
    const check = createVisitorCheck({ lookup, clock, cacheTtlMs: 60_000 });
    await Promise.all([check.check(bob), check.check(bob), check.check(bob)]);
    expect(relay.calls).toBe(1); // concurrent requests of one visitor share the call
    await clock.advance(59_999);
    await check.check(bob);
    expect(relay.calls).toBe(1);
    await clock.advance(1);
    await check.check(bob);
    expect(relay.calls).toBe(2);
  });

  it("should remember a refusal only refusedCacheTtlMs, so a visitor who registers gets in soon", async () => {
    const clock = new ManualClock();
    const { relay, lookup } = scriptedRelay({});
    const check = createVisitorCheck({ lookup, clock, refusedCacheTtlMs: 5_000 });
    expect(await check.check(stranger)).toMatchObject({ error: "not_registered" });
    relay.registered[stranger] = "late@example.com";
    await clock.advance(4_999);
    expect(await check.check(stranger)).toMatchObject({ error: "not_registered" });
    await clock.advance(1);
    expect(await check.check(stranger)).toEqual({ allowed: true, email: "late@example.com" });
  });

  it("should answer 503 while the relay fails, remember nothing of it, and recover", async () => {
    const { relay, lookup } = scriptedRelay({ [bob]: "bob@example.com" });
    const check = createVisitorCheck({ lookup });
    relay.down = true;
    const verdict = await check.check(bob);
    expect(verdict).toMatchObject({ allowed: false, status: 503, error: "relay_unavailable" });
    expect(verdict.allowed ? undefined : verdict.cause).toBeInstanceOf(Error);
    relay.down = false;
    expect(await check.check(bob)).toEqual({ allowed: true, email: "bob@example.com" });
    expect(relay.calls).toBe(2);
  });

  it("should keep at most maxEntries fingerprints", async () => {
    const { relay, lookup } = scriptedRelay({});
    const check = createVisitorCheck({ lookup, maxEntries: 2 });
    for (const fingerprint of ["1", "2", "3"]) await check.check(fingerprint.repeat(64));
    await check.check("1".repeat(64)); // evicted by the third: asked again
    expect(relay.calls).toBe(4);
  });
});

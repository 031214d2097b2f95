import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadTicketKeys, ticketKeysFile, TicketKeysError } from "./tls-ticket-keys.js";

const root = mkdtempSync(join(tmpdir(), "relay-ticket-keys-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `data-${++n}`);

describe("loadTicketKeys", () => {
  it("should create 48 bytes of keys readable by the owner only, then read the same keys back", async () => {
    const dir = freshDir();
    const keys = await loadTicketKeys(dir);
    expect(keys.length).toBe(48);
    expect(statSync(join(dir, ticketKeysFile)).mode & 0o777).toBe(0o600);
    expect((await loadTicketKeys(dir)).equals(keys)).toBe(true);
  });

  it("should give every process starting at once on one directory the same keys", async () => {
    const dir = freshDir();
    const all = await Promise.all(Array.from({ length: 8 }, () => loadTicketKeys(dir)));
    expect(new Set(all.map((keys) => keys.toString("hex"))).size).toBe(1);
  });

  it("should refuse a file that does not hold keys, saying how to fix it", async () => {
    const dir = freshDir();
    await loadTicketKeys(dir);
    writeFileSync(join(dir, ticketKeysFile), "not keys\n");
    await expect(loadTicketKeys(dir)).rejects.toThrow(TicketKeysError);
    await expect(loadTicketKeys(dir)).rejects.toThrow(/delete it/);
  });
});

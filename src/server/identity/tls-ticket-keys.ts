/**
 * The keys that encrypt the relay's TLS session tickets, kept in --data-dir so they survive a
 * restart: peers reconnecting after one resume their TLS sessions (no certificate exchange, no
 * signatures) instead of all doing full handshakes at once. Copy the file to every instance
 * behind one address and a peer resumes on whichever it reaches.
 *
 * A ticket carries the session's client certificate, and whoever holds these keys can mint
 * tickets: the file is as secret as the relay's private key (mode 0600). Delete it to rotate
 * (every outstanding ticket stops working: peers do one full handshake each).
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** File name of the ticket keys in the data directory. */
export const ticketKeysFile = "tls-ticket-keys";

/** Node's ticketKeys length: 16 bytes of key name, 16 of HMAC key, 16 of AES key. */
const keyLength = 48;

/** Thrown when the ticket keys file exists but does not hold keys. */
export class TicketKeysError extends Error {
  override readonly name = "TicketKeysError";
}

/**
 * Reads the ticket keys from dataDir, or creates them there. Safe when several processes start
 * at once on one directory: new keys are written to a file of their own and linked into place,
 * which fails for all but the first; the others read what the first wrote, never a partial file.
 */
export async function loadTicketKeys(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, ticketKeysFile);
  await mkdir(dataDir, { recursive: true });
  const draft = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await writeFile(draft, randomBytes(keyLength).toString("base64") + "\n", { mode: 0o600 });
  try {
    await link(draft, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    await unlink(draft);
  }
  const keys = Buffer.from((await readFile(path, "utf8")).trim(), "base64");
  if (keys.length !== keyLength) throw new TicketKeysError(`${path} does not hold ${keyLength} bytes of base64: delete it and the relay makes new keys`);
  return keys;
}

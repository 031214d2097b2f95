import { Code, ConnectError } from "@connectrpc/connect";

/**
 * List paging is keyset paging on email: a token carries the last email of the previous page,
 * so pages stay stable while peers come and go (no skipped or repeated peers that stay online).
 * The token is opaque to clients: base64url of a versioned JSON object.
 */

// The longest token the relay issues: an email is at most 254 UTF-16 units, so at most 762 bytes
// of UTF-8 (3 per unit) or 508 bytes of JSON escapes (\" per unit), plus 17 bytes of JSON, 1040
// characters of base64url. A smaller bound refused tokens the relay itself issued for long
// non-ASCII emails (found by request-properties.spec.ts).
const maxTokenLength = 1040;

export function encodePageToken(lastEmail: string): string {
  return Buffer.from(JSON.stringify({ v: 1, after: lastEmail })).toString("base64url");
}

/** The email to continue after; "" for an empty token. */
export function decodePageToken(token: string): string {
  if (token === "") return "";
  const bad = new ConnectError("page_token is not one this relay issued: pass next_page_token from the previous List unchanged", Code.InvalidArgument);
  if (token.length > maxTokenLength || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad;
  }
  if (typeof parsed !== "object" || parsed === null) throw bad;
  const { v, after } = parsed as { v?: unknown; after?: unknown };
  if (v !== 1 || typeof after !== "string" || after.length === 0) throw bad;
  return after;
}

import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { failureOfSync, outcomeOfSync } from "../../../test/support/codes.js";

/** A well-formed token (base64url of {"v":1,"after":…}) of exactly `length` characters. */
function tokenOfLength(length: number): string {
  // base64url of n bytes is ceil(4n/3) characters: pad the JSON with spaces (still valid JSON).
  const json = JSON.stringify({ v: 1, after: "peer@example.com" });
  const bytes = Math.floor((length * 3) / 4);
  const token = Buffer.from(json + " ".repeat(bytes - json.length)).toString("base64url");
  if (token.length !== length) throw new Error(`no token of ${length} characters`);
  return token;
}

describe("page tokens", () => {
  it("should round-trip the last email of a page", () => {
    expect(decodePageToken(encodePageToken("peer@example.com"))).toBe("peer@example.com");
  });
  it("should read an empty token as the first page", () => expect(decodePageToken("")).toBe(""));

  it("should read back the longest token it issues (a 254-character email of 3-byte characters)", () => {
    const email = "\u20ac".repeat(252) + "@\u20ac";
    const token = encodePageToken(email);
    expect(token.length).toBe(1038);
    expect(decodePageToken(token)).toBe(email);
  });

  it("should accept a well-formed token of 1040 characters and refuse one of 1042 (the next length base64url has)", () => {
    expect(decodePageToken(tokenOfLength(1040))).toBe("peer@example.com");
    // Well-formed in every other way: only its length is wrong.
    expect(outcomeOfSync(() => decodePageToken(tokenOfLength(1042)))).toBe(Code.InvalidArgument);
  });

  it.each([
    ["not base64url", "a+b/c="],
    ["not JSON", Buffer.from("{").toString("base64url")],
    ["another version", Buffer.from(JSON.stringify({ v: 2, after: "a@b" })).toString("base64url")],
    ["no email", Buffer.from(JSON.stringify({ v: 1 })).toString("base64url")],
    ["an email that is not a string", Buffer.from(JSON.stringify({ v: 1, after: 7 })).toString("base64url")],
    ["an empty email", Buffer.from(JSON.stringify({ v: 1, after: "" })).toString("base64url")],
    ["JSON null", Buffer.from("null").toString("base64url")],
    ["a JSON string", Buffer.from('"a@b"').toString("base64url")],
    ["valid JSON with a character outside base64url", Buffer.from(JSON.stringify({ v: 1, after: "a@b" })).toString("base64url") + "."],
    ["valid JSON after a character outside base64url", "." + Buffer.from(JSON.stringify({ v: 1, after: "a@b" })).toString("base64url")],
    ["too long, though well-formed", encodePageToken("a".repeat(800) + "@example.com")],
  ])("should refuse a token that is %s with invalid_argument", (_, token) => {
    expect(outcomeOfSync(() => decodePageToken(token))).toBe(Code.InvalidArgument);
  });

  it("should tell the client what to send instead", () => {
    expect(failureOfSync(() => decodePageToken("!"))).toEqual({ code: Code.InvalidArgument, message: "page_token is not one this relay issued: pass next_page_token from the previous List unchanged" });
  });
});

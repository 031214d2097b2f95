import { describe, expect, it } from "vitest";
import { ConnectError, Code } from "@connectrpc/connect";
import { decodePageToken, encodePageToken } from "./page-token.js";

describe("page tokens", () => {
  it("should round-trip the last email of a page", () => {
    expect(decodePageToken(encodePageToken("peer@example.com"))).toBe("peer@example.com");
  });
  it("should read an empty token as the first page", () => expect(decodePageToken("")).toBe(""));
  it.each([
    ["not base64url", "a+b/c="],
    ["not JSON", Buffer.from("{").toString("base64url")],
    ["another version", Buffer.from(JSON.stringify({ v: 2, after: "a@b" })).toString("base64url")],
    ["no email", Buffer.from(JSON.stringify({ v: 1 })).toString("base64url")],
    ["an empty email", Buffer.from(JSON.stringify({ v: 1, after: "" })).toString("base64url")],
    ["JSON null", Buffer.from("null").toString("base64url")],
    ["too long", "A".repeat(600)],
  ])("should refuse a token that is %s", (_, token) => {
    expect(() => decodePageToken(token)).toThrow(ConnectError);
    try {
      decodePageToken(token);
    } catch (error) {
      expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    }
  });
});

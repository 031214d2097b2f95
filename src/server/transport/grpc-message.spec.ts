import { describe, expect, it } from "vitest";
import { encodeGrpcMessage, reencodeGrpcMessage } from "./grpc-message.js";

describe("encodeGrpcMessage", () => {
  it.each([
    ["peer nobody@example.com is not online", "peer nobody@example.com is not online"],
    ["is not registered: call Register first", "is not registered: call Register first"],
    ["a/b?c#d&e=f+g,h;i$j", "a/b?c#d&e=f+g,h;i$j"],
    ["100% sure", "100%25 sure"],
    ["line\nbreak\ttab", "line%0Abreak%09tab"],
    ["ab12… is not registered", "ab12%E2%80%A6 is not registered"],
    ["café", "caf%C3%A9"],
    ["~ and space", "~ and space"],
  ])("should encode %j as %j", (message, encoded) => {
    expect(encodeGrpcMessage(message)).toBe(encoded);
  });

  it("should turn connect-es's encodeURIComponent output into the spec's encoding", () => {
    const message = "peer nobody@example.com: 100% … gone";
    expect(reencodeGrpcMessage(encodeURIComponent(message))).toBe("peer nobody@example.com: 100%25 %E2%80%A6 gone");
    expect(decodeURIComponent(reencodeGrpcMessage(encodeURIComponent(message)))).toBe(message);
  });

  it("should leave a value that is not valid percent-encoding as it is", () => {
    expect(reencodeGrpcMessage("%E2%80")).toBe("%E2%80");
  });
});

import { describe, expect, it } from "vitest";
import { formatListenAddress, parseListenAddress } from "./listen-address.js";

describe("parseListenAddress", () => {
  it.each([
    ["127.0.0.1:8443", { host: "127.0.0.1", port: 8443 }],
    ["[::1]:0", { host: "::1", port: 0 }],
    ["localhost:80", { host: "localhost", port: 80 }],
    ["0.0.0.0:65535", { host: "0.0.0.0", port: 65535 }],
    ["127.0.0.1", undefined],
    ["127.0.0.1:65536", undefined],
    ["127.0.0.1:", undefined],
    [":8443", undefined],
    ["::1:9464", undefined],
    ["[::1]", undefined],
    ["host name:80", undefined],
    ["127.0.0.1:123456", undefined],
  ])("should parse %j as %j", (value, expected) => {
    expect(parseListenAddress(value)).toEqual(expected);
  });

  it.each([
    [{ host: "127.0.0.1", port: 8443 }, "127.0.0.1:8443"],
    [{ host: "::1", port: 1 }, "[::1]:1"],
  ])("should format %j as %s and read it back", (address, text) => {
    expect(formatListenAddress(address)).toBe(text);
    expect(parseListenAddress(text)).toEqual(address);
  });
});

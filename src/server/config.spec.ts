import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("should fill every field from its default", () => {
    expect(loadConfig([], {})).toMatchObject({ listenHost: "127.0.0.1", listenPort: 8443, mongodbUri: "", tlsCert: "", tlsKey: "", dataDir: ".data", broadcastTtlSeconds: 3600, logLevel: "info", adminHost: "127.0.0.1", adminPort: 9464, adminEnabled: true });
  });
  it.each([
    [["--admin-listen", "[::1]:0"], { adminHost: "::1", adminPort: 0, adminEnabled: true }],
    [["--admin-listen", "off"], { adminEnabled: false }],
  ])("should read the admin listener from %j", (argv, expected) => {
    expect(loadConfig(argv, {})).toMatchObject(expected);
  });
  it("should prefer flags over env vars over defaults", () => {
    const config = loadConfig(["--listen", "[::1]:9000"], { RELAY_LISTEN: "127.0.0.1:1", MONGODB_URI: "mongodb://127.0.0.1:27017/relay", RELAY_BROADCAST_TTL: "60" });
    expect(config).toMatchObject({ listenHost: "::1", listenPort: 9000, mongodbUri: "mongodb://127.0.0.1:27017/relay", broadcastTtlSeconds: 60 });
  });
  it("should answer help", () => expect(loadConfig(["--help"], {})).toBe("help"));
  it.each([
    ["an unknown flag", ["--nope", "1"]],
    ["a listen address without port", ["--listen", "127.0.0.1"]],
    ["a port out of range", ["--listen", "127.0.0.1:70000"]],
    ["a ttl that is not whole seconds", ["--broadcast-ttl", "1.5"]],
    ["a zero ttl", ["--broadcast-ttl", "0"]],
    ["a cert without its key", ["--tls-cert", "cert.pem"]],
    ["a URI of another scheme", ["--mongodb-uri", "postgres://x"]],
    ["an unknown log level", ["--log-level", "loud"]],
    ["an admin address without port", ["--admin-listen", "127.0.0.1"]],
    ["a positional argument", ["serve"]],
  ])("should refuse %s with a ConfigError", (_, argv) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
  });
});

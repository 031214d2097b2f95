import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { bytes, choice, ConfigError, configHelp, configMarkdownTable, duration, formatDuration, list, listenAddress, loadConfig, relayOptions, text, whole, type OptionSpec, type RelayConfig } from "./config.js";

function load(argv: string[], env: Record<string, string> = {}): RelayConfig {
  const config = loadConfig(argv, env);
  if (config === "help") throw new Error("unexpected help");
  return config;
}

describe("loadConfig", () => {
  it("should fill every field from its default", () => {
    expect(load([])).toEqual({
      listen: { host: "127.0.0.1", port: 8443 },
      mongodbUri: "",
      lookupBatchSize: 1,
      lookupCacheSize: 50_000,
      tlsCert: "",
      tlsKey: "",
      tlsHostnames: [],
      dataDir: ".data",
      broadcastTtlMs: 3_600_000,
      presenceGraceMs: 30_000,
      registrationRetentionMs: 30 * 86_400_000,
      registrationsPerNetwork: 30,
      listVisibility: "all",
      rateLimitWindowMs: 10_000,
      rateLimitPerCertificate: 50,
      rateLimitPerIp: 500,
      maxUnauthenticatedPerSource: 32,
      maxConnectionsPerCertificate: 8,
      maxConcurrentStreams: 32,
      maxStreamsPerCertificate: 4,
      idleTimeoutMs: 120_000,
      handshakeTimeoutMs: 10_000,
      requestTimeoutMs: 15_000,
      writeTimeoutMs: 20_000,
      maxSessionBufferBytes: 2 * 1024 * 1024,
      maxClientResetsPerMinute: 200,
      maxSessionMemoryMiB: 4,
      memoryReducer: "off",
      workers: 1,
      listenBacklog: 4096,
      maxHandshakes: 128,
      handshakeQueue: 16_384,
      handshakeQueueWaitMs: 60_000,
      onboardingHoldMs: 10_000,
      onboardingHoldPerSource: 16,
      drainDelayMs: 0,
      shutdownTimeoutMs: 10_000,
      adminListen: { host: "127.0.0.1", port: 8444 },
      logLevel: "info",
    });
  });

  it.each([
    [["--admin-listen", "[::1]:0"], { adminListen: { host: "::1", port: 0 } }],
    [["--admin-listen", "off"], { adminListen: undefined }],
    [["--admin-listen=off"], { adminListen: undefined }],
    [["--broadcast-ttl", "90"], { broadcastTtlMs: 90_000 }],
    [["--broadcast-ttl", "2m"], { broadcastTtlMs: 120_000 }],
    [["--idle-timeout", "0"], { idleTimeoutMs: 0 }],
    [["--request-timeout", "1500ms"], { requestTimeoutMs: 1500 }],
    [["--handshake-timeout", "2.5s"], { handshakeTimeoutMs: 2500 }],
    [["--rate-limit-window", "1m"], { rateLimitWindowMs: 60_000 }],
    [["--rate-limit-per-cert", "7"], { rateLimitPerCertificate: 7 }],
    [["--rate-limit-per-ip", "9"], { rateLimitPerIp: 9 }],
    [["--max-unauthenticated-per-source", "3"], { maxUnauthenticatedPerSource: 3 }],
    [["--max-conns-per-cert", "2"], { maxConnectionsPerCertificate: 2 }],
    [["--write-timeout", "5s"], { writeTimeoutMs: 5000 }],
    [["--max-session-buffer", "512KiB"], { maxSessionBufferBytes: 512 * 1024 }],
    [["--max-client-resets", "50"], { maxClientResetsPerMinute: 50 }],
    [["--shutdown-timeout", "3s"], { shutdownTimeoutMs: 3000 }],
    [["--max-streams", "5"], { maxConcurrentStreams: 5 }],
    [["--max-streams-per-cert", "1"], { maxStreamsPerCertificate: 1 }],
    [["--max-session-memory", "16"], { maxSessionMemoryMiB: 16 }],
    [["--memory-reducer", "on"], { memoryReducer: "on" }],
    [["--drain-delay", "3s"], { drainDelayMs: 3000 }],
    [["--log-level", "debug"], { logLevel: "debug" }],
  ])("should read %j", (argv, expected) => {
    expect(load(argv)).toMatchObject(expected);
  });

  it("should prefer flags over env vars over defaults", () => {
    const config = load(["--listen", "[::1]:9000"], { RELAY_LISTEN: "127.0.0.1:1", MONGODB_URI: "mongodb://127.0.0.1:27017/relay", RELAY_BROADCAST_TTL: "60" });
    expect(config).toMatchObject({ listen: { host: "::1", port: 9000 }, mongodbUri: "mongodb://127.0.0.1:27017/relay", broadcastTtlMs: 60_000 });
  });

  it("should read every option from its env var", () => {
    for (const [key, spec] of Object.entries(relayOptions) as Array<[keyof RelayConfig, OptionSpec<unknown>]>) {
      const sample = samples[key];
      // A given certificate comes as a pair; --tls-hostname names a generated one instead.
      const certificate: Record<string, string> = key === "tlsHostnames" ? {} : { RELAY_TLS_CERT: "c.pem", RELAY_TLS_KEY: "k.pem" };
      // Several workers need a database they can share.
      const database: Record<string, string> = key === "workers" ? { MONGODB_URI: "mongodb://127.0.0.1:1/x" } : {};
      expect(load([], { ...certificate, ...database, [spec.env]: sample.text })[key], spec.env).toEqual(sample.value);
    }
  });

  it("should answer help", () => {
    expect(loadConfig(["--help"], {})).toBe("help");
    expect(loadConfig(["-h"], {})).toBe("help");
  });

  it.each([
    ["an unknown flag", ["--nope", "1"], /unknown option --nope/],
    ["a flag without its value", ["--listen"], /--listen needs a value/],
    ["a listen address without port", ["--listen", "127.0.0.1"], /--listen "127\.0\.0\.1" is not host:port/],
    ["a port out of range", ["--listen", "127.0.0.1:70000"], /--listen "127\.0\.0\.1:70000"/],
    ["a ttl that is negative", ["--broadcast-ttl", "-5"], /--broadcast-ttl "-5" must be a duration/],
    ["a zero ttl", ["--broadcast-ttl", "0"], /--broadcast-ttl "0" must be a duration from 1s/],
    ["a ttl with an unknown unit", ["--broadcast-ttl", "5w"], /--broadcast-ttl "5w"/],
    ["a cert without its key", ["--tls-cert", "cert.pem"], /--tls-cert and --tls-key go together/],
    ["a URI of another scheme", ["--mongodb-uri", "postgres://x"], /--mongodb-uri "postgres:\/\/x" must start with mongodb:\/\//],
    ["an unknown log level", ["--log-level", "loud"], /--log-level "loud" must be one of trace, debug/],
    ["a memory reducer neither on nor off", ["--memory-reducer", "yes"], /--memory-reducer "yes" must be one of off, on/],
    ["an admin address without port", ["--admin-listen", "127.0.0.1"], /--admin-listen "127\.0\.0\.1" is not host:port .* or off/],
    ["a fractional count", ["--max-streams", "1.5"], /--max-streams "1\.5" must be a whole number of streams from 1 to 10000/],
    ["zero streams", ["--max-streams", "0"], /--max-streams "0"/],
    ["a per-cert limit out of range", ["--rate-limit-per-cert", "1000001"], /--rate-limit-per-cert "1000001"/],
    ["session memory out of range", ["--max-session-memory", "0"], /--max-session-memory "0"/],
    ["a handshake timeout under a second", ["--handshake-timeout", "10ms"], /--handshake-timeout "10ms"/],
    ["an empty data dir", ["--data-dir", ""], /--data-dir "" must not be empty/],
    ["a positional argument", ["serve"], /unexpected argument "serve"/],
    ["a host name with a space", ["--tls-hostname", "relay host"], /--tls-hostname "relay host" "relay host" is not a DNS name or an IP address/],
    ["--tls-hostname with a given certificate", ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-hostname", "relay.example.com"], /--tls-hostname names the hosts of the generated certificate/],
  ])("should refuse %s, naming the flag and the value", (_, argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(message);
  });

  it("should name the env var when the bad value came from it", () => {
    expect(() => loadConfig([], { RELAY_MAX_STREAMS: "lots" })).toThrow(/^RELAY_MAX_STREAMS "lots" must be a whole number/);
  });
});

/** A non-default value for each option, as text and as parsed. */
const samples: { [K in keyof RelayConfig]: { text: string; value: RelayConfig[K] } } = {
  listen: { text: "[::1]:9", value: { host: "::1", port: 9 } },
  mongodbUri: { text: "mongodb://127.0.0.1:1/x", value: "mongodb://127.0.0.1:1/x" },
  lookupBatchSize: { text: "256", value: 256 },
  lookupCacheSize: { text: "0", value: 0 },
  tlsCert: { text: "c.pem", value: "c.pem" },
  tlsKey: { text: "k.pem", value: "k.pem" },
  tlsHostnames: { text: "relay.example.com,192.0.2.7", value: ["relay.example.com", "192.0.2.7"] },
  dataDir: { text: "/var/lib/relay", value: "/var/lib/relay" },
  broadcastTtlMs: { text: "1h", value: 3_600_000 },
  presenceGraceMs: { text: "9s", value: 9000 },
  registrationRetentionMs: { text: "7d", value: 7 * 86_400_000 },
  registrationsPerNetwork: { text: "0", value: 0 },
  listVisibility: { text: "none", value: "none" },
  rateLimitWindowMs: { text: "30s", value: 30_000 },
  rateLimitPerCertificate: { text: "0", value: 0 },
  rateLimitPerIp: { text: "1", value: 1 },
  maxUnauthenticatedPerSource: { text: "2", value: 2 },
  maxConnectionsPerCertificate: { text: "9", value: 9 },
  maxConcurrentStreams: { text: "3", value: 3 },
  maxStreamsPerCertificate: { text: "14", value: 14 },
  idleTimeoutMs: { text: "4s", value: 4000 },
  handshakeTimeoutMs: { text: "5s", value: 5000 },
  requestTimeoutMs: { text: "6s", value: 6000 },
  writeTimeoutMs: { text: "11s", value: 11_000 },
  maxSessionBufferBytes: { text: "1MiB", value: 1024 ** 2 },
  maxClientResetsPerMinute: { text: "12", value: 12 },
  maxSessionMemoryMiB: { text: "7", value: 7 },
  memoryReducer: { text: "on", value: "on" },
  workers: { text: "2", value: 2 },
  listenBacklog: { text: "100", value: 100 },
  maxHandshakes: { text: "9", value: 9 },
  handshakeQueue: { text: "10", value: 10 },
  handshakeQueueWaitMs: { text: "11s", value: 11_000 },
  onboardingHoldMs: { text: "12s", value: 12_000 },
  onboardingHoldPerSource: { text: "5", value: 5 },
  drainDelayMs: { text: "8s", value: 8000 },
  shutdownTimeoutMs: { text: "13s", value: 13_000 },
  adminListen: { text: "off", value: undefined },
  logLevel: { text: "warn", value: "warn" },
};

describe("option types", () => {
  it.each([
    [0, "0ms"],
    [1500, "1500ms"],
    [10_000, "10s"],
    [120_000, "2m"],
    [3_600_000, "1h"],
    [30 * 86_400_000, "30d"],
  ])("should format %i ms as %s and read it back", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(duration(0, Number.MAX_SAFE_INTEGER).parse(text)).toBe(ms);
  });

  it.each([
    ["16KiB", 16 * 1024],
    ["4MiB", 4 * 1024 ** 2],
    ["1GiB", 1024 ** 3],
    ["100", 100],
  ])("should read the size %s", (text, size) => {
    expect(bytes(0, 1024 ** 3).parse(text)).toBe(size);
  });

  it("should refuse sizes outside the range and of unknown units", () => {
    expect(() => bytes(1024, 2048).parse("4KiB")).toThrow(/from 1KiB to 2KiB/);
    expect(() => bytes(0, 2048).parse("1kb")).toThrow(/must be a size/);
  });

  it("should split a list and check each item", () => {
    const names = list((item) => (/^[a-z.]+$/.test(item) ? undefined : "is not a name"));
    expect(names.parse("a.example, b.example,")).toEqual(["a.example", "b.example"]);
    expect(() => names.parse("a.example,B!")).toThrow('"B!" is not a name');
  });

  it("should show every option with its env var and default in --help", () => {
    const help = configHelp();
    for (const spec of Object.values(relayOptions) as Array<OptionSpec<unknown>>) {
      expect(help).toContain(`--${spec.flag} <`);
      expect(help).toContain(`env ${spec.env}`);
    }
    expect(help).toContain("default 1h");
    expect(help).toContain("default 127.0.0.1:8444");
  });

  it("should read back every default as its own flag value", () => {
    for (const spec of Object.values(relayOptions) as Array<OptionSpec<unknown>>) {
      expect(spec.type.parse(spec.type.format(spec.default)), spec.flag).toEqual(spec.default);
    }
  });
});

describe("docs/operating.md", () => {
  it("should hold the options table generated from the config table", () => {
    const doc = readFileSync(new URL("../../../docs/operating.md", import.meta.url), "utf8");
    const generated = configMarkdownTable();
    const start = doc.indexOf("<!-- options:start -->");
    const end = doc.indexOf("<!-- options:end -->");
    expect(start, "docs/operating.md has no <!-- options:start --> marker").toBeGreaterThan(-1);
    expect(doc.slice(start + "<!-- options:start -->".length, end).trim(), "run: npm run docs:options").toBe(generated);
  });
});

describe("option type bounds and spellings", () => {
  it.each([
    ["a whole number at its maximum", () => whole(1, 10, "things").parse("10"), 10],
    ["a whole number at its minimum", () => whole(1, 10, "things").parse("1"), 1],
    ["a duration at its maximum", () => duration(1000, 2000).parse("2s"), 2000],
    ["a duration at its minimum", () => duration(1000, 2000).parse("1s"), 1000],
    ["a duration with two decimals", () => duration(0, 10_000).parse("2.25s"), 2250],
    ["a size at its minimum", () => bytes(0, 2048).parse("0"), 0],
    ["a size at its maximum", () => bytes(0, 2048).parse("2KiB"), 2048],
  ])("should accept %s", (_, parse, value) => expect(parse()).toBe(value));

  it.each([
    ["a whole number over its maximum", () => whole(1, 10, "things").parse("11"), "must be a whole number of things from 1 to 10"],
    ["a duration over its maximum", () => duration(1000, 2000).parse("2001ms"), "must be a duration from 1s to 2s (for example 10s, 500ms, 2m)"],
    ["a size with text before it", () => bytes(0, 2048).parse("x16"), "must be a size from 0B to 2KiB (for example 16KiB, 4MiB)"],
    ["a size under its minimum", () => bytes(1, 2048).parse("0"), "must be a size from 1B to 2KiB (for example 16KiB, 4MiB)"],
  ])("should refuse %s, saying the range", (_, parse, message) => expect(parse).toThrow(new Error(message)));

  it.each([
    [0, "0B"],
    [1000, "1000B"],
    [1024, "1KiB"],
    [3 * 1024 ** 2, "3MiB"],
    [1024 ** 3, "1GiB"],
  ])("should show the size %i as %s", (size, text) => expect(bytes(0, 1024 ** 4).format(size)).toBe(text));

  it("should name each type as --help shows it", () => {
    expect([whole(0, 1, "streams").name, duration(0, 1).name, bytes(0, 1).name, list(() => undefined).name, listenAddress(true).name, listenAddress().name, text().name, choice(["a", "b"]).name]).toEqual(["streams", "duration", "size", "list", "host:port|off", "host:port", "text", "a|b"]);
  });

  it("should show list and listen values as a flag takes them", () => {
    expect(list(() => undefined).format(["a", "b"])).toBe("a,b");
    expect(listenAddress(true).format(undefined)).toBe("off");
    expect(listenAddress(true).format({ host: "::1", port: 9 })).toBe("[::1]:9");
    expect(() => listenAddress().parse("off")).toThrow(new Error("is not host:port (for example 127.0.0.1:8443 or [::1]:8443)"));
  });

  it.each([
    ["a flag with text before it", ["x--listen", "127.0.0.1:1"], 'unexpected argument "x--listen": options are --name value'],
    ["a flag with a character a name cannot have", ["--listen!", "127.0.0.1:1"], 'unexpected argument "--listen!": options are --name value'],
  ])("should refuse %s", (_, argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(message);
  });

  it("should refuse a MongoDB URI whose scheme is not at the start", () => {
    expect(() => loadConfig(["--mongodb-uri", "x-mongodb://127.0.0.1"], {})).toThrow('--mongodb-uri "x-mongodb://127.0.0.1" must start with mongodb:// or mongodb+srv://');
    expect(load(["--mongodb-uri", "mongodb+srv://db.example/relay"]).mongodbUri).toBe("mongodb+srv://db.example/relay");
  });

  it("should throw errors named ConfigError", () => {
    expect(() => loadConfig(["--nope"], {})).toThrow(expect.objectContaining({ name: "ConfigError" }));
  });

  it("should lay out one --help row per option: flag and type, help, then env and default", () => {
    const help = configHelp();
    expect(help.startsWith("usage: relay [options]\n\noptions:\n")).toBe(true);
    expect(help).toContain(`  ${"--listen <host:port>".padEnd(42)} where to serve`);
    expect(help).toContain(`\n  ${" ".repeat(40)}  env RELAY_LISTEN, default 127.0.0.1:8443\n`);
    // An empty default is not shown.
    expect(help).toContain(`\n  ${" ".repeat(40)}  env RELAY_TLS_CERT\n`);
    expect(help.endsWith(`  --${"help".padEnd(40)} this text\n`)).toBe(true);
  });
});

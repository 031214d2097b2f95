import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { createTestPeer, relayClient } from "./support/peers.js";
import { relayOptions } from "../src/server/ops/config.js";
import { createSelfSignedCertificate } from "../src/shared/self-signed-certificate.js";
import { freePort } from "./support/relay-process.js";
import { relayCommand } from "./support/commands.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "relay-cli-"));
  dirs.push(dir);
  return dir;
}


/** Runs the relay command to its end; returns exit code and output. */
async function runToExit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(relayCommand[0], [...relayCommand.slice(1), ...args], { env: { ...process.env, MONGODB_URI: "" } });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

/** Starts the relay command and resolves with its "relay listening" log line. */
async function start(args: string[]): Promise<{ child: ChildProcess; listening: Record<string, unknown>; lines: string[] }> {
  const child = spawn(relayCommand[0], [...relayCommand.slice(1), "--admin-listen", "off", ...args], { env: { ...process.env, MONGODB_URI: "" } });
  const lines: string[] = [];
  let buffer = "";
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        lines.push(line);
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.msg === "relay listening") resolve(entry);
      }
    });
    child.once("exit", (code) => reject(new Error(`relay exited with ${code}: ${lines.join("\n")}`)));
  });
  return { child, listening, lines };
}

describe("the relay command", () => {
  it("should generate a certificate, serve on the given port with the in-memory store, and stop cleanly on SIGTERM", async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const { child, listening, lines } = await start(["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir]);
    expect(listening).toMatchObject({ url: `https://127.0.0.1:${port}`, store: "memory", certificate: join(dataDir, "relay-cert.pem") });
    expect(lines.some((line) => line.includes("in-memory store"))).toBe(true);

    const caPem = readFileSync(join(dataDir, "relay-cert.pem"), "utf8");
    const peer = await createTestPeer(`cli-${process.pid}@example.com`);
    const client = relayClient({ url: `https://127.0.0.1:${port}`, caPem }, peer);
    expect((await client.register({ email: peer.email, certificatePem: peer.certificatePem })).clientId).toBe(peer.fingerprint);

    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(0);
  });

  it("should reuse the certificate it generated on the next start", async () => {
    const dataDir = tempDir();
    const first = await start(["--listen", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir]);
    const pem = readFileSync(join(dataDir, "relay-cert.pem"), "utf8");
    first.child.kill("SIGINT");
    await once(first.child, "exit");
    const second = await start(["--listen", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir]);
    expect(second.lines.some((line) => line.includes("generated a self-signed relay certificate"))).toBe(false);
    expect(readFileSync(join(dataDir, "relay-cert.pem"), "utf8")).toBe(pem);
    second.child.kill("SIGTERM");
    await once(second.child, "exit");
  });

  it("should put --tls-hostname names into the generated certificate, and regenerate it, saying so, when the names change", async () => {
    const dataDir = tempDir();
    const names = ["--tls-hostname", "relay.example.test", "--tls-hostname", "127.0.0.5"];
    const first = await start(["--listen", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir, ...names]);
    const pem = readFileSync(join(dataDir, "relay-cert.pem"), "utf8");
    const sans = new X509Certificate(pem).subjectAltName ?? "";
    expect(sans).toContain("DNS:relay.example.test");
    expect(sans).toContain("IP Address:127.0.0.5");
    // A peer that dials the relay by that name verifies it against the pinned certificate.
    const port = Number(new URL(String(first.listening.url)).port);
    const handshake = (servername: string) =>
      new Promise<string>((resolve) => {
        const socket = tlsConnect({ host: "127.0.0.1", port, servername, ca: pem, ALPNProtocols: ["h2"] });
        socket.once("secureConnect", () => (socket.destroy(), resolve("verified")));
        socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
    expect(await handshake("relay.example.test")).toBe("verified");
    expect(await handshake("elsewhere.example.test")).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    first.child.kill("SIGTERM");
    await once(first.child, "exit");

    const same = await start(["--listen", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir, ...names]);
    expect(same.lines.some((line) => /generated|names changed/.test(line))).toBe(false);
    expect(readFileSync(join(dataDir, "relay-cert.pem"), "utf8")).toBe(pem);
    same.child.kill("SIGTERM");
    await once(same.child, "exit");

    const changed = await start(["--listen", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir, "--tls-hostname", "relay.example.test"]);
    const notice = changed.lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => String(entry.msg).includes("names changed"));
    expect(notice).toMatchObject({ level: 40, previousNames: ["127.0.0.1", "127.0.0.5", "::1", "localhost", "relay.example.test"], names: ["127.0.0.1", "::1", "localhost", "relay.example.test"] });
    expect(readFileSync(join(dataDir, "relay-cert.pem"), "utf8")).not.toBe(pem);
    changed.child.kill("SIGTERM");
    await once(changed.child, "exit");
  });

  it.each([
    ["an unknown flag", ["--bogus", "1"], 2, /^relay: unknown option --bogus \(see relay --help\)\n$/],
    ["a bad listen address", ["--listen", "nowhere"], 2, /^relay: --listen "nowhere" is not host:port/],
    ["a bad ttl", ["--broadcast-ttl", "soon"], 2, /^relay: --broadcast-ttl "soon" must be a duration/],
    ["a negative ttl", ["--broadcast-ttl", "-5"], 2, /^relay: --broadcast-ttl "-5" must be a duration/],
  ])("should exit non-zero with one line on %s", async (_, args, exitCode, message) => {
    const { code, stderr } = await runToExit([...args, "--data-dir", tempDir()]);
    expect(code).toBe(exitCode);
    expect(stderr).toMatch(message);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });

  it("should exit 1 with one line when the port is taken", async () => {
    const taken = createServer();
    taken.listen(0, "127.0.0.1");
    await once(taken, "listening");
    const { port } = taken.address() as AddressInfo;
    try {
      const { code, stderr } = await runToExit(["--listen", `127.0.0.1:${port}`, "--admin-listen", "off", "--data-dir", tempDir()]);
      expect(code).toBe(1);
      expect(stderr).toBe(`relay: cannot listen on 127.0.0.1:${port}: address already in use\n`);
      // The admin listener's port is named when it is the one taken.
      const admin = await runToExit(["--listen", `127.0.0.1:${await freePort()}`, "--admin-listen", `127.0.0.1:${port}`, "--data-dir", tempDir()]);
      expect(admin.code).toBe(1);
      expect(admin.stderr).toBe(`relay: cannot listen on 127.0.0.1:${port}: address already in use\n`);
      // It failed before the relay took its port or said it serves.
      expect(admin.stdout).not.toContain("relay listening");
      expect(admin.stdout).not.toContain("serving");
    } finally {
      taken.close();
    }
  });

  it("should print help listing every flag with its env var", async () => {
    const { code, stdout } = await runToExit(["--help"]);
    expect(code).toBe(0);
    for (const spec of Object.values(relayOptions)) {
      expect(stdout).toContain(`--${spec.flag} `);
      expect(stdout).toContain(`env ${spec.env}`);
    }
  });

  it("should name the file when --tls-cert and --tls-key are swapped", async () => {
    const dir = tempDir();
    const { certificatePem, privateKeyPem } = await createSelfSignedCertificate({ commonName: "relay", dnsNames: ["localhost"], keyType: "ecdsa-p256" });
    writeFileSync(join(dir, "cert.pem"), certificatePem);
    writeFileSync(join(dir, "key.pem"), privateKeyPem);
    const { code, stderr } = await runToExit(["--listen", `127.0.0.1:${await freePort()}`, "--tls-cert", join(dir, "key.pem"), "--tls-key", join(dir, "cert.pem"), "--data-dir", dir]);
    expect(code).toBe(1);
    expect(stderr).toBe(`relay: --tls-cert ${join(dir, "key.pem")}: not a PEM certificate (it holds a private key: are --tls-cert and --tls-key swapped?)\n`);
  });

  it("should refuse a --tls-key that is not the key of --tls-cert", async () => {
    const dir = tempDir();
    const one = await createSelfSignedCertificate({ commonName: "relay", keyType: "ecdsa-p256" });
    const other = await createSelfSignedCertificate({ commonName: "relay", keyType: "ecdsa-p256" });
    writeFileSync(join(dir, "cert.pem"), one.certificatePem);
    writeFileSync(join(dir, "key.pem"), other.privateKeyPem);
    const { code, stderr } = await runToExit(["--listen", `127.0.0.1:${await freePort()}`, "--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem"), "--data-dir", dir]);
    expect(code).toBe(1);
    expect(stderr).toBe(`relay: --tls-key ${join(dir, "key.pem")} is not the private key of --tls-cert ${join(dir, "cert.pem")}\n`);
  });
});

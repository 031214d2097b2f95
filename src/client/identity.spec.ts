import { mkdtemp, rm, stat, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSelfSignedCertificate } from "../shared/self-signed-certificate.js";
import { IdentityError } from "./errors.js";
import { certificateFileName, loadOrCreateIdentity, privateKeyFileName } from "./identity.js";

describe("loadOrCreateIdentity", () => {
  let directory: string;
  beforeEach(async () => {
    directory = join(await mkdtemp(join(tmpdir(), "relay-identity-")), "identity");
  });
  afterEach(async () => {
    await rm(join(directory, ".."), { recursive: true, force: true });
  });

  it("should create an Ed25519 identity with the email in CN and SAN, key 0600", async () => {
    const identity = await loadOrCreateIdentity({ directory, email: "Alice@Example.com" });
    expect(identity.email).toBe("alice@example.com");
    expect(identity.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const { X509Certificate } = await import("node:crypto");
    const certificate = new X509Certificate(identity.certificatePem);
    expect(certificate.subject).toContain("CN=alice@example.com");
    expect(certificate.subjectAltName).toContain("email:alice@example.com");
    expect(certificate.publicKey.asymmetricKeyType).toBe("ed25519");
    expect((await stat(join(directory, privateKeyFileName))).mode & 0o777).toBe(0o600);
  });

  it("should load the same identity on a later run, with or without the email", async () => {
    const first = await loadOrCreateIdentity({ directory, email: "alice@example.com" });
    expect(await loadOrCreateIdentity({ directory, email: "ALICE@example.com" })).toEqual(first);
    expect(await loadOrCreateIdentity({ directory })).toEqual(first);
  });

  it("should refuse a directory holding another email's certificate", async () => {
    await loadOrCreateIdentity({ directory, email: "alice@example.com" });
    await expect(loadOrCreateIdentity({ directory, email: "bob@example.com" })).rejects.toMatchObject({
      name: "IdentityError",
      problem: "email_mismatch",
      message: expect.stringContaining("belongs to alice@example.com"),
    });
  });

  it("should refuse a key that is not the certificate's", async () => {
    await loadOrCreateIdentity({ directory, email: "alice@example.com" });
    const other = await createSelfSignedCertificate({ commonName: "alice@example.com", emails: ["alice@example.com"] });
    await writeFile(join(directory, privateKeyFileName), other.privateKeyPem);
    await expect(loadOrCreateIdentity({ directory })).rejects.toMatchObject({ problem: "key_mismatch" });
  });

  it("should refuse to create an identity without an email", async () => {
    const error = await loadOrCreateIdentity({ directory }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IdentityError);
    expect(error).toMatchObject({ problem: "missing_email" });
  });

  it("should refuse an incomplete directory instead of overwriting it", async () => {
    await loadOrCreateIdentity({ directory, email: "alice@example.com" });
    const certificate = await readFile(join(directory, certificateFileName), "utf8");
    await rm(join(directory, privateKeyFileName));
    await expect(loadOrCreateIdentity({ directory, email: "alice@example.com" })).rejects.toMatchObject({ problem: "corrupt" });
    expect(await readFile(join(directory, certificateFileName), "utf8")).toBe(certificate);
  });
});

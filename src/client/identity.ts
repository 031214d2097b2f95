import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createSelfSignedCertificate } from "../shared/self-signed-certificate.js";
import { fingerprintOf } from "../shared/fingerprint.js";
import { IdentityError } from "./errors.js";

/** File names inside an identity directory. */
export const certificateFileName = "certificate.pem";
export const privateKeyFileName = "private-key.pem";

/** A peer's identity: the certificate it presents on mutual TLS and registers with the relay. */
export interface PeerIdentity {
  /** Lower-cased email from the certificate's CN / SAN. */
  email: string;
  certificatePem: string;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
  /** Hex SHA-256 of the certificate's DER: the relay's client_id for this peer. */
  fingerprint: string;
  /** Where the identity is stored. */
  directory: string;
}

/** Options of {@link loadOrCreateIdentity}. */
export interface IdentityOptions {
  /** Directory holding certificate.pem and private-key.pem (created with mode 0700). */
  directory: string;
  /**
   * The peer's email. Required to create an identity; when the directory already holds one,
   * it must name this email (compared case-insensitively). Default: whatever the directory holds.
   */
  email?: string;
}

/**
 * Loads the identity in `directory`, or creates one on first use: an Ed25519 key (small,
 * fast, and what every TLS stack the peers use accepts) and a self-signed certificate with CN and SAN email = `email`. The key file is
 * written with mode 0600 so other local users cannot impersonate the peer.
 *
 * Throws {@link IdentityError} when the directory holds a certificate for another email, a key
 * that does not match the certificate, or only one of the two files.
 */
export async function loadOrCreateIdentity(options: IdentityOptions): Promise<PeerIdentity> {
  const { directory } = options;
  const wanted = options.email?.trim().toLowerCase();
  const [certificatePem, privateKeyPem] = await Promise.all([
    readOptional(join(directory, certificateFileName)),
    readOptional(join(directory, privateKeyFileName)),
  ]);
  if (certificatePem === undefined && privateKeyPem === undefined) {
    if (!wanted) {
      throw new IdentityError("missing_email", `no identity in ${directory}: give an email to create one`);
    }
    return createIdentity(directory, wanted);
  }
  if (certificatePem === undefined || privateKeyPem === undefined) {
    const missing = certificatePem === undefined ? certificateFileName : privateKeyFileName;
    throw new IdentityError("corrupt", `identity in ${directory} is incomplete: ${missing} is missing`);
  }
  const identity = parseIdentity(directory, certificatePem, privateKeyPem);
  if (wanted && identity.email !== wanted) {
    throw new IdentityError(
      "email_mismatch",
      `identity in ${directory} belongs to ${identity.email}, not ${wanted}: use another --identity directory`,
    );
  }
  return identity;
}

async function createIdentity(directory: string, email: string): Promise<PeerIdentity> {
  const { certificatePem, privateKeyPem } = await createSelfSignedCertificate({ commonName: email, emails: [email], keyType: "ed25519" });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  // "wx": never overwrite an identity another process created meanwhile; the key is written
  // first and with 0600 from the start, so it is never readable by others, even briefly.
  const keyPath = join(directory, privateKeyFileName);
  await writeFile(keyPath, privateKeyPem, { mode: 0o600, flag: "wx" });
  await chmod(keyPath, 0o600); // the umask may have narrowed it further, never widened; be exact
  await writeFile(join(directory, certificateFileName), certificatePem, { mode: 0o644, flag: "wx" });
  return parseIdentity(directory, certificatePem, privateKeyPem);
}

/** Checks that the pair is usable and names one email; exported for tests and tools. */
export function parseIdentity(directory: string, certificatePem: string, privateKeyPem: string): PeerIdentity {
  let certificate: X509Certificate;
  let key: ReturnType<typeof createPrivateKey>;
  try {
    certificate = new X509Certificate(certificatePem);
    key = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new IdentityError("corrupt", `identity in ${directory} does not parse`, { cause: error });
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new IdentityError("key_mismatch", `${privateKeyFileName} in ${directory} is not the key of ${certificateFileName}`);
  }
  const email = emailOf(certificate);
  if (!email) {
    throw new IdentityError("corrupt", `certificate in ${directory} names no email in its CN or SAN`);
  }
  return { email, certificatePem, privateKeyPem, fingerprint: fingerprintOf(certificate), directory };
}

/** The SAN rfc822Name if any, else a CN that looks like an email; lower-cased. */
export function emailOf(certificate: X509Certificate): string | undefined {
  const san = certificate.subjectAltName
    ?.split(", ")
    .find((name) => name.startsWith("email:"))
    ?.slice("email:".length);
  const commonName = certificate.subject
    .split("\n")
    .find((part) => part.startsWith("CN="))
    ?.slice("CN=".length);
  const email = san ?? (commonName?.includes("@") ? commonName : undefined);
  return email?.toLowerCase();
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new IdentityError("corrupt", `cannot read ${path}`, { cause: error });
  }
}

import { createHash, X509Certificate } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Rules for peer certificates. node:crypto's X509Certificate parses every key type peers use
 * (Ed25519, ECDSA, RSA). node-forge's `pki` is not on this path: it rejects Ed25519 certificates
 * ("OID is not RSA"), and Ed25519 is what peers generate.
 */

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

const pemBlock = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----/g;

/** Parses a PEM holding exactly one certificate; throws InvalidArgument when it is not one. */
export function parseCertificatePem(pem: string, maxBytes: number): X509Certificate {
  if (pem.length === 0) throw invalid("certificate_pem is required");
  if (Buffer.byteLength(pem) > maxBytes) throw invalid(`certificate_pem is larger than ${maxBytes} bytes`);
  const blocks = pem.match(pemBlock) ?? [];
  if (blocks.length !== 1) {
    throw invalid(blocks.length === 0 ? "certificate_pem is not a PEM certificate (expected one -----BEGIN CERTIFICATE----- block)" : "certificate_pem must hold exactly one certificate");
  }
  try {
    const certificate = new X509Certificate(blocks[0]!);
    // X509Certificate parses the key lazily: a certificate whose key bytes are corrupt parses,
    // then throws a plain Error from publicKey (found by request-properties.spec.ts).
    void certificate.publicKey;
    return certificate;
  } catch {
    throw invalid("certificate_pem is not a valid X.509 certificate");
  }
}

/**
 * Checks that a PEM submitted in Register is the certificate whose fingerprint is given (the one
 * the connection presented, already parsed and checked when it connected) and returns it as the
 * relay stores it. Comparing the SHA-256 of the PEM's DER costs a few µs, where parsing it again
 * cost about 250 µs, the largest cost of onboarding a peer after TLS itself (bench/scale.ts). A
 * PEM that is not that certificate is parsed, to tell a malformed PEM (invalid_argument) from
 * another certificate (permission_denied).
 */
export function submittedCertificatePem(pem: string, fingerprint: string, maxBytes: number): string {
  if (pem.length === 0) throw invalid("certificate_pem is required");
  if (Buffer.byteLength(pem) > maxBytes) throw invalid(`certificate_pem is larger than ${maxBytes} bytes`);
  const blocks = pem.match(pemBlock) ?? [];
  if (blocks.length === 1) {
    const der = Buffer.from(blocks[0]!.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
    if (createHash("sha256").update(der).digest("hex") === fingerprint) return pemOf(der);
  }
  parseCertificatePem(pem, maxBytes);
  throw new ConnectError("certificate_pem is not the certificate this connection presented: register the certificate you connect with", Code.PermissionDenied);
}

/** DER as PEM, in the layout of X509Certificate.toString(): base64 in lines of 64. */
function pemOf(der: Buffer): string {
  const base64 = der.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < base64.length; i += 64) lines.push(base64.slice(i, i + 64));
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/**
 * Which key types are accepted: Ed25519 (what peers generate), ECDSA on P-256/P-384/P-521,
 * RSA of at least 2048 bits. Returns a reason when the key is not acceptable.
 */
export function unsupportedKeyReason(certificate: X509Certificate): string | undefined {
  const key = certificate.publicKey;
  switch (key.asymmetricKeyType) {
    case "ed25519":
      return undefined;
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === "prime256v1" || curve === "secp384r1" || curve === "secp521r1" ? undefined : `ECDSA curve ${curve ?? "unknown"} is not supported: use P-256 or P-384`;
    }
    case "rsa": {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      return bits >= 2048 ? undefined : `RSA key of ${bits} bits is too small: use at least 2048`;
    }
    default:
      return `key type ${key.asymmetricKeyType ?? "unknown"} is not supported: use Ed25519, ECDSA P-256/P-384 or RSA >= 2048`;
  }
}

/**
 * What the relay checks of a certificate, read once: `certificate.publicKey` builds a new key
 * object and validFrom/validTo are strings, so a connection's facts are computed when its
 * certificate is first parsed (peer-identity.ts) and reused by every call on it.
 */
export interface CertificateFacts {
  /** Why the key is not acceptable; undefined when it is. */
  keyProblem: string | undefined;
  validFrom: Date;
  validTo: Date;
  /** See {@link certificateEmails}. */
  emails: string[];
}

export function certificateFacts(certificate: X509Certificate): CertificateFacts {
  return { keyProblem: unsupportedKeyReason(certificate), validFrom: new Date(certificate.validFrom), validTo: new Date(certificate.validTo), emails: certificateEmails(certificate) };
}

/** Checks the key type and that now lies within the validity period. */
export function checkUsable(facts: CertificateFacts, now: Date): void {
  if (facts.keyProblem !== undefined) throw invalid(`client certificate: ${facts.keyProblem}`);
  if (now < facts.validFrom) throw invalid(`client certificate is not valid before ${facts.validFrom.toISOString()}`);
  if (now > facts.validTo) throw invalid(`client certificate expired at ${facts.validTo.toISOString()}`);
}

/** {@link checkUsable} for a certificate parsed on the spot. */
export function checkCertificateUsable(certificate: X509Certificate, now: Date): void {
  checkUsable(certificateFacts(certificate), now);
}

/**
 * Emails a certificate names: its subject CN when that is an email, and its SAN rfc822Names,
 * lower-cased.
 */
export function certificateEmails(certificate: X509Certificate): string[] {
  const emails = new Set<string>();
  for (const line of certificate.subject.split("\n")) {
    if (line.startsWith("CN=") && line.includes("@")) emails.add(line.slice(3).toLowerCase());
  }
  // Node renders SAN as "email:a@b, DNS:x"; a value containing ", " is quoted, and such a value
  // is not an email we accept anyway.
  for (const entry of (certificate.subjectAltName ?? "").split(", ")) {
    if (entry.startsWith("email:")) emails.add(entry.slice(6).toLowerCase());
  }
  return [...emails];
}

/**
 * The certificate must name email, and name no other: a certificate whose CN and SAN disagree
 * is ambiguous about whose it is, so it is refused. emails as from {@link certificateEmails}.
 */
export function checkEmail(emails: readonly string[], email: string): void {
  if (emails.length === 0) throw invalid("certificate names no email: put the email in the subject CN or a SAN email entry");
  if (!emails.includes(email)) throw invalid(`email ${email} does not match the certificate's CN/SAN (${emails.join(", ")})`);
  if (emails.length > 1) throw invalid(`certificate names several emails (${emails.join(", ")}): its CN and SAN must agree`);
}

/** {@link checkEmail} for a certificate parsed on the spot. */
export function checkCertificateEmail(certificate: X509Certificate, email: string): void {
  checkEmail(certificateEmails(certificate), email);
}

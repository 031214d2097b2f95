import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import ipaddr from "ipaddr.js";
import { fingerprintOf } from "../../shared/fingerprint.js";

/** The relay's TLS certificate, and where it came from. */
export interface ServerCertificate {
  certificatePem: string;
  privateKeyPem: string;
  /** File peers pass as --relay-ca (the certificate itself: it is self-signed). */
  certificatePath: string;
  fingerprint: string;
  generated: boolean;
  /** Host names (DNS names and IP addresses) the certificate is valid for, when generated here. */
  names?: string[];
  /** When a certificate generated earlier was replaced because the wanted names changed: its names. */
  replacedNames?: string[];
}

/** What the generated certificate is made from. */
export interface RelayCertificateOptions {
  /** --tls-cert and --tls-key; empty: generate one. */
  tlsCert: string;
  tlsKey: string;
  /** Where the generated certificate and key live. */
  dataDir: string;
  /** Its host becomes a name of the generated certificate when it is a specific one. */
  listen: { host: string };
  /** More names for the generated certificate (--tls-hostname): DNS names and IP addresses. */
  tlsHostnames?: readonly string[];
}

/**
 * Loads the configured certificate, or the one generated earlier in dataDir, or generates one
 * there: ECDSA P-256 (accepted by every TLS stack peers use: Node, Go, Python's BoringSSL),
 * valid for localhost, 127.0.0.1, ::1, the listen host and every --tls-hostname. A certificate
 * generated earlier for another set of names is replaced (its fingerprint changes, so peers that
 * pin it need the new one); replacedNames says so.
 */
export async function loadServerCertificate(options: RelayCertificateOptions): Promise<ServerCertificate> {
  if (options.tlsCert !== "") return loadGivenCertificate(options.tlsCert, options.tlsKey);
  const certificatePath = join(options.dataDir, "relay-cert.pem");
  const keyPath = join(options.dataDir, "relay-key.pem");
  const wanted = wantedNames(options.listen.host, options.tlsHostnames ?? []);
  let replacedNames: string[] | undefined;
  try {
    const [certificatePem, privateKeyPem] = await Promise.all([readFile(certificatePath, "utf8"), readFile(keyPath, "utf8")]);
    const certificate = new X509Certificate(certificatePem);
    const names = namesOf(certificate);
    if (sameNames(names, wanted)) return { certificatePem, privateKeyPem, certificatePath, fingerprint: fingerprintOf(certificate), generated: false, names };
    replacedNames = names;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  // Loaded only to generate: the X.509 writer and its ASN.1 stack add a tenth of a second to
  // every start, and a relay generates its certificate once.
  const { createSelfSignedCertificate } = await import("../../shared/self-signed-certificate.js");
  const generated = await createSelfSignedCertificate({ commonName: "relay", dnsNames: wanted.filter((name) => isIP(name) === 0), ipAddresses: wanted.filter((name) => isIP(name) !== 0), keyType: "ecdsa-p256" });
  await mkdir(options.dataDir, { recursive: true });
  await writeFile(keyPath, generated.privateKeyPem, { mode: 0o600 });
  await writeFile(certificatePath, generated.certificatePem);
  return { ...generated, certificatePath, fingerprint: fingerprintOf(new X509Certificate(generated.certificatePem)), generated: true, names: wanted, replacedNames };
}

/** The names a generated certificate carries: loopback, the listen host when specific, the extra names; canonical, sorted, once each. */
export function wantedNames(listenHost: string, extra: readonly string[]): string[] {
  const wildcard = new Set(["0.0.0.0", "::", ""]);
  const names = ["localhost", "127.0.0.1", "::1", ...(wildcard.has(listenHost) ? [] : [listenHost]), ...extra].map(canonicalName);
  return [...new Set(names)].sort();
}

/** A DNS name lower-cased, an IP address in its canonical text ("::1", not "0:0:0:0:0:0:0:1"). */
function canonicalName(name: string): string {
  const trimmed = name.replace(/^\[|\]$/g, "");
  return isIP(trimmed) === 0 ? trimmed.toLowerCase() : ipaddr.parse(trimmed).toString();
}

/** DNS and IP names of a certificate's subjectAltName, canonical and sorted. */
function namesOf(certificate: X509Certificate): string[] {
  const names = (certificate.subjectAltName ?? "")
    .split(", ")
    .map((entry) => /^(?:DNS|IP Address):(.+)$/.exec(entry)?.[1])
    .filter((name): name is string => name !== undefined)
    .map(canonicalName);
  return [...new Set(names)].sort();
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i]);
}

/** A relay certificate or key file that cannot be used, named in the message. */
export class RelayCertificateError extends Error {
  override readonly name = "RelayCertificateError";
}

/** Reads --tls-cert and --tls-key, checking each is what its flag says and that they match. */
async function loadGivenCertificate(certificatePath: string, keyPath: string): Promise<ServerCertificate> {
  const read = (flag: string, path: string) =>
    readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new RelayCertificateError(`--${flag} ${path}: cannot read it (${error.code ?? error.message})`);
    });
  const [certificatePem, privateKeyPem] = await Promise.all([read("tls-cert", certificatePath), read("tls-key", keyPath)]);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
  } catch {
    const hint = /PRIVATE KEY-----/.test(certificatePem) ? " (it holds a private key: are --tls-cert and --tls-key swapped?)" : "";
    throw new RelayCertificateError(`--tls-cert ${certificatePath}: not a PEM certificate${hint}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch {
    const hint = /CERTIFICATE-----/.test(privateKeyPem) ? " (it holds a certificate: are --tls-cert and --tls-key swapped?)" : "";
    throw new RelayCertificateError(`--tls-key ${keyPath}: not a PEM private key${hint}`);
  }
  if (!certificate.checkPrivateKey(key)) throw new RelayCertificateError(`--tls-key ${keyPath} is not the private key of --tls-cert ${certificatePath}`);
  return { certificatePem, privateKeyPem, certificatePath, fingerprint: fingerprintOf(certificate), generated: false };
}

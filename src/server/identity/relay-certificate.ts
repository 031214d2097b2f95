import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { createSelfSignedCertificate } from "../../shared/self-signed-certificate.js";
import { fingerprintOf } from "../../shared/fingerprint.js";

/** The relay's TLS certificate, and where it came from. */
export interface ServerCertificate {
  certificatePem: string;
  privateKeyPem: string;
  /** File peers pass as --relay-ca (the certificate itself: it is self-signed). */
  certificatePath: string;
  fingerprint: string;
  generated: boolean;
}

/**
 * Loads the configured certificate, or the one generated earlier in dataDir, or generates one
 * there: ECDSA P-256 (accepted by every TLS stack peers use: Node, Go, Python's BoringSSL),
 * valid for localhost, 127.0.0.1, ::1 and the listen host.
 */
export async function loadServerCertificate(options: { tlsCert: string; tlsKey: string; dataDir: string; listen: { host: string } }): Promise<ServerCertificate> {
  if (options.tlsCert !== "") return loadGivenCertificate(options.tlsCert, options.tlsKey);
  const certificatePath = join(options.dataDir, "relay-cert.pem");
  const keyPath = join(options.dataDir, "relay-key.pem");
  try {
    const [certificatePem, privateKeyPem] = await Promise.all([readFile(certificatePath, "utf8"), readFile(keyPath, "utf8")]);
    return { certificatePem, privateKeyPem, certificatePath, fingerprint: fingerprintOf(new X509Certificate(certificatePem)), generated: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const host = options.listen.host;
  const ipAddresses = ["127.0.0.1", "::1", ...(isIP(host) && host !== "127.0.0.1" && host !== "::1" && host !== "0.0.0.0" && host !== "::" ? [host] : [])];
  const dnsNames = ["localhost", ...(isIP(host) === 0 && host !== "localhost" ? [host] : [])];
  const generated = await createSelfSignedCertificate({ commonName: "relay", dnsNames, ipAddresses, keyType: "ecdsa-p256" });
  await mkdir(options.dataDir, { recursive: true });
  await writeFile(keyPath, generated.privateKeyPem, { mode: 0o600 });
  await writeFile(certificatePath, generated.certificatePem);
  return { ...generated, certificatePath, fingerprint: fingerprintOf(new X509Certificate(generated.certificatePem)), generated: true };
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

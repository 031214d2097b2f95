import { X509Certificate } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { createSelfSignedCertificate, fingerprintOf } from "../shared/self-signed-certificate.js";

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
export async function loadServerCertificate(options: { tlsCert: string; tlsKey: string; dataDir: string; listenHost: string }): Promise<ServerCertificate> {
  if (options.tlsCert !== "") {
    const [certificatePem, privateKeyPem] = await Promise.all([readFile(options.tlsCert, "utf8"), readFile(options.tlsKey, "utf8")]);
    return { certificatePem, privateKeyPem, certificatePath: options.tlsCert, fingerprint: fingerprintOf(new X509Certificate(certificatePem)), generated: false };
  }
  const certificatePath = join(options.dataDir, "relay-cert.pem");
  const keyPath = join(options.dataDir, "relay-key.pem");
  try {
    const [certificatePem, privateKeyPem] = await Promise.all([readFile(certificatePath, "utf8"), readFile(keyPath, "utf8")]);
    return { certificatePem, privateKeyPem, certificatePath, fingerprint: fingerprintOf(new X509Certificate(certificatePem)), generated: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const host = options.listenHost;
  const ipAddresses = ["127.0.0.1", "::1", ...(isIP(host) && host !== "127.0.0.1" && host !== "::1" && host !== "0.0.0.0" && host !== "::" ? [host] : [])];
  const dnsNames = ["localhost", ...(isIP(host) === 0 && host !== "localhost" ? [host] : [])];
  const generated = await createSelfSignedCertificate({ commonName: "relay", dnsNames, ipAddresses, keyType: "ecdsa-p256" });
  await mkdir(options.dataDir, { recursive: true });
  await writeFile(keyPath, generated.privateKeyPem, { mode: 0o600 });
  await writeFile(certificatePath, generated.certificatePem);
  return { ...generated, certificatePath, fingerprint: fingerprintOf(new X509Certificate(generated.certificatePem)), generated: true };
}

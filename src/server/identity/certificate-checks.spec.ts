import { createHash, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createSelfSignedCertificate, type KeyType } from "../../shared/self-signed-certificate.js";
import { certificateEmails, checkCertificateEmail, checkCertificateUsable, parseCertificatePem, submittedCertificatePem, unsupportedKeyReason } from "./certificate-checks.js";
import { failureOfSync, outcomeOfSync } from "../../../test/support/codes.js";


async function certificate(options: Parameters<typeof createSelfSignedCertificate>[0]): Promise<X509Certificate> {
  return new X509Certificate((await createSelfSignedCertificate(options)).certificatePem);
}

describe("parseCertificatePem", () => {
  let pem: string;
  beforeAll(async () => {
    pem = (await createSelfSignedCertificate({ commonName: "a@example.com" })).certificatePem;
  });
  it("should parse one PEM certificate", () => expect(parseCertificatePem(pem, 16_384).subject).toBe("CN=a@example.com"));
  it("should accept CRLF line ends", () => expect(parseCertificatePem(pem.replaceAll("\n", "\r\n"), 16_384).subject).toBe("CN=a@example.com"));
  it.each([
    ["empty", () => ""],
    ["text", () => "hello"],
    ["a private key", () => "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ["garbage inside the armour", () => "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
    ["two certificates", () => pem + pem],
    ["over the size bound", () => pem + " ".repeat(20_000)],
  ])("should refuse %s with invalid_argument", (_, make) => {
    expect(outcomeOfSync(() => parseCertificatePem(make(), 16_384))).toBe(Code.InvalidArgument);
  });
});

describe("certificate emails", () => {
  it.each([
    ["CN only", { commonName: "A@Example.com" }, ["a@example.com"]],
    ["SAN only", { commonName: "peer", emails: ["b@example.com"] }, ["b@example.com"]],
    ["CN and SAN agreeing", { commonName: "c@example.com", emails: ["C@example.com"] }, ["c@example.com"]],
    ["CN and SAN disagreeing", { commonName: "d@example.com", emails: ["e@example.com"] }, ["d@example.com", "e@example.com"]],
    ["no email", { commonName: "relay", dnsNames: ["localhost"] }, []],
  ])("should read %s", async (_, options, expected) => {
    expect(certificateEmails(await certificate(options))).toEqual(expected);
  });

  it("should accept a certificate naming exactly the email", async () => {
    const cert = await certificate({ commonName: "f@example.com", emails: ["f@example.com"] });
    expect(outcomeOfSync(() => checkCertificateEmail(cert, "f@example.com"))).toBe("ok");
  });
  it.each([
    ["another email", { commonName: "g@example.com" }, "h@example.com"],
    ["no email at all", { commonName: "relay" }, "g@example.com"],
    ["CN and SAN disagreeing", { commonName: "g@example.com", emails: ["i@example.com"] }, "g@example.com"],
  ])("should refuse a certificate naming %s", async (_, options, email) => {
    const cert = await certificate(options);
    expect(outcomeOfSync(() => checkCertificateEmail(cert, email))).toBe(Code.InvalidArgument);
  });
});

describe("key types and validity", () => {
  it.each(["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048"] as KeyType[])("should accept %s", async (keyType) => {
    expect(unsupportedKeyReason(await certificate({ commonName: "k@example.com", keyType }))).toBeUndefined();
  });

  // Keys relay's own generator will not make (RSA 1024, secp256k1, Ed448) are made by openssl,
  // an outside tool, in test/certificate-weak-keys.test.ts.

  it("should refuse a certificate outside its validity period, at both ends", async () => {
    const cert = await certificate({ commonName: "v@example.com", notBefore: new Date("2030-01-01T00:00:00Z"), notAfter: new Date("2031-01-01T00:00:00Z") });
    expect(outcomeOfSync(() => checkCertificateUsable(cert, new Date("2029-12-31T23:59:00Z")))).toBe(Code.InvalidArgument);
    expect(outcomeOfSync(() => checkCertificateUsable(cert, new Date("2030-06-01T00:00:00Z")))).toBe("ok");
    expect(outcomeOfSync(() => checkCertificateUsable(cert, new Date("2031-01-01T00:01:00Z")))).toBe(Code.InvalidArgument);
  });
});

describe("submittedCertificatePem", () => {
  let pem: string;
  let fingerprint: string;
  let other: string;
  beforeAll(async () => {
    pem = (await createSelfSignedCertificate({ commonName: "s@example.com" })).certificatePem;
    fingerprint = createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
    other = (await createSelfSignedCertificate({ commonName: "s@example.com" })).certificatePem;
  });

  it("should answer the connection's certificate as the relay stores it: lines of 64, LF", () => {
    const stored = submittedCertificatePem(pem.replaceAll("\n", "\r\n"), fingerprint, 16_384);
    expect(stored).toBe(new X509Certificate(pem).toString());
    expect(stored.split("\n").slice(1, -3).every((line) => line.length === 64)).toBe(true);
  });

  it.each([
    ["empty", () => "", { code: Code.InvalidArgument, message: "certificate_pem is required" }],
    ["over the size bound", () => pem + " ".repeat(20_000), { code: Code.InvalidArgument, message: "certificate_pem is larger than 16384 bytes" }],
    ["not PEM", () => "hello", { code: Code.InvalidArgument, message: "certificate_pem is not a PEM certificate (expected one -----BEGIN CERTIFICATE----- block)" }],
    ["two certificates, the first the connection's", () => pem + other, { code: Code.InvalidArgument, message: "certificate_pem must hold exactly one certificate" }],
    ["garbage inside the armour", () => "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", { code: Code.InvalidArgument, message: "certificate_pem is not a valid X.509 certificate" }],
    ["another certificate", () => other, { code: Code.PermissionDenied, message: "certificate_pem is not the certificate this connection presented: register the certificate you connect with" }],
  ])("should refuse %s", (_, make, expected) => {
    expect(failureOfSync(() => submittedCertificatePem(make(), fingerprint, 16_384))).toEqual(expected);
  });
});

describe("refusal messages of certificate checks", () => {
  it("should name the validity bound a certificate is outside", async () => {
    const cert = await certificate({ commonName: "v@example.com" });
    const from = new Date(cert.validFrom);
    const to = new Date(cert.validTo);
    expect(failureOfSync(() => checkCertificateUsable(cert, new Date(from.getTime() - 1000)))).toEqual({ code: Code.InvalidArgument, message: `client certificate is not valid before ${from.toISOString()}` });
    expect(failureOfSync(() => checkCertificateUsable(cert, new Date(to.getTime() + 1000)))).toEqual({ code: Code.InvalidArgument, message: `client certificate expired at ${to.toISOString()}` });
    expect(failureOfSync(() => checkCertificateUsable(cert, from))).toBe("ok");
    expect(failureOfSync(() => checkCertificateUsable(cert, to))).toBe("ok");
  });

  it.each([
    ["no email", { commonName: "relay" }, "g@example.com", "certificate names no email: put the email in the subject CN or a SAN email entry"],
    ["another email", { commonName: "g@example.com" }, "h@example.com", "email h@example.com does not match the certificate's CN/SAN (g@example.com)"],
    ["two emails", { commonName: "g@example.com", emails: ["i@example.com"] }, "g@example.com", "certificate names several emails (g@example.com, i@example.com): its CN and SAN must agree"],
  ])("should say why a certificate naming %s is refused", async (_, options, email, message) => {
    const cert = await certificate(options);
    expect(failureOfSync(() => checkCertificateEmail(cert, email))).toEqual({ code: Code.InvalidArgument, message });
  });

  it.each([
    ["not PEM", "hello", "certificate_pem is not a PEM certificate (expected one -----BEGIN CERTIFICATE----- block)"],
    ["garbage inside the armour", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate_pem is not a valid X.509 certificate"],
  ])("should say why a PEM that is %s does not parse", (_, text, message) => {
    expect(failureOfSync(() => parseCertificatePem(text, 16_384))).toEqual({ code: Code.InvalidArgument, message });
  });
});

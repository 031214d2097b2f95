import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { checkCertificateUsable, unsupportedKeyReason } from "../src/server/identity/certificate-checks.js";
import { outcomeOfSync } from "./support/codes.js";

// Certificates with keys relay's own generator will not make, made by openssl: the relay must
// refuse them with a reason a person can act on.
describe("certificate checks on keys made elsewhere", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "relay-weak-keys-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it.each([
    ["RSA 1024", ["-newkey", "rsa:1024"], /too small/],
    ["ECDSA secp256k1", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"], /curve/],
    ["Ed448", ["-newkey", "ed448"], /not supported/],
  ])("should refuse %s", (name, keyArgs, reason) => {
    const out = join(dir, `${name.replace(/\W/g, "")}.pem`);
    execFileSync("openssl", ["req", "-x509", "-nodes", ...keyArgs, "-keyout", join(dir, "key.pem"), "-out", out, "-subj", "/CN=weak@example.com", "-days", "1"], { stdio: "ignore" });
    const cert = new X509Certificate(readFileSync(out));
    expect(unsupportedKeyReason(cert)).toMatch(reason);
    expect(outcomeOfSync(() => checkCertificateUsable(cert, new Date()))).toBe(Code.InvalidArgument);
  });
});

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = process.cwd();

interface PackageJson {
  name: string;
  version: string;
  license: string;
  bin: Record<string, string>;
  engines: Record<string, string>;
  dependencies: Record<string, string>;
  exports: Record<string, { types: string; default: string }>;
}

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
}

interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; a non-zero exit is a result, not an exception. */
async function finish(file: string, args: string[], cwd: string): Promise<Finished> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : 1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

// The package as a user gets it: `npm pack`, then the tarball installed into an empty folder, then
// the bins and an import from plain JavaScript. Only compiled files run here: no tsx, no
// TypeScript sources in the tarball.
//
// The tarball packs the dist/ that the integration tier's global setup built from src/ before any
// test ran (`npm run build`, which removes from dist/ whatever no source makes any more), so pack
// runs without its prepack script: prepack would build dist/ again from scratch, under the other
// test files that run the bins on it at the same time. The test checks that dist/ in the tarball
// is exactly the compiled form of src/.
//
// The install is `npm ci --offline` against a lockfile made from this repository's own (its
// production entries, plus the tarball): the same dependency versions the repository is tested
// with, taken from npm's cache, which the repository's `npm ci` filled. So the test sends
// nothing over the network.
describe("the npm package", () => {
  let directory: string;
  let app: string;
  let files: string[];
  let manifest: PackageJson;

  beforeAll(async () => {
    manifest = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as PackageJson;
    directory = await mkdtemp(join(tmpdir(), "relay-package-"));
    const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", directory], { cwd: root, timeout: 120_000 });
    const report = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = report[0]!.files.map((file) => file.path);
    const tarball = join(directory, report[0]!.filename);

    app = join(directory, "app");
    await run("mkdir", [app]);
    const spec = `file:${tarball}`;
    const integrity = "sha512-" + createHash("sha512").update(await readFile(tarball)).digest("base64");
    const repositoryLock = JSON.parse(await readFile(join(root, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
    const production = Object.entries(repositoryLock.packages).filter(([path, entry]) => path !== "" && !entry.dev && !entry.devOptional);
    const packages = {
      "": { name: "app", dependencies: { [manifest.name]: spec } },
      [`node_modules/${manifest.name}`]: { version: manifest.version, resolved: spec, integrity, license: manifest.license, dependencies: manifest.dependencies, bin: manifest.bin, engines: manifest.engines },
      ...Object.fromEntries(production),
    };
    await writeFile(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module", dependencies: { [manifest.name]: spec } }));
    await writeFile(join(app, "package-lock.json"), JSON.stringify({ name: "app", lockfileVersion: 3, requires: true, packages }));
    const installed = await finish("npm", ["ci", "--offline", "--no-audit", "--no-fund"], app);
    if (installed.code !== 0) throw new Error(`npm ci --offline of the tarball failed (run \`npm ci\` in the repository once to fill npm's cache):\n${installed.stderr}`);
  });

  afterAll(async () => {
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it("should have a name and entry points that resolve to built JavaScript with declarations", () => {
    expect(manifest.name).not.toBe("relay"); // taken on the npm registry by another project
    expect(Object.keys(manifest.exports).sort()).toEqual([".", "./client", "./server"]);
    for (const target of Object.values(manifest.exports)) {
      expect(target.default).toMatch(/^\.\/dist\/.+\.js$/);
      expect(target.types).toMatch(/^\.\/dist\/.+\.d\.ts$/);
      expect(files).toContain(target.default.slice(2));
      expect(files).toContain(target.types.slice(2));
    }
  });

  it("should ship compiled files only: no TypeScript sources, specs or build state", () => {
    expect(files).toContain("dist/server/main.js");
    expect(files.filter((path) => path.endsWith(".ts") && !path.endsWith(".d.ts"))).toEqual([]);
    expect(files.filter((path) => path.includes(".spec.") || path.endsWith(".tsbuildinfo"))).toEqual([]);
    expect(files).toContain("LICENSE");
  });

  it("should ship exactly the compiled form of src/: a .js and a .d.ts for each module, and nothing a moved or deleted source left behind", () => {
    const build = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.build.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
    const modules = build.fileNames.map((file) => relative(join(root, "src"), file).split(sep).join("/").replace(/\.ts$/, ""));
    expect(modules).toContain("server/main");
    const compiled = files.filter((path) => path.startsWith("dist/") && (path.endsWith(".js") || path.endsWith(".d.ts")) && !path.startsWith("dist/client/house/public/"));
    expect(compiled.sort()).toEqual(modules.flatMap((module) => [`dist/${module}.d.ts`, `dist/${module}.js`]).sort());
  });

  it("should ship every file the modules read beside themselves (non-TypeScript files under src/)", async () => {
    const assets = (await readdir(join(root, "src"), { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile() && !entry.name.endsWith(".ts")).map((entry) => relative(join(root, "src"), join(entry.parentPath, entry.name)));
    expect(assets.length).toBeGreaterThan(0);
    for (const asset of assets) expect(files).toContain(`dist/${asset.split(sep).join("/")}`);
  });

  it("should ship the house's page beside its compiled server (the build copies it; tsc does not)", () => {
    expect(files).toEqual(expect.arrayContaining(["dist/client/house/public/index.html", "dist/client/house/public/house.js", "dist/client/house/public/house.css"]));
  });

  it("should answer relay --help from the installed bin", async () => {
    const result = await finish(join(app, "node_modules", ".bin", "relay"), ["--help"], app);
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(result.stdout).toMatch(/^usage: relay /);
    expect(result.stdout).toContain("--mongodb-uri");
  });

  it("should refuse a bad relay flag naming it, from the installed bin", async () => {
    const result = await finish(join(app, "node_modules", ".bin", "relay"), ["--broadcast-ttl", "-5"], app);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--broadcast-ttl");
  });

  it("should answer relay-peer --help from the installed bin", async () => {
    const result = await finish(join(app, "node_modules", ".bin", "relay-peer"), ["--help"], app);
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(result.stdout).toMatch(/^usage:\n/);
    expect(result.stdout).toContain("relay-peer online --port P");
  });

  it("should import the client library from plain JavaScript and make an identity with it", async () => {
    const script = join(app, "identity.mjs");
    const identityDirectory = join(directory, "alice");
    await writeFile(
      script,
      [
        `import { loadOrCreateIdentity, createRelayClient } from "${manifest.name}/client";`,
        `import { createRelayServer } from "${manifest.name}/server";`,
        `import * as main from "${manifest.name}";`,
        `const identity = await loadOrCreateIdentity({ directory: ${JSON.stringify(identityDirectory)}, email: "alice@example.com" });`,
        `console.log(JSON.stringify({ email: identity.email, fingerprint: identity.fingerprint, client: typeof createRelayClient, server: typeof createRelayServer, main: typeof main.createRelayClient }));`,
      ].join("\n"),
    );
    const result = await finish(process.execPath, [script], app);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ email: "alice@example.com", fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/), client: "function", server: "function", main: "function" });
    expect(existsSync(join(identityDirectory, "certificate.pem"))).toBe(true);
  });
});

import { spawn, spawnSync } from "node:child_process";
import type { TestProject } from "vitest/node";

/**
 * The integration tier's setup. It first checks the toolchains the tier needs and, when one is
 * missing, stops the run with one line naming it and how to get it. Then it builds the tools that
 * take minutes the first time (FerretDB from source, grpcurl, the Go and Python example peers),
 * each cached in $RELAY_TOOLS_DIR (default ~/.cache/relay-tools), printing a progress line every
 * 30 s while one builds. Later runs find them cached and take seconds.
 *
 * Beside them it builds the package (`npm run build`, incremental: seconds when nothing changed),
 * every time: the tests start the relay and relay-peer commands as the package's bins on dist/
 * (./commands.ts), which must never be older than src/. In watch mode it builds again before each
 * rerun.
 *
 * MONGODB_URI (a running MongoDB) or FERRETDB_BIN (a FerretDB binary) skip the FerretDB build.
 */
export default async function setup(project: TestProject): Promise<void> {
  const missing = missingToolchains();
  if (missing.length > 0) {
    // One line and the exit code, nothing else: thrown, the error would come after vitest's
    // "No test files found" and a stack, which point the wrong way.
    process.stderr.write(`integration tests: missing ${missing.join("; missing ")}\n`);
    process.exit(1);
  }
  const tools = (async () => {
    if (!process.env.MONGODB_URI && !process.env.FERRETDB_BIN) await build("FerretDB", "bash", ["scripts/install-ferretdb.sh"]);
    await build("grpcurl", "bash", ["scripts/install-grpcurl.sh"]);
    await build("the Go and Python example peers", "bash", ["scripts/build-polyglot-examples.sh"]);
  })();
  await Promise.all([tools, buildPackage()]);
  project.onTestsRerun(buildPackage);
}

/** `npm run build`: src/ to dist/, what the bins run. */
function buildPackage(): Promise<void> {
  return build("the package (src/ to dist/)", process.execPath, ["scripts/build.mjs"]);
}

interface Toolchain {
  /** What is missing, for the message. */
  name: string;
  /** How to get it. */
  install: string;
  /** True when it is present and usable. */
  present(): boolean;
}

const toolchains: Toolchain[] = [
  {
    name: "Go 1.26 or later (FerretDB, grpcurl and the Go peer are built from source)",
    install: "https://go.dev/dl/, then put its bin/ on PATH",
    present: () => {
      const version = run("go", ["env", "GOVERSION"]);
      const match = /^go(\d+)\.(\d+)/.exec(version ?? "");
      return match !== null && (Number(match[1]) > 1 || Number(match[2]) >= 26);
    },
  },
  {
    name: "Python 3 with venv (the Python peer)",
    install: "apt-get install python3 python3-venv",
    present: () => run("python3", ["-c", "import venv, ensurepip"]) !== undefined,
  },
  {
    name: "Chromium (the house's browser test; never a browser build downloaded by a tool)",
    install: "apt-get install chromium, or set CHROMIUM_PATH",
    present: () => run(process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", ["--version"]) !== undefined,
  },
  {
    name: "openssl (certificates with keys relay will not make)",
    install: "apt-get install openssl",
    present: () => run("openssl", ["version"]) !== undefined,
  },
];

function missingToolchains(): string[] {
  return toolchains.filter((toolchain) => !toolchain.present()).map((toolchain) => `${toolchain.name}: install it from ${toolchain.install}`);
}

/** Runs a command; its stdout, or undefined when it is missing or fails. */
function run(command: string, args: string[]): string | undefined {
  const result = spawnSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** Runs a build command with its output shown, and a progress line every 30 s while it runs. */
async function build(what: string, command: string, args: string[]): Promise<void> {
  const started = Date.now();
  const child = spawn(command, args, { stdio: ["ignore", "inherit", "inherit"] });
  const progress = setInterval(() => process.stdout.write(`integration setup: still building ${what} (${Math.round((Date.now() - started) / 1000)} s)\n`), 30_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", resolve);
    });
    if (code !== 0) {
      process.stderr.write(`integration setup: ${[command, ...args].join(" ")} failed with exit code ${code} (its output is above)\n`);
      process.exit(1);
    }
  } finally {
    clearInterval(progress);
  }
}

import { execFileSync } from "node:child_process";

/**
 * Makes `npm test` work on a fresh clone: integration tests need FerretDB, so it is built once
 * (scripts/install-ferretdb.sh, cached in $RELAY_TOOLS_DIR; needs Go) unless MONGODB_URI names
 * a running MongoDB or FERRETDB_BIN names a binary.
 */
export default function setup(): void {
  if (process.env.MONGODB_URI || process.env.FERRETDB_BIN) return;
  execFileSync("bash", ["scripts/install-ferretdb.sh"], { stdio: ["ignore", "inherit", "inherit"] });
}

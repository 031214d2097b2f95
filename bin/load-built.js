// Imports a module of the compiled build. In a checkout where `npm run build` has not run yet,
// says so in one line instead of a stack trace about a missing file.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * @param {string} command the command's name, for the message
 * @param {string} path the module, relative to this folder
 */
export async function loadBuilt(command, path) {
  const url = new URL(path, import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    process.stderr.write(`${command}: ${fileURLToPath(url)} is missing: run \`npm run build\` first\n`);
    process.exit(1);
  }
  return import(url.href);
}

// The package's two commands as the tests start them: its bins (bin/relay.js, bin/relay-peer.js)
// on the compiled build in dist/, the way a user runs them. The integration tier's global setup
// builds dist/ from src/ before any test runs (incrementally: seconds when nothing changed), so
// they never run code older than src/. Compiled, a command starts in about half the time it took
// through tsx, which compiled every module again in each process.
import { fileURLToPath } from "node:url";

/** The relay's bin on the build. */
export const relayBin = fileURLToPath(new URL("../../bin/relay.js", import.meta.url));

/**
 * `relay`: node and its arguments, to put in front of the command's own arguments. With node's
 * --no-memory-reducer, as `npm start` and the Docker image give it, so that the process started is
 * the one serving (without it, the relay serves from a worker of its own: memory-reducer.test.ts).
 */
export const relayCommand: readonly [string, ...string[]] = [process.execPath, "--no-memory-reducer", relayBin];

/** `relay-peer`: node and its arguments, to put in front of the command's own arguments. */
export const relayPeerCommand: readonly [string, ...string[]] = [process.execPath, fileURLToPath(new URL("../../bin/relay-peer.js", import.meta.url))];

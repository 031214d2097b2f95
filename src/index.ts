/**
 * The package's main entry is the peer client library, what most programs that depend on relay
 * need: `import { createRelayClient } from "relay-tracker"` is the same as importing from
 * "relay-tracker/client". The relay server's factory is "relay-tracker/server".
 */
export * from "./client/index.js";

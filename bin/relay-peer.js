#!/usr/bin/env node
// relay-peer: the peer CLI, from the compiled JavaScript in dist/ (`npm run build`).
import { loadBuilt } from "./load-built.js";

const { main } = await loadBuilt("relay-peer", "../dist/client/cli/relay-peer.js");
process.exitCode = await main(process.argv.slice(2));

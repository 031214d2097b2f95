#!/usr/bin/env node
// relay: the relay server, from the compiled JavaScript in dist/ (`npm run build`).
import { loadBuilt } from "./load-built.js";

const { main } = await loadBuilt("relay", "../dist/server/main.js");
await main(process.argv.slice(2), process.env);

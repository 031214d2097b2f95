#!/usr/bin/env node
// relay-peer: runs the TypeScript CLI through tsx's API (tsx is a runtime dependency), so the
// command works straight after `npm ci`, with no build step.
import { tsImport } from "tsx/esm/api";

const { main } = await tsImport("../src/client/cli/relay-peer.ts", import.meta.url);
process.exitCode = await main(process.argv.slice(2));

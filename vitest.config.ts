import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.spec.ts", "test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Integration tests start real processes (FerretDB, relays) and real TLS handshakes; on a
    // 2-core machine a generous per-test bound avoids flakes without hiding hangs.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file starts its own FerretDB and relays; two at a time keeps a 2-core machine honest.
    maxWorkers: 2,
  },
});

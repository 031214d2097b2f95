import { defineConfig } from "vitest/config";

/**
 * Two tiers, run together by `npm test` (one run, one count line) or alone:
 * - unit (`npm run test:unit`): the `*.spec.ts` files beside the code. In process, on the memory
 *   store and a manual clock, with no sockets and no tool outside Node: it passes on a machine
 *   with only Node.
 * - integration (`npm run test:integration`): `test/**` with real processes, real TLS, FerretDB,
 *   grpcurl and the Go and Python peers. Its global setup checks the toolchains, builds the
 *   tools once (cached in $RELAY_TOOLS_DIR) and builds the package (`npm run build`,
 *   incremental) every run: the tests start relay and relay-peer as its bins on dist/.
 */
export default defineConfig({
  test: {
    // Each integration file starts its own FerretDB and relays, and mostly waits on them (sockets,
    // handshakes, timeouts): three files at a time keep a 2-core machine busy without starving
    // the timing bounds the tests check.
    maxWorkers: 3,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["src/**/*.spec.ts"],
          testTimeout: 10_000,
          // The specs share no state through modules (each builds its own stores, clocks and
          // servers), so one module graph per worker serves every file: a fresh graph per file
          // spent more time importing Connect and the certificate code than running tests.
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
          // As in the unit tier: every file starts and stops what it needs (relays, FerretDB,
          // processes) and shares no state through modules, so one module graph per worker serves
          // every file instead of importing Connect, the driver and the certificate code again
          // for each one.
          isolate: false,
          // Real processes and real TLS handshakes: on a 2-core machine a generous per-test bound
          // avoids flakes without hiding hangs.
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});

import { defineConfig } from "vitest/config";

/**
 * The tests mutation testing runs (stryker.config.mjs): the unit specs of the mutated modules,
 * which need no database or process and answer in about 3 s together. Every static mutant (a
 * value computed when a module loads, such as a row of the options table) reruns all of them,
 * so other specs would only add time. Integration tests (test/) start FerretDB and relays: one
 * run of them per mutant would take hours.
 */
export default defineConfig({
  test: {
    include: [
      "src/server/service/validation.spec.ts",
      "src/server/service/page-token.spec.ts",
      "src/server/service/request-properties.spec.ts",
      "src/server/service/broadcast-rules.spec.ts",
      "src/server/identity/certificate-checks.spec.ts",
      "src/server/ops/config.spec.ts",
      "src/shared/listen-address.spec.ts",
      "src/client/addresses.spec.ts",
      "src/client/backoff.spec.ts",
    ],
    testTimeout: 30_000,
    // Property tests (request-properties.spec) at 50 cases each, always the same ones: enough to
    // kill what the table tests miss in a quarter of the time, and a score that does not move
    // with the random seed.
    env: { FC_NUM_RUNS: "50", FC_SEED: "20301" },
  },
});

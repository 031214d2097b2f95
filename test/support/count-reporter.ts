import { writeFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

/** The counts behind the closing line `N passed, N failed, N skipped`. */
export interface TestCounts {
  passed: number;
  failed: number;
  skipped: number;
}

/**
 * Counts a finished run so that a failure can never hide: a test that failed counts once, and so
 * does every file or describe block with errors of its own (a file that does not load, a
 * beforeAll or afterAll that throws), and every error thrown outside any test (an unhandled
 * rejection). Vitest's own JSON counts none of those three as failed tests. Every test that did
 * not pass or fail (`skip`, `skipIf`, `todo`, or skipped because its beforeAll threw) counts as
 * skipped.
 */
export function countTests(modules: ReadonlyArray<TestModule>, unhandledErrors: number): TestCounts {
  const counts: TestCounts = { passed: 0, failed: unhandledErrors, skipped: 0 };
  for (const module of modules) {
    if (module.errors().length > 0) counts.failed += 1;
    for (const suite of module.children.allSuites()) {
      if (suite.errors().length > 0) counts.failed += 1;
    }
    for (const test of module.children.allTests()) {
      const state = test.result().state;
      if (state === "passed") counts.passed += 1;
      else if (state === "failed") counts.failed += 1;
      else counts.skipped += 1;
    }
  }
  return counts;
}

/** The closing line CI prints last. */
export function formatCounts({ passed, failed, skipped }: TestCounts): string {
  return `${passed} passed, ${failed} failed, ${skipped} skipped`;
}

/**
 * A vitest reporter that prints the count line at the end of a run and, when
 * RELAY_TEST_COUNT_FILE names a file, writes it there too (`.ci/run` prints it as its last line).
 * Used beside the default reporter: `vitest run --reporter=default --reporter=./test/support/count-reporter.ts`.
 */
export default class CountReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const line = formatCounts(countTests(modules, unhandledErrors.length));
    const file = process.env.RELAY_TEST_COUNT_FILE;
    if (file) writeFileSync(file, `${line}\n`);
    process.stdout.write(`\n${line}\n`);
  }
}

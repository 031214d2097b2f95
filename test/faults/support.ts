// Shared by the fault tests: load that keeps calling while something breaks, and the codes it saw.
import { Code, ConnectError } from "@connectrpc/connect";

/** Counts of each Connect code a load loop saw (successes under "ok"). */
export type Outcomes = Map<string, number>;

export function record(outcomes: Outcomes, error: unknown): void {
  const key = error === undefined ? "ok" : Code[ConnectError.from(error).code];
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

/** Codes other than ok and the allowed ones. */
export function unexpected(outcomes: Outcomes, allowed: Code[]): string[] {
  const names = new Set(["ok", ...allowed.map((code) => Code[code])]);
  return [...outcomes.keys()].filter((key) => !names.has(key));
}

/** Resolves once predicate() holds, checking on every event-loop turn of at most intervalMs. */
export async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, intervalMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

import { Code } from "@connectrpc/connect";

/**
 * The name of a Connect code as the Connect protocol spells it ("not_found" for Code.NotFound,
 * "ok" for success): used in error messages, metric labels and logs alike.
 */
export function codeName(code: Code | undefined): string {
  if (code === undefined) return "ok";
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

import { Code, ConnectError } from "@connectrpc/connect";

/** The Connect code a call failed with; throws (failing the test) when the call succeeded. */
export async function codeOf(call: Promise<unknown>): Promise<Code> {
  const outcome = await outcomeOf(call);
  if (outcome === "ok") throw new Error("expected the call to fail");
  return outcome;
}

/** "ok" when the call succeeded, else the Connect code it failed with. */
export async function outcomeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

/** "ok" when run returns, else the code of the ConnectError it throws (other errors propagate). */
export function outcomeOfSync(run: () => unknown): Code | "ok" {
  try {
    run();
    return "ok";
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    return error.code;
  }
}

/** "ok", or the code and message of the ConnectError run throws (other errors propagate). */
export function failureOfSync(run: () => unknown): "ok" | { code: Code; message: string } {
  try {
    run();
    return "ok";
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    return { code: error.code, message: error.rawMessage };
  }
}

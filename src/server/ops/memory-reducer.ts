/**
 * V8's memory reducer and the relay process. About 100 s after a heap's last full collection
 * (8 s when the process allocates little), the reducer runs up to three more, in V8's
 * memory-reducing mode, to give back what a burst of allocations left: after a storm of 10,000
 * peers that is two collections whose pauses and marking steps held heartbeats for up to 52 ms
 * (docs/operating.md, "Pauses"). The relay runs without it by default (`--memory-reducer off`).
 *
 * V8 reads its `--no-memory-reducer` flag only when it sets up the heap: set later with
 * `v8.setFlagsFromString`, even as the relay's first statement, the reducer still runs (measured on
 * Node 20). So the setting belongs on node's command line (`NODE_OPTIONS` refuses it). `npm start`,
 * the Docker image and the documented service unit put it there; a process started otherwise
 * serves through a worker started with the wanted setting (main.ts).
 */

/** A V8 flag on node's command line that sets the memory reducer: `--memory-reducer`, `--no-memory-reducer`, `--nomemory_reducer`… */
const reducerFlag = /^--(no[-_]?)?memory[-_]reducer$/;

/** The flag that turns the reducer off, as node's command line takes it. */
export const noMemoryReducerFlag = "--no-memory-reducer";

/**
 * Whether V8's memory reducer runs in a process started with these node arguments
 * (`process.execArgv`): V8's default (on) unless a flag says otherwise; the last such flag wins.
 */
export function memoryReducerRuns(execArgv: readonly string[]): boolean {
  let runs = true;
  for (const arg of execArgv) {
    const match = reducerFlag.exec(arg);
    if (match) runs = match[1] === undefined;
  }
  return runs;
}

/** The node arguments with the reducer as wanted: any flag for it dropped, then `--no-memory-reducer` added when off. */
export function execArgvWithMemoryReducer(execArgv: readonly string[], runs: boolean): string[] {
  const rest = execArgv.filter((arg) => !reducerFlag.test(arg));
  return runs ? rest : [...rest, noMemoryReducerFlag];
}

/**
 * What to do to open calls when the relay shuts down, behind one listener on the shutdown signal.
 *
 * connect-node's `shutdownSignal` option links every call's signal to the shutdown signal: one
 * listener added and removed on that one signal per call. Node's EventTarget scans the listeners
 * already there on each add and remove, and every held Heartbeat stream keeps one, so each call
 * paid for all open streams: an add and remove cost 13 µs with 1,000 listeners, 73 µs with 10,000
 * (measured). A set of callbacks costs the same whatever is open. Only calls that would otherwise
 * stay open through shutdown need a hook: held streams (Heartbeat, health Watch); a unary call
 * ends on its own, and the relay's Watch streams are ended by the watch hub.
 */

/** Callbacks run once when the relay shuts down. */
export interface ShutdownHooks {
  /** Aborted when the relay shuts down. */
  readonly signal: AbortSignal;
  /**
   * Runs onShutdown once when the relay shuts down, or at once if it has. Returns the function
   * that forgets it: call it when the call ends, so ended calls are not kept.
   */
  add(onShutdown: () => void): () => void;
}

/** Creates the hooks of one shutdown signal; they hold one listener on it. */
export function createShutdownHooks(signal: AbortSignal): ShutdownHooks {
  const hooks = new Set<() => void>();
  signal.addEventListener(
    "abort",
    () => {
      for (const hook of hooks) hook();
      hooks.clear();
    },
    { once: true },
  );
  return {
    signal,
    add(onShutdown) {
      if (signal.aborted) {
        onShutdown();
        return () => {};
      }
      // A wrapper of its own, so that one callback added twice is two hooks.
      const hook = () => onShutdown();
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
  };
}

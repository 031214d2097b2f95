import { describe, expect, it } from "vitest";
import { createShutdownHooks } from "./shutdown-hooks.js";

describe("createShutdownHooks", () => {
  it("should run every hook still added once at shutdown, and none that was forgotten", () => {
    const shutdown = new AbortController();
    const hooks = createShutdownHooks(shutdown.signal);
    const ran: string[] = [];
    hooks.add(() => ran.push("a"));
    const forgetB = hooks.add(() => ran.push("b"));
    hooks.add(() => ran.push("c"));
    forgetB();
    expect(ran).toEqual([]);
    shutdown.abort();
    expect(ran).toEqual(["a", "c"]);
    expect(hooks.signal.aborted).toBe(true);
  });

  it("should run a hook added after shutdown at once", () => {
    const shutdown = new AbortController();
    shutdown.abort();
    const hooks = createShutdownHooks(shutdown.signal);
    let ran = 0;
    const forget = hooks.add(() => ran++);
    expect(ran).toBe(1);
    forget();
    expect(ran).toBe(1);
  });

  it("should keep one callback added twice as two hooks", () => {
    const shutdown = new AbortController();
    const hooks = createShutdownHooks(shutdown.signal);
    let ran = 0;
    const callback = () => ran++;
    const forgetFirst = hooks.add(callback);
    hooks.add(callback);
    forgetFirst();
    shutdown.abort();
    expect(ran).toBe(1);
  });
});

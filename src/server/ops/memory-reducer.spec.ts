import { describe, expect, it } from "vitest";
import { execArgvWithMemoryReducer, memoryReducerRuns } from "./memory-reducer.js";

describe("memoryReducerRuns", () => {
  it.each([
    [[], true],
    [["--trace-gc"], true],
    [["--no-memory-reducer"], false],
    [["--no_memory_reducer"], false],
    [["--nomemory-reducer"], false],
    [["--no-memory-reducer", "--memory-reducer"], true],
    [["--memory-reducer", "--no-memory-reducer"], false],
    // Other flags that only start like it say nothing about it.
    [["--no-memory-reducer-for-small-heaps"], true],
  ])("should read %j as %s", (execArgv, runs) => {
    expect(memoryReducerRuns(execArgv)).toBe(runs);
  });
});

describe("execArgvWithMemoryReducer", () => {
  it("should add --no-memory-reducer after node's other arguments to turn it off", () => {
    expect(execArgvWithMemoryReducer(["--import", "x.js", "--trace-gc"], false)).toEqual(["--import", "x.js", "--trace-gc", "--no-memory-reducer"]);
  });

  it("should drop every flag for it to turn it on, keeping the rest", () => {
    expect(execArgvWithMemoryReducer(["--no-memory-reducer", "--trace-gc", "--no_memory_reducer"], true)).toEqual(["--trace-gc"]);
  });

  it("should give one flag however many there were", () => {
    expect(execArgvWithMemoryReducer(["--memory-reducer", "--no-memory-reducer"], false)).toEqual(["--no-memory-reducer"]);
  });
});

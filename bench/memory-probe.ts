/**
 * Loaded into each server of bench/scale.ts (`node --import`): on SIGWINCH it writes the
 * process's memory as V8 and Node see it (heap used and total, external, ArrayBuffers, each heap
 * space) to the file named by RELAY_BENCH_MEMORY_FILE, so the load generator can split RSS into
 * JavaScript heap, external buffers and native memory (nghttp2, OpenSSL, the allocator). Without
 * that variable it does nothing. SIGWINCH is ignored by default, so a target started without this
 * module is not hurt by the load generator's signal.
 */
import { writeFileSync } from "node:fs";
import { getHeapSpaceStatistics } from "node:v8";

const file = process.env.RELAY_BENCH_MEMORY_FILE;
if (file !== undefined && file !== "") {
  process.on("SIGWINCH", () => {
    const usage = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, space.space_used_size]));
    writeFileSync(file, JSON.stringify({ pid: process.pid, ...usage, spaces }) + "\n");
  });
}

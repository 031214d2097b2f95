// Preloaded into a child process with `node --import` (through NODE_OPTIONS): when the process
// exits it writes its peak resident set size, in KiB, to the file named by RELAY_MAX_RSS_FILE.
// Tests use it to show that a transfer streams (the peak does not grow with the file's size).
import { writeFileSync } from "node:fs";

process.on("exit", () => {
  const file = process.env.RELAY_MAX_RSS_FILE;
  if (file) writeFileSync(file, String(process.resourceUsage().maxRSS));
});

/**
 * Loaded into each server of bench/scale.ts (`node --import`): when a server of the process
 * starts listening on the port named by RELAY_BENCH_LISTEN_PORT, writes the file named by
 * RELAY_BENCH_LISTEN_FILE, so the load generator learns when the process listens without asking
 * the port. A TCP connect would wait behind the peers reconnecting into the listen backlog after
 * a restart (timing the backlog, not the start-up), and the kernel's socket table (/proc/net/tcp)
 * takes longer to read the more connections the machine holds. Without both variables it does
 * nothing.
 */
import { writeFileSync } from "node:fs";
import { Server } from "node:net";

const file = process.env.RELAY_BENCH_LISTEN_FILE;
const port = Number(process.env.RELAY_BENCH_LISTEN_PORT);
if (file !== undefined && file !== "" && Number.isInteger(port) && port > 0) {
  const listen = Server.prototype.listen;
  // Patched before the server's code loads: every net, tls and http2 server listens through it.
  Server.prototype.listen = function (this: Server, ...args: unknown[]) {
    this.once("listening", () => {
      const address = this.address();
      if (address !== null && typeof address === "object" && address.port === port) writeFileSync(file, `${process.pid}\n`);
    });
    return (listen as (...args: unknown[]) => Server).apply(this, args);
  } as Server["listen"];
}

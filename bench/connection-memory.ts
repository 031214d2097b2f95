/**
 * What one idle connection costs a Node server before any RPC framework: RSS, V8 heap and
 * native memory per connection of a bare TLS server (with a client certificate, as peers
 * connect) and of a bare HTTP/2 server, both with the relay's TLS and HTTP/2 settings
 * (secure-server-options.ts). The baseline of bench/scale.ts's floor: what no handler code can
 * take away.
 *
 *   npm run bench:connection-memory -- --connections 2000
 *
 * The server runs in a child process (its memory is read through IPC before and after the
 * connections are made); the client connections are made here, from 127.0.1.x source addresses,
 * 8 per address. An HTTP/2 connection sends the client preface and SETTINGS, then stays idle.
 * Loopback only.
 */
import { fork } from "node:child_process";
import { once } from "node:events";
import { createConnection } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { createServer as createTlsServer } from "node:tls";
import { createSecureServer } from "node:http2";
import { createSelfSignedCertificate } from "../src/shared/self-signed-certificate.js";
import { defaultConnectionLimits } from "../src/server/transport/connection-limits.js";
import { secureServerOptions } from "../src/server/transport/secure-server-options.js";

interface Usage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

if (process.env.CONNECTION_MEMORY_SERVER !== undefined) {
  // --- the child: a bare server that answers "usage" with its memory -------------------------
  const mode = process.env.CONNECTION_MEMORY_SERVER;
  const tls = JSON.parse(readFileSync(0, "utf8")) as { certificatePem: string; privateKeyPem: string };
  const options = secureServerOptions({ tls, connectionLimits: defaultConnectionLimits });
  const server =
    mode === "tls"
      ? createTlsServer(options, (socket) => {
          socket.on("error", () => {});
          socket.resume();
        })
      : createSecureServer(options, (_request, response) => response.end());
  if (mode !== "tls") server.on("session", (session) => session.on("error", () => {}));
  server.listen(0, "127.0.0.1", () => process.send!({ port: (server.address() as { port: number }).port }));
  process.on("message", () => {
    const { rss, heapTotal, heapUsed, external } = process.memoryUsage();
    process.send!({ rss, heapTotal, heapUsed, external });
  });
} else {
  const { values } = parseArgs({ options: { connections: { type: "string", default: "2000" } } });
  const connections = Number(values.connections);
  if (!Number.isInteger(connections) || connections < 1 || connections > 20_000) throw new Error("--connections must be 1 to 20000");
  const server = await createSelfSignedCertificate({ commonName: "connection-memory", ipAddresses: ["127.0.0.1"], keyType: "ecdsa-p256" });
  const client = await createSelfSignedCertificate({ commonName: "peer@connection-memory.example", emails: ["peer@connection-memory.example"] });
  const preface = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
  const kib = (bytes: number) => (bytes / 1024 / connections).toFixed(1);
  const rows: string[] = [];
  for (const mode of ["tls", "h2"] as const) {
    const child = fork(new URL(import.meta.url).pathname, [], { env: { ...process.env, CONNECTION_MEMORY_SERVER: mode }, stdio: ["pipe", "inherit", "inherit", "ipc"], execArgv: process.execArgv });
    child.stdin!.end(JSON.stringify(server));
    const [{ port }] = (await once(child, "message")) as [{ port: number }];
    const usage = async (): Promise<Usage> => {
      child.send("usage");
      return ((await once(child, "message")) as [Usage])[0];
    };
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const before = await usage();
    const sockets: TLSSocket[] = [];
    for (let i = 0; i < connections; i++) {
      const address = Math.floor(i / 8);
      const tcp = createConnection({ host: "127.0.0.1", port, localAddress: `127.0.${1 + Math.floor(address / 254)}.${1 + (address % 254)}` });
      const socket = connect({ socket: tcp, host: "127.0.0.1", ca: server.certificatePem, cert: client.certificatePem, key: client.privateKeyPem, ALPNProtocols: [mode === "tls" ? "http/1.1" : "h2"] });
      socket.on("error", () => {});
      await once(socket, "secureConnect");
      if (mode === "h2") socket.write(preface);
      socket.resume();
      sockets.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = await usage();
    const rss = after.rss - before.rss;
    const heapTotal = after.heapTotal - before.heapTotal;
    const external = after.external - before.external;
    rows.push(`| ${mode === "tls" ? "TLS (client certificate)" : "TLS + HTTP/2 session"} | ${kib(rss)} | ${kib(after.heapUsed - before.heapUsed)} | ${kib(heapTotal)} | ${kib(rss - heapTotal - external)} |`);
    for (const socket of sockets) socket.destroy();
    child.kill();
  }
  process.stdout.write(`${connections} idle connections, KiB per connection\n\n| server | RSS | V8 heap in use | V8 heap committed | native |\n|---|---|---|---|---|\n${rows.join("\n")}\n`);
}

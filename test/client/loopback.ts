/**
 * Loopback-only fixtures for peer tests and benchmarks (DESIGN.md: tests dial 127.0.0.0/8 and
 * ::1 only; an unreachable candidate is a closed port on 127.0.0.x).
 */
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";

/** A tiny peer HTTP server: GET /health → 200 "ok", GET /api/files → JSON file list. */
export interface PeerHttpServer {
  port: number;
  host: string;
  /** Requests seen, as "METHOD path". */
  requests: string[];
  close(): Promise<void>;
}

export const peerFiles = [
  { name: "notes.txt", size: 12 },
  { name: "photos/cat.jpg", size: 34_567 },
];

export async function startPeerHttpServer(host = "127.0.0.1"): Promise<PeerHttpServer> {
  const requests: string[] = [];
  const server: HttpServer = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.url === "/health") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else if (req.url === "/api/files") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ files: peerFiles }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    host,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A port on host with nothing listening: bound once to get a free number, then closed. Dialling
 * it is refused at once by the loopback stack.
 */
export async function closedPort(host = "127.0.0.2"): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A server that accepts connections and never answers: from the dialler's side the same as a
 * blackholed address (the attempt ends only at its timeout), yet all on loopback.
 */
export async function startSilentServer(host = "127.0.0.3"): Promise<{ port: number; host: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    host,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Loopback-only fixtures for peer tests and benchmarks (tests dial 127.0.0.0/8 and
 * ::1 only; an unreachable candidate is a closed port on 127.0.0.x).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { remoteFingerprint } from "../../src/client/share/peer-tls.js";

/**
 * A tiny peer server over peer TLS with the given certificate: GET /health → 200 "ok",
 * GET /api/files → JSON file list, anything else → the `routes` handler or 404.
 */
export interface PeerHttpServer {
  port: number;
  host: string;
  /** Requests seen, as "METHOD path". */
  requests: string[];
  /** Fingerprints of the client certificates presented, one per request ("" for none). */
  visitors: string[];
  close(): Promise<void>;
}

export const peerFiles = [
  { name: "notes.txt", size: 12 },
  { name: "photos/cat.jpg", size: 34_567 },
];

export interface PeerHttpServerOptions {
  /** The certificate served: a peer's identity, or another one to stand for another machine. */
  certificate: { certificatePem: string; privateKeyPem: string };
  /** Default: 127.0.0.1. */
  host?: string;
  /** Default: a free port. */
  port?: number;
  /** Answers paths other than /health and /api/files; returns false to answer 404. */
  routes?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export async function startPeerHttpServer(options: PeerHttpServerOptions): Promise<PeerHttpServer> {
  const { certificate, host = "127.0.0.1" } = options;
  const requests: string[] = [];
  const visitors: string[] = [];
  const server: HttpsServer = createHttpsServer({ cert: certificate.certificatePem, key: certificate.privateKeyPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    visitors.push(remoteFingerprint(req.socket as TLSSocket) ?? "");
    if (req.url === "/health") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else if (req.url === "/api/files") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ files: peerFiles }));
    } else if (!options.routes?.(req, res)) {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    host,
    requests,
    visitors,
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
export async function startSilentServer(host = "127.0.0.3"): Promise<{ port: number; host: string; connections(): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    host,
    /** Connections accepted so far. */
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

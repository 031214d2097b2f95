import { createServer, type Http2Server, type Http2ServerRequest, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";

/** A cleartext HTTP/2 server on loopback whose request handler records what reaches it. */
export interface RecordingServer {
  /** http://127.0.0.1:port */
  readonly baseUrl: string;
  /** One entry per request that reached the request handler, as describe named it. */
  readonly reached: string[];
  close(): Promise<void>;
}

/**
 * Starts a server whose request handler records each request (describe names it) and answers
 * nothing but a 404, so that a call reaching it fails. install runs once the handler is in place:
 * it takes what it serves itself from the server (held-heartbeats.ts, direct-unary.ts).
 */
export async function startRecordingServer(install: (server: Http2Server) => void, describe: (request: Http2ServerRequest) => string): Promise<RecordingServer> {
  const reached: string[] = [];
  const server = createServer((request, response) => {
    reached.push(describe(request));
    response.writeHead(404).end();
  });
  install(server);
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    reached,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.destroy();
      await closed;
    },
  };
}

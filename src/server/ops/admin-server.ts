/**
 * The admin listener: plain HTTP on its own address (loopback by default, never the peers'
 * port) for Prometheus and probes.
 *   GET /metrics  Prometheus text format from the relay's registry
 *   GET /healthz  200 while the process runs (liveness)
 *   GET /readyz   200 when the relay serves, 503 while its database is unreachable or it stops
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { ServingStatus, type Readiness } from "./health.js";

/** Options of {@link createAdminServer}. */
export interface AdminServerOptions {
  /** Default "127.0.0.1": metrics name peers' counts and timings, so not public by default. */
  host?: string;
  /** Default 0 (a free port). `--admin-listen` defaults to 127.0.0.1:8444. */
  port?: number;
  /** Registry served on /metrics. */
  registry: Registry;
  /** Readiness reported on /readyz (its "" service). */
  readiness: Readiness;
  logger: Logger;
}

/** A listening admin server. */
export interface AdminServer {
  /** http://host:port */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}


/** Starts the admin listener; resolves once it listens. */
export async function createAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { registry, readiness, logger } = options;
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    switch (path) {
      case "/metrics":
        registry.metrics().then(
          (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
          (error: unknown) => {
            logger.error({ err: error }, "failed to collect metrics");
            response.writeHead(500, { "content-type": "text/plain" }).end("failed to collect metrics\n");
          },
        );
        return;
      case "/healthz":
        response.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        return;
      case "/readyz": {
        const serving = readiness.status("") === ServingStatus.SERVING;
        response.writeHead(serving ? 200 : 503, { "content-type": "text/plain" }).end(serving ? "ready\n" : "not ready\n");
        return;
      }
      default:
        response.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /healthz or /readyz\n");
    }
  });
  server.on("clientError", (error, socket) => {
    logger.debug({ err: error }, "admin listener client error");
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => logger.error({ err: error }, "admin listener error"));
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Scrapers keep connections alive; close them so close() does not wait for their timeout.
        server.closeAllConnections();
      }),
  };
}

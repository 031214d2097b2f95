import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream/promises";
import { pino, type Logger } from "pino";
import { formatListenAddress } from "../../shared/listen-address.js";
import type { Dialer } from "../dialer.js";
import { PeerConnectionError } from "../share/peer-error.js";
import type { PeerBoard } from "./peer-board.js";

/**
 * The house: a local web app showing the peer board and browsing peers' shares. A browser
 * cannot present the peer's certificate (mutual TLS with a self-signed identity), so the page
 * talks only to this process, on loopback, and this process talks to peers over peer TLS.
 *
 * Everything is served under `/<token>/`, a random per-launch token that is part of the URL the
 * command prints. A request without it (the page itself included) gets 403, so another local
 * user, or a web page in another tab, cannot read the peers' files through the house. The
 * Host header must name the loopback address, which also defeats DNS rebinding.
 *
 * Under `/<token>/`:
 * - `/`, `/house.js`, `/house.css`: the page (plain HTML, CSS and JS; no build step)
 * - `GET api/peers`: the board as JSON; `GET api/events`: the board on every change (SSE)
 * - `POST api/peers/<email>/check`: dial that peer again now
 * - `GET api/peers/<email>/files?path=…`: the peer's /api/files
 * - `GET api/peers/<email>/content/<path>` and `/download/<path>`: the peer's bytes, streamed,
 *   Range passed through
 */

/** Options of {@link createHouseServer}. */
export interface HouseServerOptions {
  board: PeerBoard;
  /** Dials peers for the file requests; the board's dialer, so both share what they learn. */
  dialer: Dialer;
  /** A loopback address. Default: 127.0.0.1. */
  host?: string;
  /** Default: 0, a free port. */
  port?: number;
  /** The URL token. Default: 32 random bytes, base64url. */
  token?: string;
  /** Default: silent. */
  logger?: Logger;
}

/** A running house. */
export interface HouseServer {
  /** The page's URL, token included: the only way in. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const assetsDirectory = new URL("./public/", import.meta.url);
const assets: Record<string, { file: string; type: string }> = {
  "": { file: "index.html", type: "text/html; charset=utf-8" },
  "house.js": { file: "house.js", type: "text/javascript; charset=utf-8" },
  "house.css": { file: "house.css", type: "text/css; charset=utf-8" },
};

// Proxied peer bytes are never run as the house's own page: no script, its own origin.
const peerContentHeaders = { "content-security-policy": "sandbox", "x-content-type-options": "nosniff", "cache-control": "no-store" };
const pageSecurityHeaders = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};
const passedHeaders = ["content-type", "content-length", "content-range", "accept-ranges", "etag", "last-modified", "content-disposition"];

/** Starts the house; resolves once it listens. */
export async function createHouseServer(options: HouseServerOptions): Promise<HouseServer> {
  const { board, dialer } = options;
  const logger = options.logger ?? pino({ level: "silent" });
  const token = options.token ?? randomBytes(32).toString("base64url");
  const host = options.host ?? "127.0.0.1";
  const pages = Object.fromEntries(await Promise.all(Object.entries(assets).map(async ([name, asset]) => [name, await readFile(new URL(asset.file, assetsDirectory))] as const)));
  const events = new Set<ServerResponse>();
  let port = 0;

  const onChange = (snapshot: unknown) => {
    const frame = `event: board\ndata: ${JSON.stringify(snapshot)}\n\n`;
    for (const res of events) res.write(frame);
  };
  board.on("change", onChange);

  function allowedHosts(): Set<string> {
    return new Set([formatListenAddress({ host, port }), `localhost:${port}`]);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const pathname = query < 0 ? url : url.slice(0, query);
    const search = new URLSearchParams(query < 0 ? "" : url.slice(query + 1));
    if (!allowedHosts().has(req.headers.host ?? "")) return json(res, 403, { error: "bad_host", message: "the house answers only on its loopback address" });
    const [, first = "", ...rest] = pathname.split("/");
    if (!sameToken(first, token)) {
      logger.debug({ url: url.slice(0, 200) }, "refused a request without the house token");
      return json(res, 403, { error: "no_token", message: "open the URL relay-peer house printed, token included" });
    }
    if (rest.length === 0) return void res.writeHead(308, { location: `/${token}/` }).end();
    const route = rest.join("/");
    if (req.method === "GET" && route in pages) {
      res.writeHead(200, { "content-type": assets[route]!.type, ...pageSecurityHeaders });
      return void res.end(pages[route]);
    }
    if (req.method === "GET" && route === "api/peers") return json(res, 200, board.snapshot());
    if (req.method === "GET" && route === "api/events") return openEvents(req, res);
    const peerRoute = /^api\/peers\/([^/]+)\/(check|files|content|download)(?:\/(.*))?$/.exec(route);
    if (!peerRoute) return json(res, 404, { error: "not_found", message: `no such house endpoint: ${req.method} /${route.slice(0, 100)}` });
    const email = safeDecode(peerRoute[1]!);
    const action = peerRoute[2]!;
    if (action === "check") {
      if (req.method !== "POST") return json(res, 405, { error: "method_not_allowed", message: "POST to check a peer" });
      return board.check(email ?? "") ? json(res, 202, { checking: email }) : json(res, 404, { error: "unknown_peer", message: `${email} is not on the board` });
    }
    if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "method_not_allowed", message: "GET only" });
    const peer = email === undefined ? undefined : board.peer(email);
    if (!peer) return json(res, 404, { error: "unknown_peer", message: `${email} is not on the board` });
    // The rest of the path goes to the peer still percent-encoded: the peer's share server is
    // the one that decodes and checks it.
    const peerPath = action === "files" ? `/api/files?path=${encodeURIComponent(search.get("path") ?? "")}` : `/${action}/${peerRoute[3] ?? ""}`;
    return proxy(req, res, peer, peerPath, action);
  }

  async function proxy(req: IncomingMessage, res: ServerResponse, peer: NonNullable<ReturnType<PeerBoard["peer"]>>, path: string, action: string): Promise<void> {
    const controller = new AbortController();
    res.once("close", () => controller.abort());
    const headers: Record<string, string> = {};
    for (const name of ["range", "if-none-match", "if-modified-since", "if-range"]) {
      const value = req.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    let opened;
    try {
      opened = await dialer.open(peer, path, { method: req.method === "HEAD" ? "HEAD" : "GET", headers, signal: controller.signal });
    } catch (error) {
      if (controller.signal.aborted) return;
      const failure = error instanceof PeerConnectionError ? error.failure : "failed";
      logger.info({ err: error, peer: peer.email, path }, "failed to reach a peer for the page");
      return json(res, 502, { error: failure, message: error instanceof Error ? error.message : String(error) });
    }
    const { result, response } = opened;
    if (!response) return json(res, 502, { error: `peer_${result.state}`, message: result.message ?? `${peer.email} is ${result.state}` });
    const out: Record<string, string> = action === "files" ? { "cache-control": "no-store" } : { ...peerContentHeaders };
    for (const name of passedHeaders) {
      const value = response.headers[name];
      if (typeof value === "string") out[name] = value;
    }
    res.writeHead(response.status, out);
    try {
      await pipeline(response.body, res);
    } catch (error) {
      if (!controller.signal.aborted) logger.info({ err: error, peer: peer.email, path }, "peer transfer ended early");
    }
  }

  function openEvents(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive" });
    res.write(`retry: 2000\nevent: board\ndata: ${JSON.stringify(board.snapshot())}\n\n`);
    events.add(res);
    // A comment every 15 s keeps idle proxies and the browser from giving up on the stream.
    const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
    keepAlive.unref();
    req.once("close", () => {
      clearInterval(keepAlive);
      events.delete(res);
    });
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error({ err: error, url: req.url?.slice(0, 200) }, "failed to answer a house request");
      if (!res.headersSent) json(res, 500, { error: "internal", message: "the house failed to answer" });
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const url = `http://${formatListenAddress({ host, port })}/${token}/`;
  logger.info({ url: `http://${formatListenAddress({ host, port })}/…/` }, "house serving");
  return {
    url,
    port,
    async close() {
      board.off("change", onChange);
      for (const res of events) res.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** Constant-time comparison, so the token cannot be guessed a character at a time from timing. */
function sameToken(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function safeDecode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), ...pageSecurityHeaders });
  res.end(text);
}

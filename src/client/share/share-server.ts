import { lstat, opendir, realpath, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import contentDisposition from "content-disposition";
import mime from "mime-types";
import { pino, type Logger } from "pino";
import send from "send";
import type { PeerIdentity } from "../identity.js";
import { remoteFingerprint } from "./peer-tls.js";
import { isInside, parseEncodedPath, parsePlainPath, realShareRoot, resolveSharePath, safeFileNameOf, SharePathError, type ResolvedSharePath } from "./share-path.js";
import type { VisitorCheck } from "./visitor-check.js";

/**
 * A peer's file server: serves one directory read-only over HTTPS with the peer's own identity
 * certificate, and lets in only visitors whose TLS client certificate the relay vouches for.
 *
 * Endpoints (GET and HEAD):
 * - `/health`: 200 `{"status":"serving","email":…}` — what dialers probe
 * - `/api/files[?path=sub/dir]`: the directory's entries as JSON
 * - `/content/<path>`: the file inline, with Content-Type, ETag, Last-Modified and byte ranges
 * - `/download/<path>`: the same bytes as an attachment with a safe file name
 *
 * Every refusal is a JSON body `{"error": code, "message": text}` with a 4xx (or 503 when the
 * relay cannot be asked about a visitor), and a log line.
 */

/** Options of {@link createShareServer}. */
export interface ShareServerOptions {
  /** The directory to share, read-only. Symlinks inside it are followed only while they stay inside. */
  directory: string;
  /** The certificate served on TLS: the peer's identity, so visitors can check the fingerprint the relay gave them. */
  identity: Pick<PeerIdentity, "email" | "certificatePem" | "privateKeyPem">;
  /** Who may read. */
  visitors: VisitorCheck;
  /**
   * Addresses to listen on. Default: `0.0.0.0` and `::` (IPv6 only, so the two do not collide),
   * every interface, because the addresses announced to the relay are this machine's interface
   * addresses. When the defaults are used and IPv6 is unavailable, IPv4 alone is served.
   */
  binds?: readonly string[];
  /** TCP port, the same on every bind address. Default: 0, a free port chosen by the system. */
  port?: number;
  /** Default: silent. */
  logger?: Logger;
  /** Most entries one /api/files answer lists (`truncated` is then true). Default: 10,000, about 1.5 MB of JSON. */
  maxListEntries?: number;
  /** Time a client gets to send its request headers. Default: 10 s (Node's default is 60 s, generous for a hostile client). */
  headersTimeoutMs?: number;
  /** A connection silent this long (no byte either way) is closed, during a download too. Default: 60 s. */
  idleTimeoutMs?: number;
  /** Open connections per bind address; more are refused at accept. Default: 256. */
  maxConnections?: number;
}

/** A running share server. */
export interface ShareServer {
  /** The port every bind address listens on. */
  readonly port: number;
  /** Where it listens. */
  readonly addresses: readonly AddressInfo[];
  /** The real path of the shared directory. */
  readonly root: string;
  /** Stops accepting, ends idle connections at once and the rest within graceMs (default 2 s). */
  close(graceMs?: number): Promise<void>;
}

/** One entry of /api/files. */
export interface ShareEntry {
  name: string;
  type: "file" | "directory";
  /** Bytes; 0 for a directory. */
  size: number;
  /** Last modification, ISO 8601. */
  modified: string;
  /** Media type guessed from the name; "inode/directory" for a directory. */
  mediaType: string;
}

/** The body of /api/files. */
export interface ShareListing {
  /** The listed directory relative to the share, "" for the share itself. */
  path: string;
  entries: ShareEntry[];
  /** True when the directory has more entries than the server lists. */
  truncated: boolean;
}

const defaultBinds = ["0.0.0.0", "::"];

/** Starts a share server; resolves once every bind address listens. */
export async function createShareServer(options: ShareServerOptions): Promise<ShareServer> {
  const root = await realShareRoot(options.directory);
  const logger = options.logger ?? pino({ level: "silent" });
  const maxListEntries = options.maxListEntries ?? 10_000;
  const binds = options.binds ?? defaultBinds;
  const fingerprints = new WeakMap<TLSSocket, string | undefined>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const log = logger.child({ method: req.method, url: url.slice(0, 512), remote: req.socket.remoteAddress });
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return refuse(res, log, 405, "method_not_allowed", `${req.method} is not served: this share is read-only`);
    }
    const socket = req.socket as TLSSocket;
    if (!fingerprints.has(socket)) fingerprints.set(socket, remoteFingerprint(socket));
    const verdict = await options.visitors.check(fingerprints.get(socket));
    if (!verdict.allowed) {
      if (verdict.cause !== undefined) log.error({ err: verdict.cause }, "failed to ask the relay about a visitor");
      return refuse(res, log.child({ visitor: verdict.email }), verdict.status, verdict.error, verdict.message, verdict.status === 503 ? { "retry-after": "5" } : {});
    }
    const visitorLog = log.child({ visitor: verdict.email });
    const query = url.indexOf("?");
    const pathname = query < 0 ? url : url.slice(0, query);
    try {
      if (pathname === "/health") return json(res, 200, { status: "serving", email: options.identity.email });
      if (pathname === "/api/files") {
        const path = new URLSearchParams(query < 0 ? "" : url.slice(query + 1)).get("path") ?? "";
        const listing = await listDirectory(await resolveSharePath(root, parsePlainPath(path)));
        visitorLog.debug({ path: listing.path, entries: listing.entries.length }, "listed");
        return json(res, 200, listing);
      }
      for (const [prefix, disposition] of [["/content/", "inline"], ["/download/", "attachment"]] as const) {
        if (pathname.startsWith(prefix)) {
          const resolved = await resolveSharePath(root, parseEncodedPath(pathname.slice(prefix.length)));
          return sendFile(req, res, resolved, disposition, visitorLog);
        }
      }
      return refuse(res, visitorLog, 404, "not_found", "no such endpoint: this share serves /health, /api/files, /content/<path> and /download/<path>");
    } catch (error) {
      if (error instanceof SharePathError) {
        // A request that tries to leave the directory is worth a warning: it is either a bug in a
        // visitor's client or someone probing. A missing file is ordinary.
        const level = error.problem === "not_found" ? "debug" : "warn";
        return refuse(res, visitorLog, error.status, error.problem, error.message, {}, level);
      }
      throw error;
    }
  }

  async function listDirectory(resolved: ResolvedSharePath): Promise<ShareListing> {
    if (!resolved.stats.isDirectory()) throw new SharePathError("not_found", 404, `${resolved.relative} is not a directory`);
    const entries: ShareEntry[] = [];
    let truncated = false;
    const directory = await opendir(resolved.absolute);
    for await (const dirent of directory) {
      if (entries.length >= maxListEntries) {
        truncated = true;
        break; // leaving the loop closes the directory handle
      }
      const stats = await entryStats(join(resolved.absolute, dirent.name), dirent.isSymbolicLink());
      // Sockets, FIFOs and devices are not files to share; symlinks out of the share are not listed.
      if (!stats || !(stats.isFile() || stats.isDirectory())) continue;
      const isDirectory = stats.isDirectory();
      entries.push({
        name: dirent.name,
        type: isDirectory ? "directory" : "file",
        size: isDirectory ? 0 : stats.size,
        modified: stats.mtime.toISOString(),
        mediaType: isDirectory ? "inode/directory" : mime.lookup(dirent.name) || "application/octet-stream",
      });
    }
    entries.sort((a, b) => (a.type === b.type ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.type === "directory" ? -1 : 1));
    return { path: resolved.relative, entries, truncated };
  }

  async function entryStats(path: string, isSymbolicLink: boolean): Promise<Stats | undefined> {
    try {
      if (!isSymbolicLink) return await lstat(path);
      const target = await realpath(path);
      return isInside(root, target) ? await stat(target) : undefined;
    } catch {
      return undefined; // vanished meanwhile, dangling or unreadable: not listed
    }
  }

  function sendFile(req: IncomingMessage, res: ServerResponse, resolved: ResolvedSharePath, disposition: "inline" | "attachment", log: Logger): void {
    if (resolved.stats.isDirectory()) return refuse(res, log, 400, "is_directory", `${resolved.relative || "/"} is a directory: list it with /api/files?path=`);
    // A FIFO would block the read forever and a device has no end.
    if (!resolved.stats.isFile()) return refuse(res, log, 403, "not_a_file", `${resolved.relative} is not a regular file`, {}, "warn");
    const name = resolved.relative.split("/").at(-1)!;
    send(req, resolved.absolute, { dotfiles: "allow", index: false, cacheControl: false, etag: true, lastModified: true, acceptRanges: true })
      .on("headers", (response: ServerResponse) => {
        response.setHeader("cache-control", "private, no-cache");
        response.setHeader("x-content-type-options", "nosniff");
        // Shared HTML must not run script if a browser ever renders it from here.
        response.setHeader("content-security-policy", "sandbox");
        response.setHeader("content-disposition", contentDisposition(safeFileNameOf(name), { type: disposition }));
      })
      .on("error", (error: Error & { status?: number }) => {
        const status = error.status ?? 500;
        if (status >= 500) log.error({ err: error }, "failed to read a shared file");
        if (res.headersSent) return void res.destroy();
        refuse(res, log, status, status === 416 ? "range_not_satisfiable" : status === 404 ? "not_found" : "read_failed", status === 416 ? "the range is outside the file" : "the file could not be read", {}, "debug");
      })
      .on("end", () => log.debug({ path: resolved.relative, status: res.statusCode, range: req.headers.range }, "served"))
      .pipe(res);
  }

  const servers: Server[] = [];
  let port = options.port ?? 0;
  const serverOptions = {
    cert: options.identity.certificatePem,
    key: options.identity.privateKeyPem,
    // Ask for the visitor's certificate but accept any: peer certificates are self-signed, and
    // the visitor is identified by its fingerprint alone, checked with the relay.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.2" as const,
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    // GET requests have no body: the whole request is its headers.
    requestTimeout: (options.headersTimeoutMs ?? 10_000) + 5_000,
    keepAliveTimeout: 5_000,
    maxHeaderSize: 16 * 1024,
  };
  try {
    for (const host of binds) {
      const server = createServer(serverOptions, (req, res) => {
        handle(req, res).catch((error: unknown) => {
          logger.error({ err: error, url: req.url?.slice(0, 512) }, "failed to answer a share request");
          if (!res.headersSent) json(res, 500, { error: "internal", message: "the share failed to answer" });
          else res.destroy();
        });
      });
      server.timeout = options.idleTimeoutMs ?? 60_000;
      server.maxConnections = options.maxConnections ?? 256;
      server.maxHeadersCount = 64;
      server.on("tlsClientError", (error) => logger.debug({ err: error }, "TLS handshake failed"));
      try {
        await listen(server, host, port);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (options.binds === undefined && host === "::" && (code === "EAFNOSUPPORT" || code === "EADDRNOTAVAIL")) {
          logger.warn({ err: error }, "IPv6 is not available: sharing on IPv4 only");
          continue;
        }
        throw error;
      }
      servers.push(server);
      port = (server.address() as AddressInfo).port;
    }
  } catch (error) {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    throw error;
  }
  const addresses = servers.map((server) => server.address() as AddressInfo);
  logger.info({ root, addresses }, "sharing");
  return {
    port,
    addresses,
    root,
    async close(graceMs = 2_000) {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => server.closeAllConnections(), graceMs);
              server.close(() => {
                clearTimeout(timer);
                resolve();
              });
              server.closeIdleConnections();
            }),
        ),
      );
    },
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, ipv6Only: host.includes(":") }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(text);
}

function refuse(res: ServerResponse, log: Logger, status: number, error: string, message: string, headers: Record<string, string> = {}, level: "debug" | "info" | "warn" = status === 401 || status === 403 ? "warn" : "info"): void {
  log[level]({ status, error }, `refused: ${message}`);
  json(res, status, { error, message }, headers);
}

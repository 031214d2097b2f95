import { request, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { systemClock, type Clock } from "../../shared/clock.js";
import type { PeerIdentity } from "../identity.js";
import { PeerConnectionError, peerConnectionErrorOf } from "./peer-error.js";
import { connectPeer, hostPort } from "./peer-tls.js";

/** Options of {@link peerRequest}. */
export interface PeerRequestOptions {
  /** IP literal of the candidate to ask. */
  address: string;
  port: number;
  /** The peer's certificate fingerprint (Peer.fingerprint); every hop must serve it. */
  fingerprint: string;
  identity: Pick<PeerIdentity, "certificatePem" | "privateKeyPem">;
  /** Absolute path and query, for example "/api/files?path=photos". */
  path: string;
  /** Default: GET. */
  method?: "GET" | "HEAD";
  /** Extra request headers (Range, If-None-Match…). */
  headers?: Record<string, string>;
  /** Deadline for connect, TLS and the response headers, per hop. */
  timeoutMs: number;
  /** A body silent this long fails with `timeout`. Default: 30 s. */
  idleTimeoutMs?: number;
  /** Redirects followed. Default: 5. */
  maxRedirects?: number;
  /**
   * Other addresses of the same peer (its announced and observed ones) a redirect may point at.
   * The current address is always allowed; the certificate is checked again on every hop.
   */
  peerAddresses?: readonly string[];
  signal?: AbortSignal;
  /** Default: the system clock. */
  clock?: Clock;
}

/** A peer's answer, its body still to be read (a stream, so large files never sit in memory). */
export interface PeerStream {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** Where the answer came from, after redirects. */
  address: string;
  port: number;
  path: string;
  /** The URLs redirected to, in order. */
  redirects: string[];
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/**
 * GETs a path from a peer's share server over verified peer TLS ({@link connectPeer}), one
 * connection per hop, following redirects that stay on the same peer: https, to an IP literal
 * that is one of the peer's addresses, serving the peer's certificate. Rejects with a
 * {@link PeerConnectionError}.
 */
export async function peerRequest(options: PeerRequestOptions): Promise<PeerStream> {
  const maxRedirects = options.maxRedirects ?? 5;
  const redirects: string[] = [];
  let { address, port, path } = options;
  for (;;) {
    const response = await requestOnce({ ...options, address, port, path });
    const location = response.headers.location;
    if (!redirectStatuses.has(response.statusCode ?? 0) || location === undefined) {
      return { status: response.statusCode ?? 0, headers: response.headers, body: response, address, port, path, redirects };
    }
    response.destroy();
    if (redirects.length >= maxRedirects) {
      throw new PeerConnectionError("too_many_redirects", `${hostPort(address, port)}${path}: more than ${maxRedirects} redirects`);
    }
    const target = redirectTarget(location, address, port, path, options.peerAddresses ?? []);
    redirects.push(`https://${hostPort(target.address, target.port)}${target.path}`);
    ({ address, port, path } = target);
  }
}

/** Where a redirect leads, when it stays on the peer; throws `redirect_refused` otherwise. */
export function redirectTarget(location: string, address: string, port: number, path: string, peerAddresses: readonly string[]): { address: string; port: number; path: string } {
  let url: URL;
  try {
    url = new URL(location, `https://${hostPort(address, port)}${path}`);
  } catch {
    throw new PeerConnectionError("redirect_refused", `${hostPort(address, port)}${path} redirected to an invalid location`);
  }
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  if (url.protocol !== "https:" || isIP(host) === 0 || (host !== address && !peerAddresses.includes(host))) {
    throw new PeerConnectionError("redirect_refused", `${hostPort(address, port)}${path} redirected off the peer, to ${url.href.slice(0, 200)}`);
  }
  return { address: host, port: url.port === "" ? 443 : Number(url.port), path: url.pathname + url.search };
}

async function requestOnce(options: PeerRequestOptions): Promise<IncomingMessage> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const where = `${hostPort(options.address, options.port)}${options.path}`;
  const socket = await connectPeer({ ...options, clock });
  return new Promise((resolve, reject) => {
    const fail = (error: unknown) => {
      clock.clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(peerConnectionErrorOf(error, where, options.signal));
    };
    const remaining = Math.max(1, options.timeoutMs - (clock.now() - started));
    const timer = clock.setTimeout(() => fail(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: "ETIMEDOUT" })), remaining);
    const onAbort = () => fail(new PeerConnectionError("cancelled", `${where}: cancelled`));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const req = request({
      host: options.address,
      port: options.port,
      path: options.path,
      method: options.method ?? "GET",
      headers: { accept: "*/*", ...options.headers, connection: "close" },
      // The connection is already open and its certificate checked: the request goes only there.
      createConnection: () => socket,
    });
    req.on("error", fail);
    req.on("response", (response) => {
      clock.clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      req.off("error", fail);
      const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
      socket.setTimeout(idleTimeoutMs, () => response.destroy(new PeerConnectionError("timeout", `${where}: no data for ${idleTimeoutMs} ms`)));
      if (options.signal) {
        const signal = options.signal;
        const abortBody = () => response.destroy(new PeerConnectionError("cancelled", `${where}: cancelled`));
        signal.addEventListener("abort", abortBody, { once: true });
        response.once("close", () => signal.removeEventListener("abort", abortBody));
      }
      resolve(response);
    });
    req.end();
  });
}

/** Reads a response body whole, failing with `too_large` past maxBytes. */
export async function readPeerBody(response: PeerStream, maxBytes: number): Promise<Buffer> {
  const where = `${hostPort(response.address, response.port)}${response.path}`;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) throw new PeerConnectionError("too_large", `${where}: body larger than ${maxBytes} bytes`);
      chunks.push(chunk);
    }
  } catch (error) {
    response.body.destroy();
    throw peerConnectionErrorOf(error, where);
  }
  return Buffer.concat(chunks);
}

import type { TLSSocket } from "node:tls";
import type { Http2ServerRequest, ServerHttp2Stream } from "node:http2";
import type { IncomingMessage } from "node:http";
import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import { fingerprintOf } from "../../shared/fingerprint.js";
import { canonicalAddress } from "../service/validation.js";
import { certificateFacts, type CertificateFacts } from "./certificate-checks.js";

/**
 * What identifies the caller of a connection, read from its TLS client certificate once per
 * connection. Only what identity needs is kept: thousands of connections stay open, so no PEM and
 * no parsed certificate is held per connection.
 */
export interface CallerIdentity {
  /** Hex SHA-256 over DER. */
  fingerprint: string;
  /** Key type, validity and emails, read once per connection. */
  facts: CertificateFacts;
}

/** What the transport tells a handler about its caller. */
export interface CallerContext {
  /** undefined when the connection presented no certificate. */
  identity: CallerIdentity | undefined;
  /** Source IP as the relay saw it, canonical (IPv4-mapped IPv6 becomes IPv4). */
  observedAddress: string;
  /**
   * Tells the transport the connection's certificate is registered: its connection limits follow
   * the certificate from now on, not its source address. Called by the relay service.
   */
  markAuthenticated?: () => void;
}

export const kCaller = createContextKey<CallerContext>({ identity: undefined, observedAddress: "" }, { description: "relay caller" });

// A TLS socket's certificate and source address do not change, so they are read on the first
// request of each connection only (parsing the address with ipaddr.js on every call showed in
// the Lookup profile). Keyed weakly so closed connections are collected.
const callers = new WeakMap<object, Readonly<CallerContext>>();

/**
 * Reads the caller's certificate from the TLS socket of a request (HTTP/2 or HTTP/1.1).
 * socket.authorized is not used: with rejectUnauthorized false it says nothing, and a TLS 1.3
 * session resumed without a certificate reports authorized with an empty certificate.
 * Every request of one connection gets the same object: do not change it.
 */
export function callerOf(request: Http2ServerRequest | IncomingMessage): Readonly<CallerContext> {
  // Keyed by the HTTP/2 session (one per TLS socket) or the HTTP/1.1 socket: an HTTP/2 session's
  // socket is a proxy whose getter and traps would otherwise run on every call.
  const session = (request as Http2ServerRequest).stream?.session;
  return callerFor(session ?? request.socket, () => session?.socket ?? request.socket);
}

/** {@link callerOf} for a raw HTTP/2 stream: the same object as its connection's requests get. */
export function callerOfStream(stream: ServerHttp2Stream): Readonly<CallerContext> {
  const session = stream.session;
  return callerFor(session ?? stream, () => session?.socket);
}

function callerFor(key: object, socketOf: () => unknown): Readonly<CallerContext> {
  let caller = callers.get(key);
  if (caller === undefined) {
    const socket = socketOf() as TLSSocket | undefined;
    caller = Object.freeze(socket && typeof socket.getPeerCertificate === "function" ? { identity: identityOf(socket), observedAddress: canonicalAddress(socket.remoteAddress ?? "") ?? "" } : { identity: undefined, observedAddress: "" });
    callers.set(key, caller);
  }
  return caller;
}

function identityOf(socket: TLSSocket): CallerIdentity | undefined {
  let identity: CallerIdentity | null = null;
  try {
    // The certificate the TLS stack already parsed, without parsing its DER again: building a
    // new X509Certificate from getPeerCertificate().raw cost about 250 µs, this about 10 µs.
    const certificate = socket.getPeerX509Certificate();
    if (certificate !== undefined) identity = { fingerprint: fingerprintOf(certificate), facts: certificateFacts(certificate) };
  } catch {
    identity = null; // unparseable (a corrupt key is read lazily): treated as no certificate
  }
  return identity ?? undefined;
}

/** The caller's identity, or Unauthenticated when the connection presented no certificate. */
export function requireIdentity(caller: CallerContext): CallerIdentity {
  if (caller.identity === undefined) {
    throw new ConnectError("no client certificate on the connection: connect with your peer certificate (mutual TLS)", Code.Unauthenticated);
  }
  return caller.identity;
}

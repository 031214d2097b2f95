import { isIP } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { systemClock, type Clock } from "../../shared/clock.js";
import { fingerprintOf } from "../../shared/fingerprint.js";
import type { PeerIdentity } from "../identity.js";
import { PeerConnectionError, peerConnectionErrorOf } from "./peer-error.js";

/**
 * Peer-to-peer TLS, the visitor's side. Peers' certificates are self-signed, so no CA can vouch
 * for them; the relay does instead: Lookup, List and Watch give each peer's certificate
 * fingerprint, and a connection is used only once the certificate served on it has that
 * fingerprint. Nothing (not even the request line) is sent before that check.
 */

/** Options of {@link connectPeer}. */
export interface ConnectPeerOptions {
  /** IP literal. */
  address: string;
  port: number;
  /** Hex SHA-256 of the DER of the certificate the peer must serve (Peer.fingerprint). */
  fingerprint: string;
  /** Presented as the TLS client certificate, so the peer can check the visitor with the relay. */
  identity: Pick<PeerIdentity, "certificatePem" | "privateKeyPem">;
  /** Deadline for TCP connect and TLS handshake. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Default: the system clock. */
  clock?: Clock;
}

/** "127.0.0.1:8444", "[::1]:8444". */
export function hostPort(address: string, port: number): string {
  return `${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/**
 * Connects to address:port over TLS presenting the identity, and resolves with the socket once
 * the peer's certificate has the expected fingerprint. Rejects with a {@link PeerConnectionError}:
 * `wrong_peer` when another certificate was served, `refused`, `timeout`, `cancelled` or `failed`.
 */
export function connectPeer(options: ConnectPeerOptions): Promise<TLSSocket> {
  const { address, port, signal } = options;
  const clock = options.clock ?? systemClock;
  const where = hostPort(address, port);
  const expected = options.fingerprint.toLowerCase();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new PeerConnectionError("cancelled", `${where}: cancelled`));
    const socket = connect({
      host: address,
      port,
      cert: options.identity.certificatePem,
      key: options.identity.privateKeyPem,
      // Self-signed: the chain cannot be verified, the fingerprint is checked below instead.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
      minVersion: "TLSv1.2",
    });
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (error) {
        socket.destroy();
        reject(peerConnectionErrorOf(error, where, signal));
      } else {
        socket.off("error", settle);
        resolve(socket);
      }
    };
    const onAbort = () => settle(new PeerConnectionError("cancelled", `${where}: cancelled`));
    const timer = clock.setTimeout(() => settle(Object.assign(new Error(`no TLS answer within ${options.timeoutMs} ms`), { code: "ETIMEDOUT" })), options.timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", settle);
    socket.once("secureConnect", () => {
      const served = remoteFingerprint(socket);
      if (served !== expected) {
        settle(new PeerConnectionError("wrong_peer", `${where} served ${served ? `certificate ${served.slice(0, 16)}…` : "no certificate"}, not the peer's ${expected.slice(0, 16)}…`));
        return;
      }
      settle();
    });
  });
}

/**
 * Hex SHA-256 of the DER of the certificate the other end of a TLS connection presented (the
 * server's for a visitor, the visitor's for a share server), or undefined when it presented none.
 */
export function remoteFingerprint(socket: TLSSocket): string | undefined {
  const certificate = socket.getPeerX509Certificate();
  return certificate ? fingerprintOf(certificate) : undefined;
}

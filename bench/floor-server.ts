/**
 * The floor of bench/scale.ts: a bare connect-node server on node:http2 with the relay's TLS and
 * HTTP/2 settings (secureServerOptions, the same listen backlog) and no-op handlers: no identity,
 * validation, store, limits, interceptors, handshake admission, session pings or kept ticket keys.
 * Whatever it costs, the stack costs; the relay is measured against it.
 *
 *   node --import tsx bench/floor-server.ts --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem
 *
 * Register, Ready and Lookup answer fixed messages; Heartbeat answers every message. Lookup's Peer
 * has every field the relay's has for the load generator's peers (a fingerprint included, from a
 * constant), so both servers send the same bytes and the floor stands for the stack's cost of
 * the same traffic.
 *
 * With --raw-heartbeat, Heartbeat is served by a hand-written node:http2 gRPC handler (the
 * load generator's protocol only: length-prefixed messages, grpc-status in trailers) instead of
 * connect-node, to measure what connect-node's per-call machinery costs a held stream.
 */
import { readFileSync } from "node:fs";
import { createSecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { parseArgs } from "node:util";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { HeartbeatResponseSchema, RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { defaultConnectionLimits } from "../src/server/transport/connection-limits.js";
import { defaultListenBacklog, secureServerOptions } from "../src/server/transport/secure-server-options.js";

const { values } = parseArgs({ options: { listen: { type: "string", default: "127.0.0.1:8443" }, "tls-cert": { type: "string" }, "tls-key": { type: "string" }, "raw-heartbeat": { type: "boolean", default: false } } });
const [, host, port] = /^(.+):(\d+)$/.exec(values.listen!) ?? [];
const ttlMs = 3_600_000;
const intervalMs = ttlMs / 3;
const fingerprint = "f".repeat(64); // hex SHA-256, as long as a real one

const handler = connectNodeAdapter({
  routes: (router) =>
    router
      .rpc(RelayService.method.register, () => ({ clientId: "floor", registeredAt: timestampFromDate(new Date()) }))
      .rpc(RelayService.method.ready, () => ({ broadcastId: "floor", expiresAt: timestampFromDate(new Date(Date.now() + ttlMs)), heartbeatInterval: durationFromMs(intervalMs), observedAddress: "127.0.0.1" }))
      .rpc(RelayService.method.lookup, (request) => ({
        peer: { email: request.email, port: 7000, addresses: ["127.0.0.2"], lastSeen: timestampFromDate(new Date()), expiresAt: timestampFromDate(new Date(Date.now() + ttlMs)), observedAddress: "127.0.0.1", fingerprint },
      }))
      .rpc(RelayService.method.heartbeat, async function* (requests) {
        for await (const _ of requests) yield { expiresAt: timestampFromDate(new Date(Date.now() + ttlMs)), expiresIn: durationFromMs(ttlMs), nextHeartbeatIn: durationFromMs(intervalMs) };
      }),
});
const server = createSecureServer(secureServerOptions({ tls: { certificatePem: readFileSync(values["tls-cert"]!, "utf8"), privateKeyPem: readFileSync(values["tls-key"]!, "utf8") }, connectionLimits: defaultConnectionLimits }), handler);
if (values["raw-heartbeat"]) serveRawHeartbeat();
server.on("session", (session) => {
  session.on("error", () => {});
  session.socket?.on("error", () => {});
});
server.on("tlsClientError", () => {});
server.listen({ port: Number(port), host, backlog: defaultListenBacklog });
process.on("SIGTERM", () => process.exit(0));

/**
 * Takes Heartbeat streams away from connect-node (Node's compatibility layer, the 'stream'
 * listener a request handler installs) and answers them on the raw stream: every complete
 * length-prefixed message gets one response message, the client's half-close gets grpc-status 0.
 */
function serveRawHeartbeat(): void {
  const heartbeatPath = `/${RelayService.typeName}/${RelayService.method.heartbeat.name}`;
  const [compat] = server.listeners("stream") as Array<(...args: unknown[]) => void>;
  server.removeListener("stream", compat!);
  server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) => {
    if (headers[":path"] !== heartbeatPath) return compat!.call(server, stream, headers, ...rest);
    stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.on("error", () => {});
    let pending: Buffer | undefined;
    stream.on("data", (chunk: Buffer) => {
      pending = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      while (pending !== undefined && pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        pending = pending.length === 5 + length ? undefined : pending.subarray(5 + length);
        const message = toBinary(HeartbeatResponseSchema, create(HeartbeatResponseSchema, { expiresAt: timestampFromDate(new Date(Date.now() + ttlMs)), expiresIn: durationFromMs(ttlMs), nextHeartbeatIn: durationFromMs(intervalMs) }));
        const frame = Buffer.allocUnsafe(5 + message.length);
        frame[0] = 0;
        frame.writeUInt32BE(message.length, 1);
        frame.set(message, 5);
        stream.write(frame);
      }
    });
    stream.on("end", () => stream.end());
  });
}

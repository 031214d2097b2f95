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
 */
import { readFileSync } from "node:fs";
import { createSecureServer } from "node:http2";
import { parseArgs } from "node:util";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { defaultConnectionLimits } from "../src/server/transport/connection-limits.js";
import { defaultListenBacklog, secureServerOptions } from "../src/server/transport/secure-server-options.js";

const { values } = parseArgs({ options: { listen: { type: "string", default: "127.0.0.1:8443" }, "tls-cert": { type: "string" }, "tls-key": { type: "string" } } });
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
server.on("session", (session) => {
  session.on("error", () => {});
  session.socket?.on("error", () => {});
});
server.on("tlsClientError", () => {});
server.listen({ port: Number(port), host, backlog: defaultListenBacklog });
process.on("SIGTERM", () => process.exit(0));

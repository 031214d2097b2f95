/**
 * The server side of bench/soak.ts, in its own process so its memory is its own: either the relay
 * (createRelayServer, in-memory store unless SOAK_MONGODB_URI) or, for the stack's ceiling, a bare
 * connect-node server on the same TLS and HTTP/2 settings whose Heartbeat echoes a fixed answer and
 * does nothing else. Reports its port on start and its memory when asked, over the IPC channel.
 */
import { createSecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayServer } from "../src/server/transport/relay-server.js";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { MongoStore } from "../src/server/store/mongo-store.js";
import { pino } from "pino";
import { createSelfSignedCertificate } from "../src/shared/self-signed-certificate.js";

const mode = process.argv[2] === "echo" ? "echo" : "relay";
const tls = await createSelfSignedCertificate({ commonName: "soak", ipAddresses: ["127.0.0.1"], keyType: "ecdsa-p256" });
let port: number;
if (mode === "relay") {
  const logger = pino({ level: "silent" });
  const store = process.env.SOAK_MONGODB_URI ? await MongoStore.connect({ uri: process.env.SOAK_MONGODB_URI, logger }) : new MemoryStore();
  const relay = await createRelayServer({ tls, store, logger, host: "127.0.0.1", port: 0, registrationsPerNetworkPerHour: 0 });
  port = relay.port;
} else {
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.rpc(RelayService.method.heartbeat, async function* (requests) {
        for await (const _ of requests) yield { expiresAt: timestampFromDate(new Date()), expiresIn: durationFromMs(3_600_000), nextHeartbeatIn: durationFromMs(1_200_000) };
      }),
  });
  const server = createSecureServer({ cert: tls.certificatePem, key: tls.privateKeyPem, requestCert: true, rejectUnauthorized: false, allowHTTP1: true }, handler);
  server.on("session", (session) => session.on("error", () => {}));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
}
process.send!({ port, caPem: tls.certificatePem });
process.on("message", (message) => {
  if (message === "rss") process.send!({ rss: process.memoryUsage.rss() });
  if (message === "memory") {
    global.gc?.();
    process.send!({ memory: process.memoryUsage() });
  }
});

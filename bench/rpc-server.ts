/**
 * The server side of bench/rpc.ts, in its own process so it has its own event loop (and core):
 * "ceiling" is a bare connect-node server whose Lookup answers a fixed peer; "relay" is
 * createRelayServer on the in-memory store, or on RPC_BENCH_MONGODB_URI when set, with
 * RPC_BENCH_CACHE_MS as the registration cache bound. Reports its URL over the IPC
 * channel, and its CPU time when asked.
 */
import { createSecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayServer } from "../src/server/transport/relay-server.js";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { MongoStore } from "../src/server/store/mongo-store.js";
import { testServerCertificate } from "../test/support/relay.js";

const tls = await testServerCertificate();
let port: number;
if (process.argv[2] === "relay") {
  const logger = pino({ level: "silent" });
  const uri = process.env.RPC_BENCH_MONGODB_URI;
  const store = uri ? await MongoStore.connect({ uri, logger }) : new MemoryStore();
  const relay = await createRelayServer({
    tls,
    store,
    logger,
    registrationCacheTtlMs: Number(process.env.RPC_BENCH_CACHE_MS ?? 60_000),
    rateLimits: { perCertificate: 0, perIp: 0 },
    registrationsPerNetworkPerHour: 0,
    connectionLimits: { maxUnauthenticatedPerSource: 0 },
  });
  port = relay.port;
} else {
  const handler = connectNodeAdapter({
    routes: (router) =>
      router
        .rpc(RelayService.method.lookup, () => ({
          peer: { email: "target@example.com", port: 8080, addresses: ["127.0.0.2"], lastSeen: timestampFromDate(new Date()), expiresAt: timestampFromDate(new Date(Date.now() + 3_600_000)), observedAddress: "127.0.0.1" },
        }))
        .rpc(RelayService.method.register, () => ({}))
        .rpc(RelayService.method.ready, () => ({})),
  });
  const server = createSecureServer({ cert: tls.certificatePem, key: tls.privateKeyPem, requestCert: true, rejectUnauthorized: false, allowHTTP1: true }, handler);
  server.on("session", (session) => session.on("error", () => {}));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
}
process.send!({ url: `https://127.0.0.1:${port}`, caPem: tls.certificatePem });
process.on("message", (message) => {
  if (message === "cpu") {
    const { user, system } = process.cpuUsage();
    process.send!({ cpuMicros: user + system });
  }
});
process.on("disconnect", () => process.exit(0));

/**
 * The server side of bench/watch.ts, in its own process: "relay" is createRelayServer on the
 * in-memory store, or on WATCH_BENCH_MONGODB_URI when set; "ceiling" is a bare connect-node
 * server on the same TLS whose Watch streams get a message the moment its Ready is called (an
 * in-process fan-out, no store, no identity). Reports its URL over the IPC channel.
 */
import { createSecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { pino } from "pino";
import { RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createRelayServer } from "../src/server/transport/relay-server.js";
import { MemoryStore } from "../src/server/store/memory-store.js";
import { MongoStore } from "../src/server/store/mongo-store.js";
import { testServerCertificate } from "../test/support/relay.js";

const tls = await testServerCertificate();
let port: number;
if (process.argv[2] === "relay") {
  const logger = pino({ level: process.env.WATCH_BENCH_LOG_LEVEL ?? "silent" });
  const uri = process.env.WATCH_BENCH_MONGODB_URI;
  const store = uri ? await MongoStore.connect({ uri, logger }) : new MemoryStore();
  const relay = await createRelayServer({
    tls,
    store,
    logger,
    rateLimits: { perCertificate: 0, perIp: 0 },
    registrationsPerNetworkPerHour: 0,
    maxStreamsPerCertificate: 0,
    connectionLimits: { maxUnauthenticatedPerSource: 0, maxConnectionsPerCertificate: 0 },
  });
  port = relay.port;
} else {
  const watchers = new Set<(port: number) => void>();
  const handler = connectNodeAdapter({
    routes: (router) =>
      router
        .rpc(RelayService.method.register, () => ({}))
        .rpc(RelayService.method.ready, (request) => {
          for (const notify of watchers) notify(request.port);
          return {};
        })
        .rpc(RelayService.method.watch, async function* (request, ctx) {
          const queue: number[] = [];
          let wake: (() => void) | undefined;
          const notify = (changed: number) => {
            queue.push(changed);
            wake?.();
          };
          watchers.add(notify);
          ctx.signal.addEventListener("abort", () => wake?.(), { once: true });
          try {
            yield { email: request.emails[0]!, online: false, initial: true };
            while (!ctx.signal.aborted) {
              const changed = queue.shift();
              if (changed === undefined) {
                await new Promise<void>((resolve) => (wake = resolve));
                continue;
              }
              yield { email: request.emails[0]!, online: true, peer: { email: request.emails[0]!, port: changed, addresses: ["127.0.0.2"] } };
            }
          } finally {
            watchers.delete(notify);
          }
        }),
  });
  const server = createSecureServer({ cert: tls.certificatePem, key: tls.privateKeyPem, requestCert: true, rejectUnauthorized: false, allowHTTP1: true }, handler);
  server.on("session", (session) => session.on("error", () => {}));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
}
process.send!({ url: `https://127.0.0.1:${port}`, caPem: tls.certificatePem });
process.on("disconnect", () => process.exit(0));

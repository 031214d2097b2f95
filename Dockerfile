# The relay as a container: built in one stage, run from compiled JavaScript in a second one that
# holds only production dependencies, as the unprivileged `node` user, with state in /data.
#
#   docker build -t relay .
#   docker run --stop-timeout 20 -p 8443:8443 -v relay-data:/data relay
#   docker run --stop-timeout 20 -p 8443:8443 -v relay-data:/data -e MONGODB_URI=mongodb://db:27017/relay relay
#
# Options are flags after the image name or RELAY_* env vars (`docker run relay --help`).

# --- build: TypeScript to dist/, then drop the development dependencies -----------------------
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/
COPY src/ src/
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- run ---------------------------------------------------------------------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    RELAY_LISTEN=0.0.0.0:8443 \
    RELAY_ADMIN_LISTEN=0.0.0.0:8444 \
    RELAY_DATA_DIR=/data
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
# /data holds the generated relay certificate and key (or the ones mounted there and named with
# --tls-cert / --tls-key); it must be writable by the unprivileged user.
RUN mkdir /data && chown node:node /data
VOLUME ["/data"]
USER node
# 8443: Connect, gRPC and gRPC-Web with mutual TLS. 8444: /metrics, /healthz, /readyz (plain HTTP:
# publish it only to the monitoring network).
EXPOSE 8443 8444
HEALTHCHECK --interval=30s --timeout=5s CMD ["node", "--eval", "fetch('http://127.0.0.1:8444/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node as PID 1 gets SIGTERM from `docker stop` and drains (see docs/operating.md), exiting within
# --drain-delay + --shutdown-timeout + 5 s (15 s by default): run with --stop-timeout 20.
# --no-memory-reducer: the relay's default --memory-reducer off, which V8 takes only from node's
# command line (docs/operating.md, "Pauses"); with --memory-reducer on the relay serves from a
# worker started without it.
ENTRYPOINT ["node", "--no-memory-reducer", "dist/server/main.js"]

export { createRelayServer, type RelayServer, type RelayServerOptions } from "./transport/relay-server.js";
export { runRelay, type RunningRelay } from "./main.js";
export { loadConfig, configHelp, relayOptions, ConfigError, type RelayConfig } from "./ops/config.js";
export { MemoryStore } from "./store/memory-store.js";
export { MongoStore, type MongoStoreOptions } from "./store/mongo-store.js";
export type { RelayStore, RegistrationRecord, BroadcastRecord, RegisterResult, ExtendResult, StoreStats } from "./store/store.js";
export { defaultLimits, type Limits } from "./service/request-limits.js";
export { systemClock, type Clock } from "../shared/clock.js";

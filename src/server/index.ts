export { createRelayServer, type RelayServer, type RelayServerOptions } from "./relay-server.js";
export { runRelay, type RunningRelay } from "./main.js";
export { loadConfig, configHelp, configFields, ConfigError, type RelayConfig } from "./config.js";
export { MemoryStore } from "./memory-store.js";
export { MongoStore, type MongoStoreOptions } from "./mongo-store.js";
export type { RelayStore, Registration, Broadcast, RegisterResult, ExtendResult, StoreStats } from "./store.js";
export { defaultLimits, type Limits } from "./limits.js";
export { systemClock, type Clock } from "./clock.js";

import { describeStoreContract } from "./store-contract.js";
import { MemoryStore } from "./memory-store.js";

// The store contract on the memory store, in process; test/store-contract.test.ts runs it on the
// MongoDB store against a real server.
describeStoreContract("MemoryStore", async () => ({ store: new MemoryStore(), sweeps: true, done: async () => {} }));

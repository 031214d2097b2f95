// Watch on a real relay over mutual TLS on FerretDB: the suite in watch-suite.ts (watch.test.ts runs
// it on the in-memory store).
import { describeWatch } from "./watch-suite.js";

describeWatch("FerretDB", true);

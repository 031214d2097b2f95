import { openSync, closeSync, createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { PassThrough, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../shared/manual-clock.js";
import { createLogDestination } from "./log-destination.js";

describe("createLogDestination", () => {
  it("should write lines to the stream", async () => {
    const dir = mkdtempSync(join(tmpdir(), "relay-log-"));
    try {
      const stream = createWriteStream(join(dir, "log"));
      const destination = createLogDestination({ stream });
      destination.write("one\n");
      destination.write("two\n");
      await destination.flush(5_000);
      stream.end();
      await once(stream, "close");
      expect(readFileSync(join(dir, "log"), "utf8")).toBe("one\ntwo\n");
      expect(destination.dropped).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("should drop lines, not throw, once the stream fails (a broken pipe)", async () => {
    const stream = new Writable({ write: (_chunk, _encoding, callback) => callback(Object.assign(new Error("write EPIPE"), { code: "EPIPE" })) });
    const destination = createLogDestination({ stream });
    destination.write("lost\n");
    await once(stream, "error").catch(() => undefined);
    expect(() => destination.write("also lost\n")).not.toThrow();
    expect(destination.failure?.message).toBe("write EPIPE");
    expect(destination.dropped).toBeGreaterThanOrEqual(1);
    await destination.flush(60_000); // resolves at once: nothing can be written any more
  });

  it("should drop lines once a full disk refuses them (ENOSPC from /dev/full)", async () => {
    const fd = openSync("/dev/full", "w");
    try {
      const stream = createWriteStream("", { fd, autoClose: false });
      const destination = createLogDestination({ stream });
      destination.write("first\n");
      await once(stream, "error").catch(() => undefined);
      destination.write("second\n");
      expect((destination.failure as NodeJS.ErrnoException | undefined)?.code).toBe("ENOSPC");
      expect(destination.dropped).toBe(1);
    } finally {
      closeSync(fd);
    }
  });

  it("should drop lines beyond maxBufferedBytes queued behind a reader that does not read", () => {
    const stream = new PassThrough({ highWaterMark: 16 });
    const destination = createLogDestination({ stream, maxBufferedBytes: 100 });
    for (let i = 0; i < 100; i++) destination.write(`${"x".repeat(9)}\n`);
    expect(stream.writableLength).toBeLessThanOrEqual(110);
    expect(destination.dropped).toBeGreaterThan(80);
  });

  it("should stop waiting for a flush after its timeout when nothing drains", async () => {
    const clock = new ManualClock(0);
    const stream = new PassThrough({ highWaterMark: 16 });
    const destination = createLogDestination({ stream, clock });
    destination.write("x".repeat(100));
    let flushed = false;
    const flush = destination.flush(2_000).then(() => (flushed = true));
    await clock.advance(1_999);
    expect(flushed).toBe(false);
    await clock.advance(1);
    await flush;
    expect(flushed).toBe(true);
  });
});

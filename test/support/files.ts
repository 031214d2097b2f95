/** Files for share tests and benchmarks: large random ones, hashed and read back in streams. */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";

/** The large file's size: big enough that buffering it whole would show in a process's peak memory. */
export const largeFileBytes = 200 * 1024 * 1024;

/** Writes `bytes` of random data in 1 MiB blocks, each block different. */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
  async function* blocks() {
    for (let written = 0; written < bytes; written += 1 << 20) yield randomBytes(Math.min(1 << 20, bytes - written));
  }
  await pipeline(blocks(), createWriteStream(path));
}

export async function readRange(path: string, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(path, { start, end })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}


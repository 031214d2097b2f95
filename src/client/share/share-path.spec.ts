import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEncodedPath, parsePlainPath, realShareRoot, resolveSharePath, safeFileNameOf, SharePathError, type SharePathProblem } from "./share-path.js";

function problemOf(run: () => unknown): SharePathProblem | "none" {
  try {
    run();
    return "none";
  } catch (error) {
    if (error instanceof SharePathError) return error.problem;
    throw error;
  }
}

describe("parseEncodedPath (the <path> of /content/<path> and /download/<path>)", () => {
  it.each([
    { encoded: "notes.txt", segments: ["notes.txt"] },
    { encoded: "photos/cat%20one.jpg", segments: ["photos", "cat one.jpg"] },
    { encoded: "a//b/", segments: ["a", "b"] },
    { encoded: "%C3%A9t%C3%A9.txt", segments: ["été.txt"] },
    { encoded: "..hidden/...", segments: ["..hidden", "..."] },
    { encoded: "", segments: [] },
  ])("should split $encoded into $segments", ({ encoded, segments }) => {
    expect(parseEncodedPath(encoded)).toEqual(segments);
  });

  it.each<{ encoded: string; problem: SharePathProblem }>([
    { encoded: "../etc/passwd", problem: "dot_segment" },
    { encoded: "a/../../etc/passwd", problem: "dot_segment" },
    { encoded: "%2e%2e/etc/passwd", problem: "dot_segment" },
    { encoded: "%2E%2E/%2E%2E/etc/passwd", problem: "dot_segment" },
    { encoded: "./notes.txt", problem: "dot_segment" },
    { encoded: "..%2fetc%2fpasswd", problem: "encoded_slash" },
    { encoded: "..%2Fetc", problem: "encoded_slash" },
    { encoded: "..%5c..%5cwindows", problem: "encoded_slash" },
    { encoded: "..\\..\\etc", problem: "backslash" },
    { encoded: "/etc/passwd", problem: "absolute" },
    { encoded: "notes.txt%00.jpg", problem: "nul" },
    { encoded: "notes.txt\0", problem: "nul" },
    { encoded: "%E0%A4%A", problem: "malformed" },
    { encoded: "%ff", problem: "malformed" },
    { encoded: "a/".repeat(3000), problem: "too_long" },
  ])("should refuse $encoded as $problem", ({ encoded, problem }) => {
    expect(problemOf(() => parseEncodedPath(encoded))).toBe(problem);
  });
});

describe("parsePlainPath (the path parameter of /api/files)", () => {
  it.each<{ path: string; problem: SharePathProblem | "none" }>([
    { path: "", problem: "none" },
    { path: "photos/2024", problem: "none" },
    { path: "..", problem: "dot_segment" },
    { path: "photos/../..", problem: "dot_segment" },
    { path: "/etc", problem: "absolute" },
    { path: "photos\0", problem: "nul" },
    { path: "..\\..", problem: "backslash" },
  ])("should answer $problem for $path", ({ path, problem }) => {
    expect(problemOf(() => parsePlainPath(path))).toBe(problem);
  });
});

describe("resolveSharePath", () => {
  let base: string;
  let root: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "share-path-"));
    await mkdir(join(base, "share", "sub"), { recursive: true });
    await writeFile(join(base, "share", "sub", "inside.txt"), "inside");
    await writeFile(join(base, "secret.txt"), "secret");
    await symlink(join(base, "secret.txt"), join(base, "share", "out-link"));
    await symlink(base, join(base, "share", "out-dir"));
    await symlink("sub/inside.txt", join(base, "share", "in-link"));
    root = await realShareRoot(join(base, "share"));
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it("should resolve a file and a symlink that stays inside", async () => {
    expect((await resolveSharePath(root, ["sub", "inside.txt"])).absolute).toBe(join(root, "sub", "inside.txt"));
    expect((await resolveSharePath(root, ["in-link"])).absolute).toBe(join(root, "sub", "inside.txt"));
    expect((await resolveSharePath(root, [])).stats.isDirectory()).toBe(true);
  });

  it.each<{ segments: string[]; problem: SharePathProblem }>([
    { segments: ["out-link"], problem: "outside" },
    { segments: ["out-dir", "secret.txt"], problem: "outside" },
    { segments: ["out-dir"], problem: "outside" },
    { segments: ["missing.txt"], problem: "not_found" },
    { segments: ["sub", "inside.txt", "below-a-file"], problem: "not_found" },
  ])("should refuse $segments as $problem", async ({ segments, problem }) => {
    const error = await resolveSharePath(root, segments).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SharePathError);
    expect((error as SharePathError).problem).toBe(problem);
  });
});

describe("safeFileNameOf", () => {
  it.each([
    { name: "notes.txt", safe: "notes.txt" },
    { name: 'evil"\r\nSet-Cookie: x.txt', safe: "evil___Set-Cookie_ x.txt" },
    { name: "..", safe: "download" },
    { name: "été.txt", safe: "été.txt" },
  ])("should turn $name into $safe", ({ name, safe }) => {
    expect(safeFileNameOf(name)).toBe(safe);
  });
});

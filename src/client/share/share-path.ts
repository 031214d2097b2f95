import { realpath, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import { join, sep } from "node:path";

/**
 * How a request path is turned into a file inside the shared directory, and every way it is
 * refused. The rules are syntactic first (no file system access for a path that is malformed or
 * tries to climb), then the file system's answer (a symlink whose target is outside the shared
 * directory is refused even though its name is inside).
 */

/** Why a path was refused; the `error` field of the share server's 4xx answers. */
export type SharePathProblem =
  /** A NUL byte, raw or as %00: C APIs would cut the path there. */
  | "nul"
  /** %2F or %5C: a slash the path splitter would not see. */
  | "encoded_slash"
  /** A raw backslash: a separator on Windows, never a file name character here. */
  | "backslash"
  /** A path starting with "/" (for /content/, a double slash): paths are relative to the share. */
  | "absolute"
  /** A "." or ".." segment, raw or percent-encoded. */
  | "dot_segment"
  /** Percent-encoding that does not decode to UTF-8. */
  | "malformed"
  /** Longer than {@link maxSharePathLength}. */
  | "too_long"
  /** The path's real location (after following symlinks) is outside the shared directory. */
  | "outside"
  /** Nothing there. */
  | "not_found";

/** A refused path, with the HTTP status the share server answers. */
export class SharePathError extends Error {
  override readonly name = "SharePathError";
  constructor(
    readonly problem: SharePathProblem,
    readonly status: 400 | 403 | 404 | 414,
    message: string,
  ) {
    super(message);
  }
}

/** Longest request path accepted, in characters: PATH_MAX on Linux. */
export const maxSharePathLength = 4096;

const messages: Record<Exclude<SharePathProblem, "not_found" | "outside">, [400 | 414, string]> = {
  nul: [400, "the path contains a NUL byte"],
  encoded_slash: [400, "the path contains an encoded slash (%2F or %5C)"],
  backslash: [400, "the path contains a backslash"],
  absolute: [400, "the path is absolute: give it relative to the shared directory"],
  dot_segment: [400, "the path contains a . or .. segment"],
  malformed: [400, "the path's percent-encoding is not valid UTF-8"],
  too_long: [414, `the path is longer than ${maxSharePathLength} characters`],
};

function refuse(problem: keyof typeof messages): never {
  const [status, message] = messages[problem];
  throw new SharePathError(problem, status, message);
}

/**
 * Splits a percent-encoded URL path (what follows `/content/` or `/download/`, query removed)
 * into decoded segments. Throws {@link SharePathError}. Empty segments ("a//b" inside the path)
 * are dropped; a leading slash is an absolute path and refused.
 */
export function parseEncodedPath(encoded: string): string[] {
  if (encoded.length > maxSharePathLength) refuse("too_long");
  if (encoded.includes("\0") || /%00/i.test(encoded)) refuse("nul");
  if (/%2f|%5c/i.test(encoded)) refuse("encoded_slash");
  return checkSegments(
    encoded,
    encoded.split("/").map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        return refuse("malformed");
      }
    }),
  );
}

/**
 * Splits an already decoded path (the `path` query parameter of /api/files) into segments.
 * Throws {@link SharePathError}. The empty string is the shared directory itself.
 */
export function parsePlainPath(path: string): string[] {
  if (path.length > maxSharePathLength) refuse("too_long");
  if (path.includes("\0")) refuse("nul");
  return checkSegments(path, path.split("/"));
}

function checkSegments(raw: string, segments: string[]): string[] {
  if (raw.includes("\\") || segments.some((segment) => segment.includes("\\"))) refuse("backslash");
  if (raw.startsWith("/")) refuse("absolute");
  if (segments.some((segment) => segment.includes("\0"))) refuse("nul");
  if (segments.some((segment) => segment === "." || segment === "..")) refuse("dot_segment");
  return segments.filter((segment) => segment !== "");
}

/** A path inside the share, resolved on disk. */
export interface ResolvedSharePath {
  /** Real absolute path (symlinks followed), inside the share's real root. */
  absolute: string;
  /** Slash-separated path relative to the share, as the request named it ("" for the root). */
  relative: string;
  stats: Stats;
}

/**
 * Resolves segments under `root`, which must already be a real path (see {@link realShareRoot}).
 * Symlinks are followed, and the result must still be inside root. Throws {@link SharePathError}
 * (`outside` 403, `not_found` 404).
 *
 * A file swapped for a symlink between this check and the read could still escape; only the
 * owner of the shared directory can do that, and they can read anything it could point at.
 */
export async function resolveSharePath(root: string, segments: readonly string[]): Promise<ResolvedSharePath> {
  const relative = segments.join("/");
  let absolute: string;
  try {
    absolute = await realpath(join(root, ...segments));
  } catch (error) {
    throw fileSystemError(error, relative);
  }
  if (!isInside(root, absolute)) throw new SharePathError("outside", 403, `${relative} leads outside the shared directory`);
  let stats: Stats;
  try {
    stats = await stat(absolute);
  } catch (error) {
    throw fileSystemError(error, relative);
  }
  return { absolute, relative, stats };
}

/** True when `path` is `root` or below it; both real, absolute paths. */
export function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The real path of the shared directory; throws when it is not a readable directory. */
export async function realShareRoot(directory: string): Promise<string> {
  const root = await realpath(directory);
  const stats = await stat(root);
  if (!stats.isDirectory()) throw new Error(`${directory} is not a directory`);
  return root;
}

/** The SharePathError a file system failure means, or the failure itself when it means none. */
function fileSystemError(error: unknown, relative: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  // ELOOP: a symlink cycle; EACCES: unreadable. Neither reveals more than "not here".
  if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP" || code === "EACCES" || code === "ENAMETOOLONG") {
    return new SharePathError("not_found", 404, `${relative || "/"} does not exist`);
  }
  return error;
}

/**
 * A file name safe to offer in Content-Disposition and to save under: control characters,
 * quotes and path separators become "_", and a name of only dots becomes "download".
 */
export function safeFileNameOf(name: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = name.replace(/[\u0000-\u001f\u007f"\\/:*?<>|]/g, "_").trim();
  return /^\.*$/.test(cleaned) ? "download" : cleaned.slice(0, 255);
}

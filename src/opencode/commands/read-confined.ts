import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, realpathSync, type Stats } from "node:fs";
import { sep } from "node:path";

export type ReadResult =
  | { kind: "ok"; data: Buffer }
  | { kind: "too-large"; size: number }
  | { kind: "not-regular"; what: string }
  | { kind: "outside" };

function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a named pipe (FIFO)";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

const inside = (root: string, p: string): boolean => p === root || p.startsWith(root + sep);

/**
 * Reads `real` (a path confinePath resolved inside `root`) if it is a regular file of at most
 * `limit` bytes. The checks are made on the opened descriptor, not on the name: the agent can
 * swap the file for a link, a FIFO or a huge file between the check and the read. O_NONBLOCK
 * keeps the open of a FIFO from waiting for a writer; O_NOFOLLOW refuses a last-moment link.
 */
export function readConfinedFile(root: string, real: string, limit: number): ReadResult {
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ELOOP: the name became a symbolic link after it was resolved.
    if (code === "ELOOP") return { kind: "not-regular", what: "a symbolic link" };
    if (code === "ENXIO") return { kind: "not-regular", what: "a socket" };
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: "not-regular", what: kindOf(st) };
    // A directory on the way may have been swapped for a link after confinePath: where the
    // descriptor really points decides (Linux names it under /proc; elsewhere the name's check stands).
    const opened = fdPath(fd);
    if (opened !== undefined && !inside(realpathSync(root), opened)) return { kind: "outside" };
    if (st.size > limit) return { kind: "too-large", size: st.size };
    // The file may still grow while it is read: never more than the limit, and one byte more to notice.
    const buf = Buffer.alloc(Math.min(st.size, limit) + 1);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got > limit) return { kind: "too-large", size: fstatSync(fd).size };
    return { kind: "ok", data: buf.subarray(0, got) };
  } finally {
    closeSync(fd);
  }
}

function fdPath(fd: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** "3.2 GB", "10 MB", "512 bytes": sizes for people, in units of 1024. */
export function formatSize(bytes: number): string {
  const units = ["KB", "MB", "GB", "TB"];
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? "" : "s"}`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = value >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${units[unit] ?? "TB"}`;
}

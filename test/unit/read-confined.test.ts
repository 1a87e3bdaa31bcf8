import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { confinePath } from "../../src/opencode/commands/file-commands.ts";
import { formatSize, readConfinedFile } from "../../src/opencode/commands/read-confined.ts";

// What `!oc file` may read: a regular file inside the project, up to a size, whatever the agent
// put at that name (a huge sparse file, a FIFO with no writer, a link to /dev/zero).

const tenMB = 10 * 1024 * 1024;

function workspace(): string {
  const root = realpathSync(mkdtempSync(join(tmpdir(), "read-confined-")));
  mkdirSync(join(root, "ws"));
  return root;
}

test("a small regular file is read whole", () => {
  const root = workspace();
  const ws = join(root, "ws");
  writeFileSync(join(ws, "a.txt"), "hello\n");
  const real = confinePath(ws, "a.txt");
  assert.ok(real);
  const res = readConfinedFile(ws, real, tenMB);
  assert.equal(res.kind, "ok");
  assert.equal(res.kind === "ok" ? res.data.toString("utf8") : "", "hello\n");
  rmSync(root, { recursive: true });
});

test("a file over the limit is refused with its size, without reading it", () => {
  const root = workspace();
  const ws = join(root, "ws");
  const fd = openSync(join(ws, "big.log"), "w");
  // Sparse: 3.2 GB on paper, nothing on disk; reading it would take the process down.
  ftruncateSync(fd, Math.round(3.2 * 1024 ** 3));
  closeSync(fd);
  const res = readConfinedFile(ws, join(ws, "big.log"), tenMB);
  assert.equal(res.kind, "too-large");
  assert.equal(res.kind === "too-large" ? formatSize(res.size) : "", "3.2 GB");
  assert.equal(formatSize(tenMB), "10 MB");
  writeFileSync(join(ws, "edge.bin"), Buffer.alloc(tenMB));
  assert.equal(readConfinedFile(ws, join(ws, "edge.bin"), tenMB).kind, "ok", "exactly the limit is allowed");
  rmSync(root, { recursive: true });
});

test("a FIFO, a directory and a device are refused at once (no waiting for a writer)", () => {
  const root = workspace();
  const ws = join(root, "ws");
  execFileSync("mkfifo", [join(ws, "pipe")]);
  assert.deepEqual(readConfinedFile(ws, join(ws, "pipe"), tenMB), { kind: "not-regular", what: "a named pipe (FIFO)" });
  mkdirSync(join(ws, "dir"));
  assert.deepEqual(readConfinedFile(ws, join(ws, "dir"), tenMB), { kind: "not-regular", what: "a directory" });
  // A device, had it got past confinePath (it does not: /dev is outside).
  assert.deepEqual(readConfinedFile("/dev", "/dev/zero", tenMB), { kind: "not-regular", what: "a character device" });
  symlinkSync("/dev/zero", join(ws, "zero"));
  assert.throws(() => confinePath(ws, "zero"), /`zero` leads outside the workspace/);
  rmSync(root, { recursive: true });
});

test("a name swapped for a link after it was resolved is not followed", () => {
  const root = workspace();
  const ws = join(root, "ws");
  writeFileSync(join(root, "secret.txt"), "outside\n");
  writeFileSync(join(ws, "f.txt"), "inside\n");
  const real = confinePath(ws, "f.txt");
  assert.ok(real);
  // The agent replaces the file by a link between the check and the read.
  rmSync(real);
  symlinkSync(join(root, "secret.txt"), real);
  assert.deepEqual(readConfinedFile(ws, real, tenMB), { kind: "not-regular", what: "a symbolic link" });

  // A directory on the way swapped for a link to outside: the opened file is outside the root.
  mkdirSync(join(ws, "sub"));
  writeFileSync(join(ws, "sub", "secret.txt"), "inside too\n");
  const viaDir = confinePath(ws, "sub/secret.txt");
  assert.ok(viaDir);
  rmSync(join(ws, "sub"), { recursive: true });
  symlinkSync(root, join(ws, "sub"));
  assert.deepEqual(readConfinedFile(ws, viaDir, tenMB), { kind: "outside" });
  rmSync(root, { recursive: true });
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { serverSpecs } from "../../src/opencode/index.ts";

// opencode.servers: more OpenCode servers by name, beside the top-level one (`default`).

const dir = mkdtempSync(join(tmpdir(), "servers-config-"));
const base = "matrix: { homeserverUrl: 'http://h', accessToken: 't' }\naccess: { allowedUsers: ['@a:x'] }\n";
const load = (opencode: string) => {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `${base}opencode:\n${opencode}`);
  return loadConfig({ file, env: {} });
};

test("without opencode.servers there is one server, `default`, from today's settings", () => {
  const c = load("  serverUrl: http://127.0.0.1:4096\n  password: pw\n");
  assert.equal(c.opencode.servers, undefined);
  const { specs, roomDefault } = serverSpecs(c.opencode);
  assert.equal(roomDefault, "default");
  assert.deepEqual(specs, [
    { name: "default", url: "http://127.0.0.1:4096", username: undefined, password: "pw", workspaceDir: resolve("./workspace"), projectRoots: [resolve("./workspace")], primary: true, named: false },
  ]);
});

test("named servers come after `default`, with their auth, roots and workspace; one may be the rooms' default", () => {
  const c = load(
    "  servers:\n" +
      "    gpu-box: { url: 'https://gpu.example.org', username: u, password: p, projectRoots: [/srv/a, /srv/b], default: true }\n" +
      "    small: { url: 'http://10.0.0.5:4096', workspaceDir: /home/oc/ws }\n",
  );
  const { specs, roomDefault } = serverSpecs(c.opencode);
  assert.equal(roomDefault, "gpu-box");
  assert.deepEqual(specs.map((s) => [s.name, s.url, s.workspaceDir, s.projectRoots, s.primary, s.named]), [
    ["default", undefined, resolve("./workspace"), [resolve("./workspace")], true, true],
    ["gpu-box", "https://gpu.example.org", "/srv/a", ["/srv/a", "/srv/b"], false, true],
    ["small", "http://10.0.0.5:4096", "/home/oc/ws", ["/home/oc/ws"], false, true],
  ]);
  assert.equal(specs[1]?.username, "u");
  assert.equal(specs[1]?.password, "p");
});

test("bad servers are refused, naming the key", () => {
  assert.throws(() => load("  servers:\n    default: { url: 'http://x:1' }\n"), /opencode\.servers\.default: "default" is the server of opencode\.serverUrl/);
  assert.throws(() => load("  servers:\n    a: { url: 'http://x:1', default: true }\n    b: { url: 'http://y:1', default: true }\n"), /only one server may be the rooms' default; a, b/);
  assert.throws(() => load("  servers:\n    a: { url: 'http://x:1', projectRoots: [relative/dir] }\n"), /opencode\.servers\.a\.projectRoots\.0: must be an absolute path/);
  assert.throws(() => load("  servers:\n    Big: { url: 'http://x:1' }\n"), /must be a short lower-case name/);
  assert.throws(() => load("  servers:\n    a: { url: 'ftp://x' }\n"), /opencode\.servers\.a\.url/);
  assert.throws(() => load("  servers:\n    a: { url: 'http://x:1', typo: 1 }\n"), /typo/);
});

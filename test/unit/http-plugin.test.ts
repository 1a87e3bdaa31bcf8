import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// The OpenCode plugin (.opencode/plugin/matrix-notify.js) fed the event shapes OpenCode 1.18
// gives its `event` hook, posting to a recording server. The e2e test runs it inside OpenCode.

type Hooks = { event?: (arg: { event: { type: string; properties: Record<string, unknown> } }) => Promise<void> };
type PluginFn = (ctx: { directory: string }) => Promise<Hooks>;

const pluginPath = join(dirname(fileURLToPath(import.meta.url)), "..", "..", ".opencode", "plugin", "matrix-notify.js");
let plugin: PluginFn;
let server: Server;
let url = "";
const posts: Array<{ auth: string | undefined; body: Record<string, unknown> }> = [];

before(async () => {
  const mod = (await import(pathToFileURL(pluginPath).href)) as Record<string, unknown>;
  assert.deepEqual(Object.keys(mod), ["MatrixNotify"], "one export: OpenCode calls every exported function as a plugin");
  plugin = mod.MatrixNotify as PluginFn;
  server = createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => (text += c.toString("utf8")));
    req.on("end", () => {
      posts.push({ auth: req.headers.authorization, body: JSON.parse(text) as Record<string, unknown> });
      res.writeHead(200, { "content-type": "application/json" }).end('{"posted":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/notify`;
});
after(() => {
  server.close();
  delete process.env.MATRIX_NOTIFY_URL;
  delete process.env.MATRIX_NOTIFY_TOKEN;
});

const until = async (check: () => boolean, what: string): Promise<void> => {
  const end = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; posts: ${JSON.stringify(posts)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const ev = (type: string, properties: Record<string, unknown>) => ({ event: { type, properties } });

test("without MATRIX_NOTIFY_URL the plugin does nothing", async () => {
  delete process.env.MATRIX_NOTIFY_URL;
  assert.deepEqual(await plugin({ directory: "/w" }), {});
});

test("idle, error, permission and edits become notifications with the session id", async () => {
  process.env.MATRIX_NOTIFY_URL = url;
  process.env.MATRIX_NOTIFY_TOKEN = "plugin-test-token-0123456789";
  const hooks = await plugin({ directory: "/w" });
  const event = hooks.event;
  assert.ok(event, "an event hook");
  posts.length = 0;
  await event(ev("session.created", { sessionID: "ses_1", info: { id: "ses_1", title: "Fix the build" } }));
  await event(ev("session.status", { sessionID: "ses_1", status: { type: "busy" } }));
  await event(ev("file.edited", { file: "/w/src/a.py" }));
  await event(ev("file.edited", { file: "/w/src/b.py" }));
  await event(ev("permission.asked", { id: "per_1", sessionID: "ses_1", permission: "bash", patterns: ["rm -rf build"] }));
  await event(ev("session.error", { sessionID: "ses_1", error: { name: "MessageAbortedError", data: { message: "aborted" } } }));
  await event(ev("session.error", { sessionID: "ses_1", error: { name: "APIError", data: { message: "Bad Request" } } }));
  await event(ev("session.status", { sessionID: "ses_1", status: { type: "idle" } }));
  await event(ev("session.idle", { sessionID: "ses_1" }));
  await event(ev("message.part.delta", { sessionID: "ses_1", delta: "x" }));
  await until(() => posts.length >= 4, "four posts");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(posts.length, 4, "an abort is not news; other events are not posted");
  assert.ok(posts.every((p) => p.auth === "Bearer plugin-test-token-0123456789"));
  const byStatus = Object.fromEntries(posts.map((p) => [p.body.status, p.body]));
  assert.deepEqual(byStatus.permission, {
    title: "OpenCode asks for permission",
    message: 'bash: rm -rf build (session "Fix the build") in /w',
    status: "permission",
    sessionId: "ses_1",
    taskId: "ses_1",
  });
  assert.equal(byStatus.error?.message, 'APIError: Bad Request (session "Fix the build") in /w');
  assert.deepEqual(byStatus.file_edit, {
    title: "2 files edited",
    message: 'src/a.py, src/b.py (session "Fix the build") in /w',
    status: "file_edit",
    sessionId: "ses_1",
    taskId: "ses_1",
  });
  assert.deepEqual(byStatus.completed, {
    title: "OpenCode session completed",
    message: 'Session "Fix the build" completed in /w',
    status: "completed",
    sessionId: "ses_1",
    taskId: "ses_1",
  });
  assert.ok(posts.findIndex((p) => p.body.status === "file_edit") < posts.findIndex((p) => p.body.status === "completed"), "edits are told before the completion");
});

test("a subagent's session finishing is not posted", async () => {
  const hooks = await plugin({ directory: "/w" });
  posts.length = 0;
  await hooks.event?.(ev("session.created", { sessionID: "ses_child", info: { id: "ses_child", title: "sub", parentID: "ses_1" } }));
  await hooks.event?.(ev("session.idle", { sessionID: "ses_child" }));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(posts.length, 0);
});

test("an unreachable bot never breaks or holds up OpenCode", async () => {
  process.env.MATRIX_NOTIFY_URL = "http://127.0.0.1:9/notify";
  const hooks = await plugin({ directory: "/w" });
  const t0 = performance.now();
  await hooks.event?.(ev("session.idle", { sessionID: "ses_2" }));
  await hooks.event?.({ event: null as unknown as { type: string; properties: Record<string, unknown> } });
  assert.ok(performance.now() - t0 < 100, "the hook returns at once");
  process.env.MATRIX_NOTIFY_URL = url;
});

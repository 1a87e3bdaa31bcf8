import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { freePort } from "../harness/net.ts";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { loadStackInfo, repoDir } from "../harness/stack.ts";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { TestEnv, waitForFinalReply } from "./env.ts";

// The notify plugin inside a real OpenCode server: a second server just for this file, with
// .opencode/plugin/matrix-notify.js in its config plugin directory, posting to the bot's
// POST /notify. The bot drives the same server, as in a deployment: sessions started outside
// Matrix are announced in the default room, sessions with a thread get no duplicate news.

const token = `notify-e2e-${randomBytes(12).toString("hex")}`;
let env: TestEnv;
let oc: TestOpencode;
let workspaceDir = "";
let client: OpencodeClient;

before(async () => {
  const stack = loadStackInfo();
  const dir = mkdtempSync(join(stack.workDir, "notify-opencode-"));
  workspaceDir = join(dir, "workspace");
  const stateDir = join(dir, "state");
  // OpenCode 1.18 loads {plugin,plugins}/*.{js,ts} from its global config dir ($XDG_CONFIG_HOME/opencode)
  // and from .opencode/ of the project; the global one keeps the workspace clean.
  const pluginDir = join(stateDir, ".config", "opencode", "plugin");
  mkdirSync(pluginDir, { recursive: true });
  copyFileSync(join(repoDir, ".opencode", "plugin", "matrix-notify.js"), join(pluginDir, "matrix-notify.js"));
  // The plugin needs the bot's URL before the bot exists: pick the bot's port now.
  const botPort = await freePort();
  oc = await startTestOpencode({
    workspaceDir,
    stateDir,
    modelBaseUrl: stack.model.baseUrl,
    env: { MATRIX_NOTIFY_URL: `http://127.0.0.1:${botPort}/notify`, MATRIX_NOTIFY_TOKEN: token },
  });
  env = await TestEnv.create({
    name: "notify",
    botEnv: { OPENCODE_SERVER_URL: oc.url, OPENCODE_WORKSPACE_DIR: workspaceDir, BOT_HTTP_PORT: String(botPort), BOT_NOTIFY_TOKEN: token },
    botEnvForRoom: (roomId) => ({ BOT_NOTIFY_ROOM: roomId }),
  });
  client = createOpencodeClient({ baseUrl: oc.url, directory: workspaceDir });
});
after(async () => {
  await env?.close();
  await oc?.stop();
});

const isTopLevel = (e: MatrixEvent): boolean => e.content["m.relates_to"] === undefined;

/** The bot's top-level notice in the test room whose body matches. */
function waitForNotice(match: RegExp, description: string, timeoutMs = 30_000): Promise<MatrixEvent> {
  return env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    type: "m.room.message",
    match: (e) => e.content.msgtype === "m.notice" && isTopLevel(e) && match.test(String(e.content.body)),
    description,
    timeoutMs,
  });
}

async function outsideSession(title: string): Promise<string> {
  const res = await client.session.create({ title });
  assert.ok(res.data, `session created: ${JSON.stringify(res.error)}`);
  return res.data.id;
}

describe("notifications from the OpenCode plugin", () => {
  test("a session started outside Matrix is announced in the default room when it completes", async (t) => {
    const sessionId = await outsideSession("started in the terminal");
    const t0 = performance.now();
    const res = await client.session.prompt({ sessionID: sessionId, parts: [{ type: "text", text: "Echo from the terminal" }] });
    assert.equal(res.error, undefined);
    const notice = await waitForNotice(new RegExp(`completed[\\s\\S]*${sessionId}`), `the completion notice of ${sessionId}`);
    t.diagnostic(`notice seen ${(performance.now() - t0).toFixed(0)} ms after the prompt was sent`);
    assert.equal(
      notice.content.body,
      `🔔 From OpenCode (notify): ✅ **OpenCode session completed** — Session "started in the terminal" completed in ${workspaceDir}\n\nsession \`${sessionId}\``,
    );
    assert.deepEqual(notice.content["m.mentions"], { user_ids: [] }, "a notice pings nobody");
    assert.match(String(notice.content.formatted_body), /<strong>OpenCode session completed<\/strong>/);
  });

  test("file edits, permission requests and failures of an outside session are announced too", async () => {
    const sessionId = await outsideSession("outside edits");
    await client.session.prompt({ sessionID: sessionId, parts: [{ type: "text", text: "Create hello.py that prints hello" }] });
    const edit = await waitForNotice(new RegExp(`File edited[\\s\\S]*hello\\.py[\\s\\S]*${sessionId}`), "the file edit notice");
    assert.match(String(edit.content.body), /^🔔 From OpenCode \(notify\): ✏️ \*\*File edited\*\* — hello\.py \(session "outside edits"\) in /);

    // bash asks for permission on this server; the notice comes while OpenCode waits for an answer.
    await client.session.promptAsync({ sessionID: sessionId, parts: [{ type: "text", text: "run bash" }] });
    const ask = await waitForNotice(new RegExp(`asks for permission[\\s\\S]*${sessionId}`), "the permission notice");
    assert.match(String(ask.content.body), /^🔔 From OpenCode \(notify\): 🔐 \*\*OpenCode asks for permission\*\* — bash: echo hi \(session "outside edits"\)/);
    const pending = (await client.permission.list()).data ?? [];
    const request = pending.find((p) => p.sessionID === sessionId);
    assert.ok(request, "the permission request is pending");
    await client.permission.reply({ requestID: request.id, reply: "reject" });

    const failing = await outsideSession("outside failure");
    await client.session.prompt({ sessionID: failing, parts: [{ type: "text", text: "fail 400" }] });
    const failed = await waitForNotice(new RegExp(`failed[\\s\\S]*${failing}`), "the failure notice");
    assert.match(String(failed.content.body), /^🔔 From OpenCode \(notify\): ⚠️ \*\*OpenCode session failed\*\* — \w+/);
  });

  test("a session the bot streams into a thread gets no duplicate notice", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc Echo inside a thread");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
    assert.match(sessionId, /^ses_/);
    // The plugin still posts the session's completion; the bot answers that it already showed it.
    const skipped = await env.bot.waitForLog((l) => l.msg === "notification skipped" && l.sessionId === sessionId && l.status === "completed", 20_000);
    t.diagnostic(`skipped: ${String(skipped.reason)}`);
    assert.match(String(skipped.reason), /streaming session|has just posted the reply/);
    await new Promise((r) => setTimeout(r, 500));
    const botEvents = (await env.botReplies(root)).filter((e) => (e.content["m.relates_to"] as { rel_type?: string }).rel_type === "m.thread");
    // The reply, and the turn's one push to who asked (the engine's); no notice of the plugin's.
    const pushes = botEvents.filter((e) => e.content.msgtype === "m.text" && String(e.content.body).startsWith("✅"));
    assert.equal(pushes.length, 1, "one push to who asked");
    assert.deepEqual(botEvents.filter((e) => !pushes.includes(e)).map((e) => e.event_id), [reply.replyId], "only the reply itself in the thread, besides the push");
    const notices = alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && isTopLevel(e) && String(e.content.body).includes(sessionId));
    assert.deepEqual(notices, [], "nothing about it in the default room either");
  });

  test("a notification about a session with a thread goes into that thread", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc Echo deploy me");
    await waitForFinalReply(env, root, root, sentAt);
    const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
    const res = await fetch(`http://127.0.0.1:${env.bot.httpPort}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ title: "Deployed", message: "version 1.2 is live", status: "deploy", sessionId }),
    });
    const body = (await res.json()) as { posted: boolean; eventId: string; roomId: string; threadRoot: string };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.posted, true);
    assert.equal(body.threadRoot, root);
    const seen = await alice.waitForRoomEvent({ roomId: env.roomId, match: (e) => e.event_id === body.eventId, description: "the notice in the thread" });
    const rel = seen.content["m.relates_to"] as { rel_type: string; event_id: string };
    assert.deepEqual([rel.rel_type, rel.event_id], ["m.thread", root]);
    assert.equal(seen.content.msgtype, "m.notice");
    assert.equal(seen.content.body, "🔔 From OpenCode (notify): **Deployed** — version 1.2 is live");
  });

  test("what the agent writes into a notification names its origin and pings nobody: not @room, not a pill", async () => {
    const { alice, bob } = env.users;
    const res = await fetch(`http://127.0.0.1:${env.bot.httpPort}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        title: "Approved by the admins",
        message: `@room please review now, <a href="https://matrix.to/#/${bob.userId}">${bob.userId}</a> and [Alice](https://matrix.to/#/${alice.userId})`,
        status: "review",
      }),
    });
    const body = (await res.json()) as { eventId: string };
    assert.equal(res.status, 200, JSON.stringify(body));
    const seen = await alice.waitForRoomEvent({ roomId: env.roomId, match: (e) => e.event_id === body.eventId, description: "the agent-written notice" });
    const text = String(seen.content.body);
    const html = String(seen.content.formatted_body);
    assert.ok(text.startsWith("🔔 From OpenCode (notify): **Approved by the admins** — "), `alice reads where it comes from: ${text}`);
    assert.ok(html.startsWith("<p>🔔 From OpenCode (notify): <strong>Approved by the admins</strong>"), html);
    assert.equal(seen.content.msgtype, "m.notice");
    assert.deepEqual(seen.content["m.mentions"], { user_ids: [] }, "no user and no room mention");
    assert.doesNotMatch(text, /@room/, "the body holds no @room keyword");
    assert.doesNotMatch(html, /@room/);
    assert.doesNotMatch(html, /<a\b/, "no link left to show as a pill");
    assert.ok(html.includes(`<span>${bob.userId}</span>`) && html.includes("<span>Alice</span>"), `the names stay as plain text: ${html}`);
  });

  test("the notify token never appears in the bot's log", () => {
    assert.ok(env.bot.text.includes("notification posted"));
    assert.ok(!env.bot.text.includes(token));
  });
});

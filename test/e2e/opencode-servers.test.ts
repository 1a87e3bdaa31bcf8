import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter } from "./env.ts";

// Several OpenCode servers (opencode.servers): the shared one as `default` and a second real
// `opencode serve` as `second`, with a model of its own name. A room bound to each; each room's
// prompts reach its own server; a thread stays on its server when the room moves; killing one
// server tells only its threads, and the other room goes on.

const rel = (e: MatrixEvent): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] ?? {}) as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };

describe("two OpenCode servers", () => {
  let env: TestEnv;
  let second: TestOpencode;
  let wsB: string;
  let roomB: string;
  let threadB: string;
  const stack = loadStackInfo();

  /** The final text of the bot's reply to `promptId` in `roomId` (footer included). */
  async function finalReply(roomId: string, root: string, promptId: string, timeoutMs = 60_000): Promise<string> {
    const alice = env.users.alice;
    const first = await alice.waitForRoomEvent({
      roomId, sender: env.botUserId, type: "m.room.message", timeoutMs,
      match: (e) => rel(e).rel_type === "m.thread" && rel(e).event_id === root && rel(e)["m.in_reply_to"]?.event_id === promptId,
      description: `the reply to ${promptId}`,
    });
    const body = (e: MatrixEvent): string | undefined =>
      e.event_id === first.event_id ? String(e.content.body) : rel(e).rel_type === "m.replace" && rel(e).event_id === first.event_id ? String((e.content["m.new_content"] as { body: string }).body) : undefined;
    await alice.waitForRoomEvent({ roomId, sender: env.botUserId, timeoutMs, match: (e) => /\n— \S.*$/.test(body(e) ?? ""), description: `the final version of ${first.event_id}` });
    return (await alice.latestBody(roomId, first.event_id)).body;
  }

  /** A command's answer in `roomId`. */
  async function ask(roomId: string, text: string, threadRoot?: string): Promise<string> {
    const id = await env.users.alice.sendText(roomId, text, threadRoot ? { threadRoot } : {});
    const answer = await env.users.alice.waitForRoomEvent({
      roomId, sender: env.botUserId, type: "m.room.message",
      match: (e) => rel(e)["m.in_reply_to"]?.event_id === id && rel(e).rel_type !== "m.replace",
      description: `the answer to ${text}`,
    });
    return String(answer.content.body);
  }

  const threadRow = (root: string): { server: string | null; session_id: string } | undefined =>
    env.query<{ server: string | null; session_id: string }>("SELECT server, session_id FROM threads WHERE root_event_id = ?", root)[0];
  const userPrompts = async (baseUrl: string, directory: string, sessionId: string): Promise<number> =>
    ((await createOpencodeClient({ baseUrl, directory }).session.messages({ sessionID: sessionId })).data ?? []).filter((m) => m.info.role === "user").length;
  const health = async (): Promise<{ status: number; body: { ok: boolean; opencode: Array<{ server: string; ok: boolean; url: string }> } }> => {
    const res = await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`);
    return { status: res.status, body: (await res.json()) as { ok: boolean; opencode: Array<{ server: string; ok: boolean; url: string }> } };
  };

  before(async () => {
    wsB = mkdtempSync(join(stack.workDir, "ws-second-"));
    second = await startTestOpencode({
      workspaceDir: wsB,
      stateDir: mkdtempSync(join(stack.workDir, "oc-second-")),
      modelBaseUrl: stack.model.baseUrl,
      // Its own model name: the scripted model records which server's model each request was for.
      extraConfig: { model: "fake/second-model", provider: { fake: { models: { "second-model": { name: "Second Model", tool_call: true, limit: { context: 128000, output: 4096 } } } } } },
    });
    const dir = mkdtempSync(join(stack.workDir, "servers-config-"));
    const configFile = join(dir, "config.yaml");
    writeFileSync(configFile, `opencode:\n  servers:\n    second:\n      url: ${second.url}\n      projectRoots: [${wsB}]\n`);
    env = await TestEnv.create({
      name: "servers",
      editWindowMs: 300,
      botEnv: { BOT_CONFIG: configFile, OPENCODE_SERVER_RETRY_DELAY_MS: "500", OPENCODE_SERVER_MAX_RETRIES: "2", OPENCODE_SERVER_HEALTH_CHECK_INTERVAL_MS: "2000" },
    });
    const { alice } = env.users;
    roomB = await alice.createRoom({ name: "room on the second server", invite: [env.botUserId] });
    await alice.waitForRoomEvent({ roomId: roomB, type: "m.room.member", match: (e) => e.state_key === env.botUserId && e.content.membership === "join", description: "the bot joining room B", timeoutMs: 30_000 });
  });
  after(async () => {
    await env?.close();
    await second?.stop();
  });

  test("`!oc server <name>` binds a room; each room's prompt reaches its own server's session and model", async () => {
    assert.match(await ask(roomB, "!oc server"), /start on the OpenCode server `default`.*the rooms' default/s);
    const bound = await ask(roomB, "!oc server second");
    assert.match(bound, /^🔀 New sessions in this room now start on the OpenCode server `second` \(http:\/\/127\.0\.0\.1:\d+, ✅ connected\)/);
    assert.match(await ask(roomB, "!oc server nowhere"), /There is no OpenCode server `nowhere`; the servers are `default`, `second`/);

    const { alice } = env.users;
    const rootA = await alice.sendText(env.roomId, "!oc hello from room A");
    threadB = await alice.sendText(roomB, "!oc hello from room B");
    const [a, b] = await Promise.all([finalReply(env.roomId, rootA, rootA), finalReply(roomB, threadB, threadB)]);
    assert.equal(splitFooter(a).text, "Echo: hello from room A");
    assert.equal(splitFooter(b).text, "Echo: hello from room B");
    assert.match(splitFooter(b).footer, /second-model/, "room B's answer came from the second server's model");
    assert.doesNotMatch(splitFooter(a).footer, /second-model/);

    const rowA = threadRow(rootA);
    const rowB = threadRow(threadB);
    assert.equal(rowA?.server, null, "room A's thread is on `default`");
    assert.equal(rowB?.server, "second");
    assert.equal(await userPrompts(stack.opencode.url, stack.workspaceDir, rowA?.session_id ?? ""), 1);
    assert.equal(await userPrompts(second.url, wsB, rowB?.session_id ?? ""), 1, "room B's session lives on the second server");
    const onDefault = await createOpencodeClient({ baseUrl: stack.opencode.url, directory: stack.workspaceDir }).session.get({ sessionID: rowB?.session_id ?? "" });
    assert.equal(onDefault.data, undefined, "and not on the first");
    const models = (await env.modelRequests()) as Array<{ kind: string; lastUserText: string; model?: string }>;
    assert.ok(models.some((r) => r.kind === "chat" && r.lastUserText.includes("hello from room B") && r.model === "second-model"));
    assert.ok(models.some((r) => r.kind === "chat" && r.lastUserText.includes("hello from room A") && r.model === "fake-model"));
  });

  test("`!oc servers` lists both with their health; /health and /metrics show each server", async () => {
    const list = await ask(env.roomId, "!oc servers");
    assert.match(list, /\*\*OpenCode servers\*\* \(2\)/);
    assert.match(list, /\*\*default\*\* \(this room, rooms' default\) — ✅ connected/);
    assert.match(list, /\*\*second\*\* — ✅ connected\n {2}http:\/\/127\.0\.0\.1:\d+ · version \d[^ ]* · 1 session · 0 turns running/);
    assert.match(await ask(roomB, "!oc sessions"), /on `second`/);

    const h = await health();
    assert.equal(h.status, 200);
    assert.deepEqual(h.body.opencode.map((s) => [s.server, s.ok]), [["default", true], ["second", true]]);
    assert.equal(h.body.opencode[1]?.url, second.url);
    const metrics = await (await fetch(`http://127.0.0.1:${env.bot.httpPort}/metrics`)).text();
    assert.match(metrics, /^bot_opencode_up\{server="second"\} 1$/m);
    assert.match(metrics, /^bot_opencode_reconnects_total\{server="default"\} \d+$/m);
  });

  test("a thread keeps its server after the room moves; the room's new sessions start on the new one", async () => {
    const moved = await ask(roomB, "!oc server default");
    assert.match(moved, /now start on the OpenCode server `default`/);
    assert.match(moved, /existing thread stays on its server/);
    const { alice } = env.users;
    const follow = await alice.sendText(roomB, "still on the second server?", { threadRoot: threadB });
    assert.equal(splitFooter(await finalReply(roomB, threadB, follow)).text, "Echo: still on the second server?");
    assert.equal(await userPrompts(second.url, wsB, threadRow(threadB)?.session_id ?? ""), 2, "the follow-up went to the thread's own server");
    const fresh = await alice.sendText(roomB, "!oc a new session after the move");
    assert.equal(splitFooter(await finalReply(roomB, fresh, fresh)).text, "Echo: a new session after the move");
    assert.equal(threadRow(fresh)?.server, null, "the new thread is on `default`");
    assert.match(await ask(roomB, "!oc server second"), /now start on the OpenCode server `second`/);
  });

  test("killing one server tells only its threads; the other room keeps working; it comes back", async () => {
    const { alice } = env.users;
    const slow = await alice.sendText(roomB, "!oc slow work on the second server");
    await alice.waitForRoomEvent({
      roomId: roomB, sender: env.botUserId,
      match: (e) => rel(e).rel_type === "m.replace" && String((e.content["m.new_content"] as { body?: string }).body).includes("slow3"),
      description: "the slow reply streaming",
    });
    const killedAt = Date.now();
    second.kill("SIGKILL");
    const lost = await alice.waitForRoomEvent({
      roomId: roomB, sender: env.botUserId, type: "m.room.message", timeoutMs: 30_000,
      match: (e) => String(e.content.body).startsWith("⚠️ Lost the connection to the OpenCode server `second`"),
      description: "the outage notice in room B",
    });
    assert.equal(rel(lost).event_id, slow, "told in the thread of the turn");

    // Room A goes on as if nothing happened, and hears nothing of it.
    const rootA = await alice.sendText(env.roomId, "!oc are you still there");
    assert.equal(splitFooter(await finalReply(env.roomId, rootA, rootA)).text, "Echo: are you still there");
    const toldA = alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && e.receivedAt >= killedAt && /Lost the connection/.test(String(e.content.body)));
    assert.deepEqual(toldA, [], "room A is not told about the second server");

    assert.match(await ask(env.roomId, "!oc servers"), /\*\*second\*\* — ❌ not reachable/);
    const h = await health();
    assert.equal(h.status, 503);
    assert.deepEqual(h.body.opencode.map((s) => [s.server, s.ok]), [["default", true], ["second", false]]);
    const refused = await ask(roomB, "!oc a prompt while it is down");
    assert.match(refused, /^⚠️ Could not start a opencode session: OpenCode `second` \(http:\/\/127\.0\.0\.1:\d+, not reachable now: .*\) could not create a session/);

    await second.restart();
    await alice.waitForRoomEvent({
      roomId: roomB, sender: env.botUserId, type: "m.room.message", timeoutMs: 60_000,
      match: (e) => String(e.content.body) === "✅ Reconnected to the OpenCode server `second`.",
      description: "the reconnect notice in room B",
    });
    // The turn cut off by the outage is finished from the second server's own record once it is back.
    assert.match(splitFooter(await finalReply(roomB, slow, slow)).text, /^slow1 slow2 slow3[\s\S]*stopped before it was complete/);
    const after = await alice.sendText(roomB, "!oc back on the second server");
    assert.equal(splitFooter(await finalReply(roomB, after, after)).text, "Echo: back on the second server");
    assert.equal(threadRow(after)?.server, "second");
  });

  test("`!oc project` and `!oc file` in a room on another server ask that server, inside its project roots", async () => {
    mkdirSync(join(wsB, "sub"), { recursive: true });
    writeFileSync(join(wsB, "sub", "note.txt"), "a note on the second server\n");
    assert.equal(await ask(roomB, "!oc project sub"), `New sessions in this room work in \`${join(wsB, "sub")}\` on the OpenCode server \`second\`.`);
    assert.match(await ask(roomB, "!oc project ../.."), /^⛔ `\.\.\/\.\.` is outside the allowed project roots/);
    assert.equal(await ask(roomB, "!oc project nowhere-here"), "No directory `nowhere-here` on the OpenCode server `second`.");
    assert.match(await ask(roomB, "!oc file note.txt"), /^`note\.txt`\n\n```txt\na note on the second server\n```$/);
    assert.match(await ask(roomB, "!oc file ../../etc/passwd"), /^⛔ Refused: .* is outside the workspace/);
    assert.equal(await ask(roomB, "!oc file missing.txt"), "No file `missing.txt` in the workspace on the OpenCode server `second`.");
  });
});

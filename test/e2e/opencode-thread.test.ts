import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The foundation scenario: a prompt becomes a session in a thread, follow-ups reuse it, a
// restart keeps the mapping, strangers get nowhere, and mistakes get a helpful answer.

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "thread", editWindowMs: 500 });
});
after(async () => {
  await env?.close();
});

interface ThreadRowDb {
  room_id: string;
  root_event_id: string;
  backend: string;
  session_id: string;
  started_by: string;
}

async function sessionUserMessages(sessionId: string): Promise<string[]> {
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

describe("an OpenCode session in a thread", () => {
  let root = "";
  let sessionId = "";

  test("a prompt starts a session and the answer streams into one reply in a thread on it", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    root = await alice.sendText(env.roomId, "!oc Create hello.py that prints hello");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    t.diagnostic(`first reply after ${reply.firstSeenAfterMs.toFixed(0)} ms, final after ${reply.finalSeenAfterMs.toFixed(0)} ms, ${reply.editCount} edits`);

    const { text, footer } = splitFooter(reply.body);
    assert.equal(text, "✏️ write hello.py ✓\n\nCreated hello.py.");
    assert.match(footer, /^— fake\/fake-model · [\d,]+ tokens · \d+\.\ds( · changed hello\.py)?$/);
    assert.ok(reply.editCount >= 1, "the reply grew by edits");

    const replies = await env.botReplies(root);
    // The live reply (m.notice); the one push to who asked (an m.text) may come on top of it.
    assert.equal(replies.filter((e) => !(e.content["m.relates_to"] as { rel_type?: string }).rel_type?.includes("replace") && e.content.msgtype === "m.notice").length, 1, "one reply, not a flood");
    assert.equal(replies[0]?.content.msgtype, "m.notice");
    assert.match((await alice.latestBody(env.roomId, reply.replyId)).formattedBody ?? "", /<p>Created hello\.py\.<\/p>/);

    const file = join(env.stack.workspaceDir, "hello.py");
    assert.ok(existsSync(file), "hello.py exists in the workspace");
    assert.equal(readFileSync(file, "utf8"), 'print("hello")\n');

    const rows = env.query<ThreadRowDb>("SELECT * FROM threads");
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.root_event_id, root);
    assert.equal(rows[0]?.backend, "opencode");
    assert.equal(rows[0]?.started_by, alice.userId);
    assert.match(rows[0]?.session_id ?? "", /^ses_/);
    sessionId = rows[0]?.session_id ?? "";
    const turns = env.query<{ status: string; reply_event_id: string }>("SELECT status, reply_event_id FROM turns");
    assert.deepEqual(turns, [{ status: "done", reply_event_id: reply.replyId }]);
  });

  test("a follow-up in the thread, with no prefix, goes to the same session", async () => {
    const { bob } = env.users;
    const sentAt = performance.now();
    const followUp = await bob.sendText(env.roomId, "What is in the file?", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, followUp, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: What is in the file?");
    const prompts = await sessionUserMessages(sessionId);
    assert.equal(prompts.length, 2);
    assert.match(prompts[0] ?? "", /^\[alice-thread-\w+\] Create hello\.py that prints hello$/);
    assert.match(prompts[1] ?? "", /^\[bob-thread-\w+\] What is in the file\?$/, "each prompt is attributed to who wrote it");
    assert.equal(env.query("SELECT * FROM threads").length, 1);
  });

  test("streamed edits end in the exact final text", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const prompt = await alice.sendText(env.roomId, "tell me something slow", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    const expected = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
    assert.equal(splitFooter(reply.body).text, expected);
    // 40 tokens at 100 ms with a 500 ms window: several edits, far fewer than tokens.
    assert.ok(reply.editCount >= 3 && reply.editCount <= 20, `edit count ${reply.editCount}`);
    const edits = await alice.edits(env.roomId, reply.replyId);
    const bodies = edits.map((e) => (e.content["m.new_content"] as { body: string }).body);
    for (let i = 1; i < bodies.length - 1; i++) {
      assert.ok((bodies[i] ?? "").length >= (bodies[i - 1] ?? "").length, "the reply only grows while streaming");
    }
    for (const e of edits) assert.deepEqual(e.content["m.mentions"], {}, "streamed edits mention nobody");
    t.diagnostic(`slow reply: ${reply.editCount} edits, first after ${reply.firstSeenAfterMs.toFixed(0)} ms, final after ${reply.finalSeenAfterMs.toFixed(0)} ms`);
  });

  test("after a restart the thread still reaches the same session", async () => {
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0, "SIGTERM ends the bot cleanly");
    const sentAt = performance.now();
    const prompt = await env.users.alice.sendText(env.roomId, "Still there after the restart?", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: Still there after the restart?");
    const prompts = await sessionUserMessages(sessionId);
    assert.equal(prompts.length, 4, "each prompt reached the session exactly once");
    assert.match(prompts.at(-1) ?? "", /\] Still there after the restart\?$/);
  });

  test("a stranger gets a short notice and no session; their thread messages never reach OpenCode", async () => {
    const { mallory } = env.users;
    const before = (await env.modelRequests()).length;
    const attempt = await mallory.sendText(env.roomId, "!oc delete everything please");
    const notice = await env.users.mallory.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === attempt,
      description: "the bot's answer to the stranger",
    });
    assert.equal(notice.content.body, `Sorry, ${mallory.userId} is not allowed to use this bot.`);
    await mallory.sendText(env.roomId, "and run rm -rf / too", { threadRoot: root });
    // A marker prompt from alice proves the bot processed mallory's messages before it.
    const sentAt = performance.now();
    const marker = await env.users.alice.sendText(env.roomId, "marker after the stranger", { threadRoot: root });
    await waitForFinalReply(env, root, marker, sentAt);
    const texts = (await env.modelRequests()).slice(before).map((r) => r.lastUserText);
    assert.ok(!texts.some((t) => /delete everything|rm -rf/.test(t)), `a stranger's text reached the model: ${texts.join(" | ")}`);
    assert.equal(env.query("SELECT * FROM threads").length, 1, "no session for the stranger");
    const toMallory = (await env.users.alice.roomMessages(env.roomId, 100)).filter((e) => e.sender === env.botUserId && String(e.content.body).includes("not allowed"));
    assert.equal(toMallory.length, 1, "one notice, not one per message");
  });

  test("help and unknown commands get a helpful answer", async () => {
    const { alice } = env.users;
    const ask = async (body: string): Promise<string> => {
      const id = await alice.sendText(env.roomId, body);
      const answer = await alice.waitForRoomEvent({
        roomId: env.roomId,
        sender: env.botUserId,
        match: (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === id,
        description: `the answer to ${body}`,
      });
      return String(answer.content.body);
    };
    assert.match(await ask("!oc help"), /!oc <prompt>.*new OpenCode session/s);
    assert.equal(
      await ask("!oc hlep"),
      "Unknown command `hlep`. Did you mean `!oc help`? See `!oc help`; to send one word as a prompt, write `!oc prompt hlep`.",
    );
    assert.equal(env.query("SELECT * FROM threads").length, 1, "neither started a session");
  });
});

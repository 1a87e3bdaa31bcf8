import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot killed with several turns in flight, not one: three sessions streaming, two prompts
// queued behind one of them, and a follow-up sent while the bot is down (so it arrives while
// the bot recovers). Every thread ends with its whole answer, each prompt reaches OpenCode
// once, no reply is posted twice, no edit shows less than the one before, no turn stays running.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");

let env: TestEnv;
before(async () => {
  env = await TestEnv.create({ name: "many", editWindowMs: 300 });
});
after(async () => {
  await env?.close();
});

async function streaming(root: string): Promise<string> {
  const seen = await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
      return rel?.rel_type === "m.replace" && String((e.content["m.new_content"] as { body?: string }).body).includes("slow3");
    },
    description: `a reply in ${root} streaming`,
  });
  return (seen.content["m.relates_to"] as { event_id: string }).event_id;
}

async function userPrompts(root: string): Promise<string[]> {
  const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

/** Every version of a reply, oldest first (the original, then each edit by time). */
async function versions(replyId: string): Promise<string[]> {
  const original = await env.users.alice.getEvent(env.roomId, replyId);
  const edits = (await env.users.alice.edits(env.roomId, replyId)).toSorted((a, b) => a.origin_server_ts - b.origin_server_ts);
  return [String(original.content.body), ...edits.map((e) => String((e.content["m.new_content"] as { body: string }).body))];
}

describe("the bot killed with several turns in flight", () => {
  test("three streams, two queued prompts, a follow-up during recovery: all answered once, in order, never shorter", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const roots = [await alice.sendText(env.roomId, "!oc slow stream one"), await alice.sendText(env.roomId, "!oc slow stream two"), await alice.sendText(env.roomId, "!oc slow stream three")];
    const replies = await Promise.all(roots.map((r) => streaming(r)));
    const [a, b, c] = roots as [string, string, string];
    const q1 = await alice.sendText(env.roomId, "first waiting . queue", { threadRoot: a });
    const q2 = await alice.sendText(env.roomId, "second waiting . queue", { threadRoot: a });
    for (let i = 0; i < 200 && env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n !== 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n, 2, "both prompts queued before the crash");

    await env.bot.stop("SIGKILL");
    const during = await alice.sendText(env.roomId, "sent while the bot was down", { threadRoot: b });
    const restartedAt = performance.now();
    await env.restartBot("SIGTERM").catch(() => undefined);

    for (const [i, root] of roots.entries()) {
      const reply = await waitForFinalReply(env, root, root, sentAt, 90_000);
      assert.equal(splitFooter(reply.body).text, slowText, `thread ${i + 1}: the whole answer`);
    }
    const r1 = await waitForFinalReply(env, a, q1, sentAt, 90_000);
    const r2 = await waitForFinalReply(env, a, q2, sentAt, 90_000);
    assert.equal(splitFooter(r1.body).text, "Echo: first waiting");
    assert.equal(splitFooter(r2.body).text, "Echo: second waiting");
    assert.ok(r1.finalSeenAfterMs < r2.finalSeenAfterMs, "the queue kept its order");
    assert.equal(splitFooter((await waitForFinalReply(env, b, during, sentAt, 90_000)).body).text, "Echo: sent while the bot was down");
    const recoveredMs = performance.now() - restartedAt;

    // Each prompt reached OpenCode once.
    assert.deepEqual((await userPrompts(a)).map((p) => p.replace(/^\[[^\]]+\] /, "")), ["slow stream one", "first waiting", "second waiting"]);
    assert.deepEqual((await userPrompts(b)).map((p) => p.replace(/^\[[^\]]+\] /, "")), ["slow stream two", "sent while the bot was down"]);
    assert.deepEqual((await userPrompts(c)).map((p) => p.replace(/^\[[^\]]+\] /, "")), ["slow stream three"]);
    // One live reply per prompt (the push to who asked is an m.text, not a copy of the reply).
    for (const [root, prompts] of [[a, 3], [b, 2], [c, 1]] as const) {
      const notices = (await env.botReplies(root)).filter((e) => e.content.msgtype === "m.notice" && !String(e.content.body).startsWith("⚠️"));
      assert.equal(notices.length, prompts, `${root}: one reply per prompt: ${JSON.stringify(notices.map((e) => String(e.content.body).slice(0, 60)))}`);
    }
    // No version of a streamed reply shows less than the one before it, across the crash too.
    for (const id of replies) {
      const texts = (await versions(id)).map((v) => splitFooter(v).text).filter((v) => !v.startsWith("⏳"));
      for (let i = 1; i < texts.length; i++) assert.ok((texts[i] as string).length >= (texts[i - 1] as string).length, `a shorter version of ${id}: ${JSON.stringify(texts[i - 1])} → ${JSON.stringify(texts[i])}`);
    }
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turns WHERE status = 'running'"), [{ n: 0 }], "no turn left running");
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM live_replies"), [{ n: 0 }], "the live records are gone with their turns");
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"), [{ n: 0 }], "no Matrix event left unprocessed");
    t.diagnostic(`restart → every answer complete: ${recoveredMs.toFixed(0)} ms`);
  });
});

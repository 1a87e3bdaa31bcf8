import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot dies hard (SIGKILL, by BOT_TEST_CRASH_AT) at each named point of a turn's life, with
// three sessions starting at once and a follow-up sent while it is down; restarted normally,
// every thread must end with its exact answer, each prompt must reach OpenCode once, no reply
// may be posted twice or ever show less than before, and no turn may stay running.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
const longWords = 2000;
const longText = Array.from({ length: longWords }, (_, i) => `word${i + 1}`).join(" ");
const points = ["thread-row", "turn-row", "prompt-sent", "first-edit", "continuation", "final-edit"] as const;

const envs: TestEnv[] = [];
after(async () => {
  await Promise.all(envs.map((e) => e.close()));
});

async function userPrompts(env: TestEnv, root: string): Promise<string[]> {
  const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join("").replace(/^\[[^\]]+\] /, ""));
}

/** Every version of every piece of a thread's bot replies, as the second client reads them. */
async function shrinks(env: TestEnv, root: string): Promise<string[]> {
  const found: string[] = [];
  for (const reply of await env.botReplies(root)) {
    if (reply.content.msgtype !== "m.notice") continue;
    const edits = (await env.users.alice.edits(env.roomId, reply.event_id)).toSorted((a, b) => a.origin_server_ts - b.origin_server_ts);
    const texts = [String(reply.content.body), ...edits.map((e) => String((e.content["m.new_content"] as { body: string }).body))]
      .map((t) => t.replace(/\n\n— [^\n]*$/, "").replace(/\n\n_\(continued below\)_$/, ""))
      .filter((t) => !t.startsWith("⏳"));
    for (let i = 1; i < texts.length; i++) if ((texts[i] as string).length < (texts[i - 1] as string).length) found.push(`${reply.event_id}: ${(texts[i - 1] as string).slice(-40)} → ${(texts[i] as string).slice(-40)}`);
  }
  return found;
}

describe("the bot killed at each point of a turn", () => {
  for (const point of points) {
    test(`${point}: every answer whole and once after the restart`, async (t) => {
      const env = await TestEnv.create({ name: `cp${points.indexOf(point)}`, editWindowMs: 300, botEnv: { BOT_TEST_CRASH_AT: point } });
      envs.push(env);
      const { alice } = env.users;
      const sentAt = performance.now();
      const first = point === "continuation" ? `!oc long ${longWords} for the crash test` : "!oc slow crash one";
      const roots = [await alice.sendText(env.roomId, first), await alice.sendText(env.roomId, "!oc slow crash two"), await alice.sendText(env.roomId, "!oc slow crash three")];
      const exit = await Promise.race([env.bot.exited, new Promise<"alive">((r) => setTimeout(() => r("alive"), 60_000))]);
      assert.notEqual(exit, "alive", `the bot reached ${point} and died there`);
      const during = await alice.sendText(env.roomId, "written while the bot was down", { threadRoot: roots[0] as string });
      await env.restartBotWith({ BOT_TEST_CRASH_AT: undefined });

      const expected = [point === "continuation" ? longText : slowText, slowText, slowText];
      for (const [i, root] of roots.entries()) {
        // The long answer's footer is on its last piece; the follow-up's answer below comes after it.
        if (i === 0 && point === "continuation") continue;
        const reply = await waitForFinalReply(env, root, root, sentAt, 90_000);
        assert.equal(splitFooter(reply.body).text, expected[i], `thread ${i + 1}: the exact answer`);
      }
      assert.equal(splitFooter((await waitForFinalReply(env, roots[0] as string, during, sentAt, 90_000)).body).text, "Echo: written while the bot was down");
      if (point === "continuation") {
        // The long answer is split over several replies; each piece was edited in place, none posted twice.
        const pieces = (await env.botReplies(roots[0] as string)).filter((e) => e.content.msgtype === "m.notice" && !String(e.content.body).startsWith("⚠️"));
        const bodies = await Promise.all(pieces.map(async (p) => (await alice.latestBody(env.roomId, p.event_id)).body));
        const whole = bodies.filter((b) => !b.startsWith("Echo:")).map((b) => b.replace(/\n\n— [^\n]*$/, "").replace(/\n\n_\(continued below\)_$/, "")).join(" ");
        const shape = bodies.map((b) => `${b.slice(0, 12)}…${b.slice(-30)} (${b.length})`);
        assert.ok(whole.replace(/\s+/g, " ") === longText, `the pieces together are the whole answer, once: ${JSON.stringify(shape)}`);
      }

      const wanted = [[expected[0] === longText ? `long ${longWords} for the crash test` : "slow crash one", "written while the bot was down"], ["slow crash two"], ["slow crash three"]];
      for (const [i, root] of roots.entries()) assert.deepEqual(await userPrompts(env, root), wanted[i], `thread ${i + 1}: each prompt reached OpenCode once`);
      for (const root of roots) assert.deepEqual(await shrinks(env, root), [], "no version of a reply shows less than the one before");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turns WHERE status = 'running'"), [{ n: 0 }], "no turn left running");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"), [{ n: 0 }], "no Matrix event left unprocessed");
      t.diagnostic(`${point}: recovered; ${(performance.now() - sentAt).toFixed(0)} ms from the first prompt to the last answer`);
    });
  }
});

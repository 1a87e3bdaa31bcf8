import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { answerPieces, bare, diesWithin, pushesPerReply, repliesPerPrompt, sendDuringRestart, shrinks, type ThreadView } from "../harness/crash-checks.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot dies hard (SIGKILL, by BOT_TEST_CRASH_AT) at each named point of a turn's life with
// five sessions streaming, two prompts queued behind the first one's turn, and a follow-up
// sent while the restarted bot recovers (after it was spawned, before it is ready). Every
// thread must end with its exact answers, each prompt must reach OpenCode once, no prompt may
// get two replies, no reply may ever show less than before, no turn may stay running and no
// Matrix event pending.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
const longWords = 2000;
const longText = Array.from({ length: longWords }, (_, i) => `word${i + 1}`).join(" ");
// The second pass of the early points: the first session's turn runs and two prompts wait behind it.
const points = ["thread-row@2", "turn-row@2", "prompt-sent@2", "first-edit", "continuation", "final-edit"] as const;
const sessions = ["one", "two", "three", "four", "five"];

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

describe("the bot killed at each point of a turn, with five sessions streaming", () => {
  for (const point of points) {
    test(`${point}: every answer whole and once after the restart`, async (t) => {
      const env = await TestEnv.create({ name: `cp${points.indexOf(point)}`, editWindowMs: 250, botEnv: { BOT_TEST_CRASH_AT: point } });
      envs.push(env);
      const { alice } = env.users;
      const view: ThreadView = { user: alice, roomId: env.roomId, botUserId: env.botUserId };
      const sentAt = performance.now();
      const startedAt = Date.now();
      const long = point === "continuation";
      // The first session, then two follow-ups in its thread (they wait in the durable queue for
      // its turn), then four more sessions: the room's messages are handled in this order.
      // Each prompt names its point, so the scripted model's requests tell which run asked.
      const tag = `cp${points.indexOf(point)}`;
      const firstPrompt = long ? `long ${longWords} for the crash test ${tag}` : `slow crash one ${tag}`;
      const roots: string[] = [await alice.sendText(env.roomId, `!oc ${firstPrompt}`)];
      const queued = [await alice.sendText(env.roomId, `queued one ${tag}`, { threadRoot: roots[0] as string }), await alice.sendText(env.roomId, `queued two ${tag}`, { threadRoot: roots[0] as string })];
      for (const n of sessions.slice(1)) roots.push(await alice.sendText(env.roomId, `!oc slow crash ${n} ${tag}`));
      assert.ok(await diesWithin(env.bot.exited, 60_000), `the bot reached ${point} and died there`);
      const queuedAtCrash = env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n ?? 0;
      const restartedAt = performance.now();
      const during = await sendDuringRestart(() => env.restartBotWith({ BOT_TEST_CRASH_AT: undefined }), () => alice.sendText(env.roomId, `sent during recovery ${tag}`, { threadRoot: roots[1] as string }));
      assert.ok(during.beforeReady, "the follow-up was sent before the restarted bot was ready");

      // Every prompt's exact answer, in its thread.
      const [a, b] = roots as [string, string];
      for (const [i, root] of roots.entries()) {
        if (i === 0 && long) continue; // the long answer's footer is on its last piece: checked below
        const reply = await waitForFinalReply(env, root, root, sentAt, 90_000);
        assert.equal(splitFooter(reply.body).text, slowText, `session ${sessions[i]}: the exact answer`);
      }
      const q1 = await waitForFinalReply(env, a, queued[0] as string, sentAt, 90_000);
      const q2 = await waitForFinalReply(env, a, queued[1] as string, sentAt, 90_000);
      assert.equal(splitFooter(q1.body).text, `Echo: queued one ${tag}`);
      assert.equal(splitFooter(q2.body).text, `Echo: queued two ${tag}`);
      assert.ok(q1.finalSeenAfterMs < q2.finalSeenAfterMs, "the queue kept its order");
      assert.equal(splitFooter((await waitForFinalReply(env, b, during.id, sentAt, 90_000)).body).text, `Echo: sent during recovery ${tag}`);
      const recoveredMs = performance.now() - restartedAt;
      if (long) {
        // Split over several replies: each piece edited in place, none posted twice, together the whole answer once.
        const bodies = await answerPieces(view, a, a);
        const shape = bodies.map((x) => `${x.slice(0, 12)}…${x.slice(-30)} (${x.length})`);
        assert.equal(bodies.map(bare).join(" ").replace(/\s+/g, " "), longText, `the pieces together are the whole answer, once: ${JSON.stringify(shape)}`);
      }

      // Each prompt reached OpenCode once, and got one reply (a long answer: its pieces).
      const wanted = [[firstPrompt, `queued one ${tag}`, `queued two ${tag}`], [`slow crash two ${tag}`, `sent during recovery ${tag}`], ...sessions.slice(2).map((n) => [`slow crash ${n} ${tag}`])];
      for (const [i, root] of roots.entries()) assert.deepEqual(await userPrompts(env, root), wanted[i], `session ${sessions[i]}: each prompt reached OpenCode once`);
      // And the model once: OpenCode did not answer any prompt twice.
      const asked = (await env.modelRequests()).filter((r) => r.kind === "chat" && r.at >= startedAt && r.lastUserText.endsWith(` ${tag}`)).map((r) => r.lastUserText.replace(/^\[[^\]]+\] /, ""));
      assert.deepEqual(asked.toSorted(), wanted.flat().toSorted(), "each prompt reached the scripted model once");
      for (const [i, root] of roots.entries()) {
        const counts = await repliesPerPrompt(view, root);
        const prompts = i === 0 ? [root, ...queued] : i === 1 ? [root, during.id] : [root];
        const expected = Object.fromEntries(prompts.map((p) => [p, p === a && long ? counts[a] ?? 0 : 1]));
        assert.deepEqual(counts, expected, `session ${sessions[i]}: one reply per prompt`);
        assert.deepEqual(Object.values(await pushesPerReply(view, root)), prompts.map(() => 1), `session ${sessions[i]}: one push per prompt`);
      }
      for (const root of roots) assert.deepEqual(await shrinks(view, root), [], "no version of a reply shows less than the one before");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turns WHERE status = 'running'"), [{ n: 0 }], "no turn left running");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turn_queue"), [{ n: 0 }], "nothing left waiting");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"), [{ n: 0 }], "no Matrix event left unprocessed");
      t.diagnostic(`${point}: ${queuedAtCrash} prompt(s) in the durable queue at the crash; restart → every answer complete in ${recoveredMs.toFixed(0)} ms; ${(performance.now() - sentAt).toFixed(0)} ms in all`);
    });
  }
});

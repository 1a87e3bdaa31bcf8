import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { answerPieces, bare, diesWithin, pushesPerReply, repliesPerPrompt, sendDuringRestart, shrinks, type ThreadView } from "../harness/crash-checks.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot dies hard (BOT_TEST_CRASH_AT) at each point of a Letta turn's life: two threads with
// the room's agent, two follow-ups queued behind the first thread's turn (one agent answers one
// message at a time, so the second thread waits too), and a follow-up sent while the restarted
// bot recovers. Every prompt must get its exact answer in its thread, reach Letta once (its
// record of the agent's messages), get one reply that never shows less than before; no turn may
// stay running, nothing queued, no Matrix event pending.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
const longWords = 2000;
const longText = Array.from({ length: longWords }, (_, i) => `word${i + 1}`).join(" ");
// thread-row@2: the second thread's row (the first thread's turn streams, its follow-ups wait);
// turn-row@2, sent-mark@2 and prompt-sent@2: the first follow-up, taken from the queue, before
// it was marked as sent, marked but not yet sent (Letta never got it), and after Letta took it.
const points = ["thread-row@2", "turn-row@2", "sent-mark@2", "prompt-sent@2", "first-edit", "continuation", "final-edit"] as const;
const headers = { "content-type": "application/json", "x-stainless-package-version": "1.12.1" };

let lettaUrl = "";
const envs: TestEnv[] = [];
before(() => {
  const stack = loadStackInfo();
  assert.ok(stack.letta, "the runner did not boot Letta: run this file through `npm test -- test/e2e/crash-points-letta.test.ts`");
  lettaUrl = stack.letta.baseUrl;
});
after(async () => {
  await Promise.all(envs.map((e) => e.close()));
});

async function createAgent(name: string): Promise<string> {
  const stack = loadStackInfo();
  const res = await fetch(`${lettaUrl}/v1/agents/`, {
    method: "POST",
    headers,
    body: JSON.stringify({ name, model: stack.letta?.model, embedding: stack.letta?.embedding, memory_blocks: [{ label: "persona", value: "A test agent." }, { label: "human", value: "Testers." }] }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

/** What the agent was told, in order, as Letta recorded it (attribution stripped). */
async function userMessages(agentId: string): Promise<string[]> {
  const res = await fetch(`${lettaUrl}/v1/agents/${agentId}/messages?limit=200`, { headers });
  const messages = (await res.json()) as Array<{ message_type: string; content?: unknown }>;
  return messages.filter((m) => m.message_type === "user_message").map((m) => String(m.content).replace(/^\[[^\]]+\] /, ""));
}

describe("the bot killed at each point of a Letta turn", () => {
  for (const point of points) {
    test(`${point}: every answer whole and once after the restart`, async (t) => {
      const agentId = await createAgent(`crash-${points.indexOf(point)}-${Date.now().toString(36)}`);
      const env = await TestEnv.create({
        name: `cpl${points.indexOf(point)}`,
        editWindowMs: 250,
        botEnv: { LETTA_BASE_URL: lettaUrl, LETTA_DEFAULT_AGENT: agentId, LETTA_RETRY_DELAY_MS: "250", BOT_TEST_CRASH_AT: point },
      });
      envs.push(env);
      const { alice } = env.users;
      const view: ThreadView = { user: alice, roomId: env.roomId, botUserId: env.botUserId };
      const sentAt = performance.now();
      const long = point === "continuation";
      const firstPrompt = long ? `long ${longWords} for the crash test` : "slow crash one";
      const a = await alice.sendText(env.roomId, `!letta ${firstPrompt}`);
      const queued = [await alice.sendText(env.roomId, "queued one", { threadRoot: a }), await alice.sendText(env.roomId, "queued two", { threadRoot: a })];
      const b = await alice.sendText(env.roomId, "!letta slow crash two");
      assert.ok(await diesWithin(env.bot.exited, 60_000), `the bot reached ${point} and died there`);
      const queuedAtCrash = env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n ?? 0;
      const restartedAt = performance.now();
      const during = await sendDuringRestart(() => env.restartBotWith({ BOT_TEST_CRASH_AT: undefined }), () => alice.sendText(env.roomId, "sent during recovery", { threadRoot: b }));
      assert.ok(during.beforeReady, "the follow-up was sent before the restarted bot was ready");

      if (!long) {
        const reply = await waitForFinalReply(env, a, a, sentAt, 90_000);
        assert.equal(splitFooter(reply.body).text, slowText, `the first thread's answer: ${JSON.stringify(reply.body.slice(-200))}`);
      }
      const q1 = await waitForFinalReply(env, a, queued[0] as string, sentAt, 90_000);
      const q2 = await waitForFinalReply(env, a, queued[1] as string, sentAt, 90_000);
      assert.equal(splitFooter(q1.body).text, "Echo: queued one");
      assert.equal(splitFooter(q2.body).text, "Echo: queued two");
      assert.ok(q1.finalSeenAfterMs < q2.finalSeenAfterMs, "the queue kept its order");
      assert.equal(splitFooter((await waitForFinalReply(env, b, b, sentAt, 90_000)).body).text, slowText, "the second thread's answer");
      assert.equal(splitFooter((await waitForFinalReply(env, b, during.id, sentAt, 90_000)).body).text, "Echo: sent during recovery");
      const recoveredMs = performance.now() - restartedAt;
      if (long) {
        const bodies = await answerPieces(view, a, a);
        const shape = bodies.map((x) => `${x.slice(0, 12)}…${x.slice(-30)} (${x.length})`);
        assert.equal(bodies.map(bare).join(" ").replace(/\s+/g, " "), longText, `the pieces together are the whole answer, once: ${JSON.stringify(shape)}`);
      }

      // Each prompt reached the agent once, in the order they were written; one reply each.
      assert.deepEqual(await userMessages(agentId), [firstPrompt, "queued one", "queued two", "slow crash two", "sent during recovery"], "each prompt reached Letta once");
      const countsA = await repliesPerPrompt(view, a);
      assert.deepEqual(countsA, { [a]: long ? countsA[a] ?? 0 : 1, [queued[0] as string]: 1, [queued[1] as string]: 1 }, "one reply per prompt in the first thread");
      assert.deepEqual(await repliesPerPrompt(view, b), { [b]: 1, [during.id]: 1 }, "one reply per prompt in the second thread");
      assert.deepEqual([...Object.values(await pushesPerReply(view, a)), ...Object.values(await pushesPerReply(view, b))], [1, 1, 1, 1, 1], "one push per prompt");
      for (const root of [a, b]) assert.deepEqual(await shrinks(view, root), [], "no version of a reply shows less than the one before");
      assert.deepEqual(env.query("SELECT status, COUNT(*) AS n FROM letta_turns GROUP BY status"), [{ status: "done", n: 5 }], "every turn done, none left running");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turn_queue"), [{ n: 0 }], "nothing left waiting");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM live_replies"), [{ n: 0 }], "the live records are gone with their turns");
      assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"), [{ n: 0 }], "no Matrix event left unprocessed");
      t.diagnostic(`${point}: ${queuedAtCrash} message(s) queued at the crash; restart → every answer complete in ${recoveredMs.toFixed(0)} ms; ${(performance.now() - sentAt).toFixed(0)} ms in all`);
    });
  }
});

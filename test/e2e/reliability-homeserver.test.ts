import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { cacheDir, loadStackInfo } from "../harness/stack.ts";
import { startSynapse, type SynapseHandle } from "../harness/synapse.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The homeserver goes away and comes back (a restart of this suite's own Synapse), while the bot
// is idle and while it streams; and the bot itself gets a SIGTERM in the middle of a turn.
// Nothing may be lost or answered twice, and every reply must end in its exact final text.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
let synapse: SynapseHandle | undefined;
let env: TestEnv;

before(async () => {
  const stack = loadStackInfo();
  synapse = await startSynapse({ cacheDir, workDir: mkdtempSync(join(stack.workDir, "synapse-restart-")), rateLimits: "raised" });
  env = await TestEnv.create({ name: "hsdown", synapse, editWindowMs: 400 });
});
after(async () => {
  await env?.close();
  await synapse?.stop();
});

const rel = (e: { content: Record<string, unknown> }): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] ?? {}) as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };

async function waitForStreaming(root: string, marker: string): Promise<void> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => rel(e).rel_type === "m.replace" && String((e.content["m.new_content"] as { body?: string }).body).includes(marker),
    description: `the reply in ${root} streaming up to ${marker}`,
  });
}

/** The bot's replies (not edits, not notices about other things) to `prompt` in the thread `root`. */
async function repliesTo(root: string, prompt: string): Promise<number> {
  return (await env.botReplies(root)).filter((e) => rel(e).rel_type === "m.thread" && rel(e)["m.in_reply_to"]?.event_id === prompt).length;
}

async function userPrompts(root: string): Promise<string[]> {
  const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

/** Polls the bot's /health until its Matrix sync succeeded after `since` (performance.now()); returns when. */
async function syncBackAfter(since: number, timeoutMs = 60_000): Promise<number> {
  const end = performance.now() + timeoutMs;
  const sinceMs = Date.now() - (performance.now() - since);
  while (performance.now() < end) {
    const res = await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`).catch(() => undefined);
    const body = res ? ((await res.json()) as { matrix?: { ok?: boolean; lastSyncAgeMs?: number | null } }) : undefined;
    const age = body?.matrix?.lastSyncAgeMs;
    if (body?.matrix?.ok && typeof age === "number" && Date.now() - age > sinceMs) return performance.now();
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the bot's Matrix sync did not come back within ${timeoutMs} ms`);
}

describe("the homeserver restarts", () => {
  test("while the bot is idle: the bot syncs again and a new prompt is answered", async (t) => {
    const t0 = performance.now();
    await (synapse as SynapseHandle).restart();
    const upAt = performance.now();
    const syncedAt = await syncBackAfter(upAt);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc answered after an idle restart");
    const reply = await waitForFinalReply(env, root, root, sentAt, 60_000);
    assert.equal(splitFooter(reply.body).text, "Echo: answered after an idle restart");
    assert.equal(await repliesTo(root, root), 1);
    t.diagnostic(
      `synapse down and up in ${((upAt - t0) / 1000).toFixed(1)} s; bot synced again ${((syncedAt - upAt) / 1000).toFixed(1)} s after; ` +
        `first reply ${reply.firstSeenAfterMs.toFixed(0)} ms, final ${reply.finalSeenAfterMs.toFixed(0)} ms after the prompt`,
    );
  });

  test("while a reply streams, with a prompt sent just before it: both end exactly, each prompt answered once", async (t) => {
    const { alice } = env.users;
    const sentA = performance.now();
    const rootA = await alice.sendText(env.roomId, "!oc slow answer across a homeserver restart");
    await waitForStreaming(rootA, "slow3");
    const marker = `just before the restart ${Date.now().toString(36)}`;
    const sentB = performance.now();
    const rootB = await alice.sendText(env.roomId, `!oc ${marker}`);
    const t0 = performance.now();
    await (synapse as SynapseHandle).restart();
    const upAt = performance.now();

    const [a, b] = await Promise.all([waitForFinalReply(env, rootA, rootA, sentA, 90_000), waitForFinalReply(env, rootB, rootB, sentB, 90_000)]);
    assert.equal(splitFooter(a.body).text, slowText, "the streamed reply ends in its exact final text");
    assert.equal(splitFooter(b.body).text, `Echo: ${marker}`);
    assert.equal(await repliesTo(rootA, rootA), 1, "one reply in the streaming thread, edited in place after the restart");
    assert.equal(await repliesTo(rootB, rootB), 1, "one reply to the prompt sent before the restart");

    // Each prompt reached OpenCode, and the model, exactly once.
    const promptsB = await userPrompts(rootB);
    assert.equal(promptsB.length, 1, `the prompt reached its session once: ${JSON.stringify(promptsB)}`);
    assert.equal((await userPrompts(rootA)).length, 1);
    const asked = (await env.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes(marker));
    assert.equal(asked.length, 1, "the model was asked once");
    assert.equal(env.query("SELECT * FROM threads WHERE root_event_id = ?", rootB).length, 1);
    assert.deepEqual(env.query<{ status: string }>("SELECT status FROM turns WHERE root_event_id IN (?, ?)", rootA, rootB), [{ status: "done" }, { status: "done" }]);
    t.diagnostic(
      `synapse down and up in ${((upAt - t0) / 1000).toFixed(1)} s; streamed reply final ${((sentA + a.finalSeenAfterMs - upAt) / 1000).toFixed(1)} s ` +
        `and the earlier prompt's reply final ${((sentB + b.finalSeenAfterMs - upAt) / 1000).toFixed(1)} s after the homeserver was back`,
    );
  });
});

describe("the bot gets SIGTERM", () => {
  test("during a streamed turn: it exits 0 promptly, and once started again the thread ends with the complete answer", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc slow answer cut by a SIGTERM");
    await waitForStreaming(root, "slow3");
    const t0 = performance.now();
    const exitedAt = env.bot.exited.then(() => performance.now());
    const { exitCode } = await env.restartBot("SIGTERM");
    const exitMs = (await exitedAt) - t0;
    const startedAt = performance.now();
    assert.equal(exitCode, 0, "SIGTERM ends the bot cleanly");
    assert.ok(exitMs < 10_000, `the bot took ${exitMs.toFixed(0)} ms to exit`);

    const reply = await waitForFinalReply(env, root, root, sentAt, 60_000);
    assert.equal(splitFooter(reply.body).text, slowText, "the restarted bot finished the reply from the session");
    assert.equal(await repliesTo(root, root), 1, "the same reply, finished in place");
    assert.equal((await userPrompts(root)).length, 1, "the prompt was not sent again");
    assert.deepEqual(env.query<{ status: string }>("SELECT status FROM turns WHERE root_event_id = ?", root), [{ status: "done" }]);
    t.diagnostic(`exit after ${exitMs.toFixed(0)} ms; final text ${((sentAt + reply.finalSeenAfterMs - startedAt) / 1000).toFixed(1)} s after the new process was ready`);
  });
});

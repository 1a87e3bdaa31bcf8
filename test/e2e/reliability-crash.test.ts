import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Crashes: the bot killed with SIGKILL in the middle of a streamed turn (again and again), and
// the OpenCode server killed in the middle of one. Nothing may be lost or done twice.

const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");

async function waitForStreaming(env: TestEnv, root: string, marker: string): Promise<void> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string } | undefined;
      return rel?.rel_type === "m.replace" && String((e.content["m.new_content"] as { body?: string }).body).includes(marker);
    },
    description: `the reply in ${root} streaming up to ${marker}`,
  });
}

async function userPrompts(env: TestEnv, baseUrl: string, directory: string, root: string): Promise<number> {
  const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
  const messages = (await createOpencodeClient({ baseUrl, directory }).session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").length;
}

describe("the bot killed mid-turn", () => {
  let env: TestEnv;
  before(async () => {
    env = await TestEnv.create({ name: "kill", editWindowMs: 300 });
  });
  after(async () => {
    await env?.close();
  });

  const runs = 4;
  test(`SIGKILL during a streamed reply, ${runs} times: each thread still ends with the whole answer, once`, async (t) => {
    const recoveries: number[] = [];
    for (let i = 1; i <= runs; i++) {
      const sentAt = performance.now();
      const root = await env.users.alice.sendText(env.roomId, `!oc slow answer number ${i}`);
      await waitForStreaming(env, root, `slow${4 + i}`);
      await env.restartBot("SIGKILL");
      const restartedAt = performance.now();
      const reply = await waitForFinalReply(env, root, root, sentAt, 60_000);
      recoveries.push(performance.now() - restartedAt);
      assert.equal(splitFooter(reply.body).text, slowText, `run ${i}: the final text is complete`);
      // The live reply is an m.notice; the push to who asked (an m.text that mentions them) is not a reply copy.
      const replies = (await env.botReplies(root)).filter((e) => (e.content["m.relates_to"] as { rel_type?: string }).rel_type === "m.thread" && e.content.msgtype === "m.notice");
      assert.equal(replies.length, 1, `run ${i}: one reply, reused after the restart`);
      assert.equal(await userPrompts(env, env.stack.opencode.url, env.stack.workspaceDir, root), 1, `run ${i}: the prompt reached OpenCode once`);
      const turns = env.query<{ status: string }>("SELECT status FROM turns WHERE root_event_id = ?", root);
      assert.deepEqual(turns, [{ status: "done" }], `run ${i}: one turn, finished`);
    }
    const inbox = env.query<{ n: number }>("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'")[0]?.n;
    assert.equal(inbox, 0, "no Matrix event left unprocessed");
    t.diagnostic(`${runs}/${runs} runs passed; recovery (restart → final text visible) ms: ${recoveries.map((r) => r.toFixed(0)).join(", ")}`);
  });

  test("a prompt sent while the bot is down is answered once after it starts", async () => {
    await env.bot.stop("SIGKILL");
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc written while the bot was down");
    await env.restartBot("SIGTERM");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: written while the bot was down");
    assert.equal(await userPrompts(env, env.stack.opencode.url, env.stack.workspaceDir, root), 1);
  });
});

describe("the OpenCode server killed mid-turn", () => {
  let env: TestEnv;
  let server: TestOpencode;
  let workspace: string;
  before(async () => {
    const stack = (await import("../harness/stack.ts")).loadStackInfo();
    workspace = mkdtempSync(join(stack.workDir, "ws-outage-"));
    server = await startTestOpencode({ workspaceDir: workspace, stateDir: mkdtempSync(join(stack.workDir, "oc-outage-")), modelBaseUrl: stack.model.baseUrl });
    env = await TestEnv.create({
      name: "outage",
      editWindowMs: 300,
      botEnv: {
        OPENCODE_SERVER_URL: server.url,
        OPENCODE_WORKSPACE_DIR: workspace,
        OPENCODE_SERVER_RETRY_DELAY_MS: "500",
        OPENCODE_SERVER_MAX_RETRIES: "3",
        OPENCODE_SERVER_HEALTH_CHECK_INTERVAL_MS: "2000",
      },
    });
  });
  after(async () => {
    await env?.close();
    await server?.stop();
  });

  test("the thread is told within seconds, told again when it is back, and new prompts work", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc slow work during an outage");
    await waitForStreaming(env, root, "slow3");
    const killedAt = performance.now();
    server.kill("SIGKILL");
    const lost = await env.waitForBot("the outage notice", (e) => String(e.content.body).startsWith("⚠️ Lost the connection to the OpenCode server"));
    assert.equal((lost.content["m.relates_to"] as { event_id?: string }).event_id, root, "told in the thread of the turn");
    assert.match(String(lost.content.body), /3 quick tries from 500 ms, then every 2 s/);
    const toldAfter = lost.receivedAt - killedAt;
    await server.restart();
    const restartedAt = performance.now();
    const back = await env.waitForBot("the reconnect notice", (e) => String(e.content.body) === "✅ Reconnected to the OpenCode server.", 60_000);
    const reply = await waitForFinalReply(env, root, root, sentAt, 60_000);
    assert.match(splitFooter(reply.body).text, /^slow1 slow2 slow3/);
    assert.match(splitFooter(reply.body).text, /stopped before it was complete/);
    const s2 = performance.now();
    const next = await alice.sendText(env.roomId, "are you back?", { threadRoot: root });
    const r2 = await waitForFinalReply(env, root, next, s2);
    assert.equal(splitFooter(r2.body).text, "Echo: are you back?");
    const health = (await (await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`)).json()) as { opencode: Array<{ reconnects: number }> };
    assert.ok((health.opencode[0]?.reconnects ?? 0) >= 1);
    t.diagnostic(`told of the outage after ${toldAfter.toFixed(0)} ms; reconnected ${(back.receivedAt - restartedAt).toFixed(0)} ms after the server was back`);
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { startScriptedModel, type ScriptedModel } from "../harness/scripted-model.ts";
import { loadStackInfo } from "../harness/stack.ts";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Questions from OpenCode's agent (its `question` tool), answered from the thread: by a number
// reaction, by typing, in order when there are several, only by allowed people, and still
// answerable after the bot restarts. A model and an OpenCode server of this file's own: the
// model's requests show what OpenCode passed on as the answer.

interface ChatBody { messages?: Array<{ role: string; content?: unknown }> }

let env: TestEnv;
let model: ScriptedModel;
let server: TestOpencode;
let workspace: string;
const chats: ChatBody[] = [];

before(async () => {
  const stack = loadStackInfo();
  model = await startScriptedModel({ onRequestBody: (url, body) => void (url.endsWith("/chat/completions") && chats.push(body as ChatBody)) });
  workspace = mkdtempSync(join(stack.workDir, "ws-questions-"));
  server = await startTestOpencode({ workspaceDir: workspace, stateDir: mkdtempSync(join(stack.workDir, "oc-questions-")), modelBaseUrl: model.baseUrl });
  env = await TestEnv.create({ name: "question", botEnv: { OPENCODE_SERVER_URL: server.url, OPENCODE_WORKSPACE_DIR: workspace } });
});
after(async () => {
  await env?.close();
  await server?.stop();
  await model?.close();
});

/** What OpenCode told the model the answer was: the question tool's results, as the model received them. */
function toolResults(): string[] {
  return chats.flatMap((b) => (b.messages ?? []).filter((m) => m.role === "tool").map((m) => String(m.content)));
}

async function waitForToolResult(fragment: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const hit = toolResults().find((t) => t.includes(fragment));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no tool result with ${fragment} reached the model; results: ${JSON.stringify(toolResults())}`);
}

async function ask(prompt: string): Promise<{ root: string; sentAt: number; question: MatrixEvent }> {
  const sentAt = performance.now();
  const root = await env.users.alice.sendText(env.roomId, `!oc ${prompt}`);
  const question = await env.waitForBot(`the question for ${prompt}`, (e) => {
    const rel = e.content["m.relates_to"] as { event_id?: string } | undefined;
    return rel?.event_id === root && String(e.content.body).startsWith("❓");
  });
  return { root, sentAt, question };
}

async function waitForEdit(eventId: string, pattern: RegExp): Promise<string> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
      return rel?.rel_type === "m.replace" && rel.event_id === eventId && pattern.test((e.content["m.new_content"] as { body: string }).body);
    },
    description: `an edit of ${eventId} matching ${pattern}`,
  });
  return (await env.users.alice.latestBody(env.roomId, eventId)).body;
}

const howTo = "React with an option's number, or write your answer in this thread (a number picks that option; other words are your own answer), or !oc answer <n or text>.";

describe("questions from the agent", () => {
  test("the question mentions who asked and shows numbered options; a stranger's reaction is ignored, a number reaction answers", async (t) => {
    const { alice, bob, mallory } = env.users;
    const { root, sentAt, question } = await ask("question: Deploy to production now?");
    t.diagnostic(`question visible ${(performance.now() - sentAt).toFixed(0)} ms after the prompt`);
    assert.equal(String(question.content.body), `❓ OpenCode asks ${alice.userId.slice(1).split(":")[0]}: Deploy to production now?\n\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n\n${howTo}`);
    assert.deepEqual(question.content["m.mentions"], { user_ids: [alice.userId] }, "the person whose prompt asked is mentioned");
    assert.equal(question.content.msgtype, "m.text", "a text message, so that it pushes");
    for (const key of ["1️⃣", "2️⃣"]) {
      await alice.waitForRoomEvent({ roomId: env.roomId, sender: env.botUserId, type: "m.reaction", description: `the bot's ${key}`,
        match: (e) => (e.content["m.relates_to"] as { event_id?: string; key?: string }).event_id === question.event_id && (e.content["m.relates_to"] as { key?: string }).key === key });
    }

    await mallory.react(env.roomId, question.event_id, "1️⃣");
    const reactedAt = performance.now();
    await bob.react(env.roomId, question.event_id, "2️⃣");
    const answered = await waitForEdit(question.event_id, /Answered/);
    t.diagnostic(`question round trip (reaction → message edited): ${(performance.now() - reactedAt).toFixed(0)} ms`);
    assert.match(answered, /^❓ OpenCode asked alice-question-\w+: Deploy to production now\?\n\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n\n✅ Answered “No” by bob-question-\w+\.$/);
    assert.match(await waitForToolResult('"Deploy to production now?"='), /"Deploy to production now\?"="No"/, "the model got bob's answer, not mallory's");

    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /Tool question finished: User has answered your questions: "Deploy to production now\?"="No"\./);
    assert.deepEqual(env.query("SELECT status, answers_json, answered_by FROM questions WHERE message_event_id = ?", question.event_id), [
      { status: "answered", answers_json: '[["No"]]', answered_by: JSON.stringify([bob.userId]) },
    ]);
  });

  test("a message typed in the thread while a question waits is the answer, not a new prompt", async () => {
    const { root, sentAt, question } = await ask("question: Which colour should the button be?");
    await env.users.bob.sendText(env.roomId, "Purple, like the logo", { threadRoot: root });
    const answered = await waitForEdit(question.event_id, /Answered/);
    assert.match(answered, /\n\n✅ Answered “Purple, like the logo” by bob-question-\w+\.$/);
    assert.match(await waitForToolResult("Which colour"), /"Which colour should the button be\?"="Purple, like the logo"/);
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /="Purple, like the logo"/);
    assert.ok(!model.requests().some((r) => r.lastUserText.includes("Purple")), "the answer never reached the model as a prompt");
  });

  test("several questions are answered in order: a reaction, then `!oc answer <n>`; `!oc answer` with none pending says so", async () => {
    const { alice } = env.users;
    const { root, sentAt, question } = await ask("questions: Ship it? | Tell the team?");
    assert.match(String(question.content.body), /^❓ OpenCode asks alice-question-\w+ 2 questions:\n\n1\. Question 1 — Ship it\?\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n\n2\. Question 2 — Tell the team\?\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n\nAnswer in order — now question 1 of 2: react/);
    await alice.react(env.roomId, question.event_id, "1️⃣");
    const half = await waitForEdit(question.event_id, /now question 2 of 2/);
    assert.match(half, /Ship it\?\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n→ Yes — alice-question-\w+\n\n2\. Question 2/);
    await alice.sendText(env.roomId, "!oc answer 2", { threadRoot: root });
    const answered = await waitForEdit(question.event_id, /Answered/);
    assert.match(answered, /→ Yes — alice-question-\w+\n\n2\. Question 2 — Tell the team\?\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n→ No — alice-question-\w+\n\n✅ Answered by alice-question-\w+\.$/);
    assert.match(await waitForToolResult("Ship it?"), /"Ship it\?"="Yes", "Tell the team\?"="No"/);
    await waitForFinalReply(env, root, root, sentAt);
    assert.equal(await env.ask("!oc answer 1", { threadRoot: root }), "No question is waiting for an answer in this session.");
  });

  test("a pending question survives a bot restart; one dismissed elsewhere (the TUI) is closed in its thread", async (t) => {
    const first = await ask("question: Keep the old config?");
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0);
    assert.equal(await env.ask("!oc answer 7", { threadRoot: first.root }), "There is no option 7: pick 1–2, or write your own answer.");
    await env.users.alice.sendText(env.roomId, "1", { threadRoot: first.root });
    assert.match(await waitForEdit(first.question.event_id, /Answered/), /✅ Answered “Yes” by alice-question-\w+\.$/);
    assert.match(await waitForToolResult("Keep the old config?"), /="Yes"/);
    await waitForFinalReply(env, first.root, first.root, first.sentAt);

    const second = await ask("question: Delete the cache?");
    const [row] = env.query<{ request_id: string }>("SELECT request_id FROM questions WHERE message_event_id = ?", second.question.event_id);
    const client = createOpencodeClient({ baseUrl: server.url, directory: workspace });
    const res = await client.question.reject({ requestID: row!.request_id });
    assert.equal(res.error, undefined);
    assert.match(await waitForEdit(second.question.event_id, /Dismissed/), /^❓ OpenCode asked alice-question-\w+: Delete the cache\?\n\n1️⃣ Yes — Go ahead\n2️⃣ No — Stop here\n\n🚫 Dismissed without an answer\.$/);
    const dismissed = await waitForFinalReply(env, second.root, second.root, second.sentAt);
    t.diagnostic(`after the dismissal the turn ends: ${JSON.stringify(splitFooter(dismissed.body).text)}`);
  });
});

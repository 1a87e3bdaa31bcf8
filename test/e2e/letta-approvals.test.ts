import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { startScriptedModel, type ScriptedModel } from "../harness/scripted-model.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter } from "./env.ts";

// A Letta agent's tool approvals, shown and answered in its thread like OpenCode's permissions:
// the real Letta 0.16.8 of the stack, with an agent whose tool `deploy_preview` requires
// approval (default_requires_approval, a rule Letta adds when the tool is attached), thinking
// with this file's own scripted model ("deploy: <target>" calls the tool). Alice, Bob and
// Mallory are the room; the assertions are on what they read, the bot's database, and what
// reached the model.

let env: TestEnv;
let model: ScriptedModel;
let lettaUrl = "";
const agentName = `ops-${Date.now().toString(36)}`;
let agentId = "";
let toolId = "";
/** Request bodies the model received, in order. */
const bodies: Array<{ messages?: Array<{ role: string; content?: unknown }> }> = [];

type Rel = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const rel = (e: MatrixEvent): Rel => (e.content["m.relates_to"] as Rel | undefined) ?? {};
const bodyOf = (e: MatrixEvent): string => String(e.content.body);
const isFinal = (b: string): boolean => /\n— \S.*$/.test(b);

async function letta<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${lettaUrl}${path}`, { method, headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}

const toolSource = `def deploy_preview(target: str) -> str:
    """Deploys a preview of the app.

    Args:
        target (str): Where the preview goes.

    Returns:
        str: What was deployed.
    """
    return "preview of the app is live on " + target
`;

/** The newest version of a bot message once `ok` holds. */
async function waitForVersion(eventId: string, ok: (body: string) => boolean, description: string, timeoutMs = 60_000): Promise<string> {
  await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const b = e.event_id === eventId ? bodyOf(e) : rel(e).rel_type === "m.replace" && rel(e).event_id === eventId ? (e.content["m.new_content"] as { body: string }).body : undefined;
      return b !== undefined && ok(b);
    },
    description,
    timeoutMs,
  });
  return (await env.users.alice.latestBody(env.roomId, eventId)).body;
}

/** A bot message in the thread (not an edit) that replies to `replyTo`. */
const replyTo = (root: string, to: string, description: string, extra: (e: MatrixEvent) => boolean = () => true): Promise<MatrixEvent & { receivedAt: number }> =>
  env.waitForBot(description, (e) => rel(e).rel_type === "m.thread" && rel(e).event_id === root && rel(e)["m.in_reply_to"]?.event_id === to && extra(e), 60_000);

/** Sends a message that makes the agent call deploy_preview; returns the stopped turn's final text and the request. */
async function askDeploy(target: string, threadRoot?: string): Promise<{ root: string; prompt: string; stopped: string; request: MatrixEvent & { receivedAt: number } }> {
  const prompt = await env.users.alice.sendText(env.roomId, threadRoot ? `deploy: ${target}` : `!letta deploy: ${target}`, threadRoot ? { threadRoot } : {});
  const root = threadRoot ?? prompt;
  const reply = await replyTo(root, prompt, `the turn for ${target}`);
  const stopped = await waitForVersion(reply.event_id, isFinal, `the stopped turn for ${target}`);
  const request = await replyTo(root, reply.event_id, `the approval request for ${target}`, (e) => bodyOf(e).startsWith("🔐 Permission needed"));
  return { root, prompt, stopped, request };
}

/** The reactions the bot put on an event, as alice saw them. */
function botReactions(eventId: string): string[] {
  return env.users.alice
    .seenEvents(env.roomId)
    .filter((e) => e.type === "m.reaction" && e.sender === env.botUserId && rel(e).event_id === eventId)
    .map((e) => String((e.content["m.relates_to"] as { key?: string }).key));
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !ok(); ) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const status = (): Array<{ status: string; decided_by: string | null; reason: string | null }> =>
  env.query("SELECT status, decided_by, reason FROM letta_approvals ORDER BY id");

before(async () => {
  const stack = loadStackInfo();
  assert.ok(stack.letta, "the runner did not boot Letta: run this file through `npm test -- test/e2e/letta-approvals.test.ts`");
  lettaUrl = stack.letta.baseUrl;
  model = await startScriptedModel({ onRequestBody: (path, body) => void (path.endsWith("/chat/completions") && bodies.push(body as (typeof bodies)[number])) });
  const agent = await letta<{ id: string }>("POST", "/v1/agents/", {
    name: agentName,
    llm_config: { model: "fake-model", model_endpoint_type: "openai", model_endpoint: model.baseUrl, context_window: 30000 },
    embedding: stack.letta.embedding,
    memory_blocks: [{ label: "persona", value: "I deploy previews when asked." }],
  });
  agentId = agent.id;
  const tool = await letta<{ id: string }>("POST", "/v1/tools/", { source_code: toolSource, source_type: "python", default_requires_approval: true, tags: ["letta-approvals-test"] });
  toolId = tool.id;
  await letta("PATCH", `/v1/agents/${agentId}/tools/attach/${toolId}`);
  env = await TestEnv.create({
    name: "lapprove",
    editWindowMs: 300,
    botEnv: { LETTA_BASE_URL: lettaUrl, LETTA_MODEL: stack.letta.model, LETTA_EMBEDDING: stack.letta.embedding, BOT_COMPLETION_NOTICE_AFTER_MS: "0" },
  });
  await env.ask(`!letta use ${agentName}`);
  // Verbose: tool lines show what the tool returned.
  assert.match(await env.ask("!letta verbosity verbose"), /verbose/);
});

after(async () => {
  await env?.close();
  if (agentId) await fetch(`${lettaUrl}/v1/agents/${agentId}`, { method: "DELETE" }).catch(() => undefined);
  if (toolId) await fetch(`${lettaUrl}/v1/tools/${toolId}`, { method: "DELETE" }).catch(() => undefined);
  await model?.close();
});

describe("Letta tool approvals in the thread", () => {
  let root = "";

  test("Letta's rule is in place: attaching the tool made it require approval", async () => {
    const a = await letta<{ tool_rules?: Array<{ tool_name: string; type: string }> }>("GET", `/v1/agents/${agentId}`);
    assert.ok(a.tool_rules?.some((r) => r.tool_name === "deploy_preview" && r.type === "requires_approval"), JSON.stringify(a.tool_rules));
  });

  test("the request mentions Alice with ✅/❌ (no ♾️); a stranger's ✅ is ignored; Alice's ✅ runs the tool and the agent's answer streams in", async (t) => {
    const { alice, mallory } = env.users;
    const sentAt = performance.now();
    const asked = await askDeploy("staging");
    root = asked.root;
    const { request } = asked;
    t.diagnostic(`approval request visible ${(request.receivedAt - sentAt).toFixed(0)} ms after the prompt`);
    // The stopped turn says it waits; the request is its push.
    assert.match(splitFooter(asked.stopped).text, /^🔐 deploy_preview needs approval\n\n⏸️ Waiting for approval: the agent asks to run a tool \(the request is below\)\.$/);
    assert.equal(
      bodyOf(request),
      `🔐 Permission needed — ${alice.userId.slice(1).split(":")[0]}: Letta agent ${agentName} wants to use deploy_preview: target: "staging"\n\n` +
        '```\ntarget: "staging"\n```\n\nReact ✅ allow · ❌ deny — or write !letta allow or !letta deny [reason] in this thread. (It asks again for each call: there is no “allow always”.)',
    );
    assert.deepEqual(request.content["m.mentions"], { user_ids: [alice.userId] });
    assert.equal(request.content.msgtype, "m.text", "a text message, so that it pushes");
    await until("the bot's reactions", () => botReactions(request.event_id).length >= 2);
    assert.deepEqual(botReactions(request.event_id).sort(), ["✅", "❌"].sort());
    // One push for the stopped turn: the request. No "done" notice mentions Alice.
    await new Promise((r) => setTimeout(r, 1000));
    const pushes = (await env.botReplies(root)).filter((e) => (e.content["m.mentions"] as { user_ids?: string[] } | undefined)?.user_ids?.includes(alice.userId));
    assert.deepEqual(pushes.map((e) => e.event_id), [request.event_id], "the request is the only push so far");
    assert.deepEqual(status(), [{ status: "pending", decided_by: null, reason: null }]);

    await mallory.react(env.roomId, request.event_id, "✅");
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(status(), [{ status: "pending", decided_by: null, reason: null }], "the stranger's reaction decided nothing");

    const reactedAt = performance.now();
    await alice.react(env.roomId, request.event_id, "✅");
    const decided = await waitForVersion(request.event_id, (b) => b.includes("allowed"), "the request answered");
    assert.match(decided, new RegExp(`^🔐 Letta agent ${agentName} asked to use deploy_preview:\\n\\n\`\`\`\\ntarget: "staging"\\n\`\`\`\\n\\n✅ allowed by alice-lapprove-\\w+\\.$`));
    const next = await replyTo(root, request.event_id, "the turn that continues after the approval");
    const final = await waitForVersion(next.event_id, isFinal, "the continued turn's final text");
    t.diagnostic(`✅ → continued answer complete after ${(performance.now() - reactedAt).toFixed(0)} ms`);
    const { text, footer } = splitFooter(final);
    assert.equal(text, "🔐 deploy_preview allowed\n🔧 deploy_preview ✓\n```\npreview of the app is live on staging\n```\n\nPreview deployed: preview of the app is live on staging");
    assert.match(footer, new RegExp(`^— letta ${agentName} · `));
    assert.deepEqual(status(), [{ status: "allowed", decided_by: alice.userId, reason: null }]);
    // The continued turn's end pushes Alice.
    await env.waitForBot("the continued turn's push", (e) => rel(e).event_id === root && bodyOf(e).startsWith("✅") && bodyOf(e).includes("Preview deployed"));
  });

  test("`!letta deny <reason>` denies; the model is told why and the agent answers", async () => {
    const { request } = await askDeploy("production", root);
    const before = bodies.length;
    const answer = await env.ask("!letta deny not now", { threadRoot: root, as: "bob" });
    assert.equal(answer, "❌ denied: the agent's request to run **deploy_preview** — “not now”. Its answer follows in this thread.");
    const decided = await waitForVersion(request.event_id, (b) => b.includes("denied"), "the request denied");
    assert.match(decided, /```\ntarget: "production"\n```\n\n❌ denied by bob-lapprove-\w+ — “not now”\.$/);
    const next = await replyTo(root, request.event_id, "the turn after the denial");
    const { text } = splitFooter(await waitForVersion(next.event_id, isFinal, "its final text"));
    assert.equal(text, "🔐 deploy_preview denied\n\nThe deploy_preview call was denied.");
    const told = bodies.slice(before).map((b) => JSON.stringify(b.messages?.[b.messages.length - 1] ?? {}));
    assert.ok(told.some((m) => m.includes('"role":"tool"') && m.includes("denied") && m.includes("not now")), `the model got the denial and the reason: ${told.join("\n")}`);
    assert.deepEqual(status()[1], { status: "denied", decided_by: env.users.bob.userId, reason: "not now" });
  });

  test("with nothing pending, `!letta allow` says so", async () => {
    assert.equal(await env.ask("!letta allow", { threadRoot: root }), "No permission request is pending in this thread.");
  });

  test("while a request waits, a message to the agent says what to do; `allow always` is refused (Letta has none); ❌ denies", async () => {
    const { request } = await askDeploy("dev", root);
    const prompt = await env.users.bob.sendText(env.roomId, "what now?", { threadRoot: root });
    const reply = await replyTo(root, prompt, "the answer to the message sent while the request waits");
    const { text } = splitFooter(await waitForVersion(reply.event_id, isFinal, "its final text"));
    assert.match(text, /^⚠️ \*\*Letta error:\*\* .*waiting for approval.*\n\nAnswer the agent's pending approval request first \(✅ or ❌ on it\), then send this message again\.$/s);
    assert.equal(
      await env.ask("!letta allow always", { threadRoot: root }),
      "Letta asks again for each call: it has no “allow always”. Write `!letta allow` to allow **deploy_preview** this time.",
    );
    assert.equal(await env.ask("!letta abort", { threadRoot: root }), "⏸️ The agent waits for approval of a tool call here: `!letta deny [reason]` answers it.");
    await env.users.alice.react(env.roomId, request.event_id, "❌");
    await waitForVersion(request.event_id, (b) => b.includes("❌ denied by"), "the request denied by reaction");
    const next = await replyTo(root, request.event_id, "the turn after the ❌");
    assert.equal(splitFooter(await waitForVersion(next.event_id, isFinal, "its final text")).text, "🔐 deploy_preview denied\n\nThe deploy_preview call was denied.");
  });

  test("a pending request survives a bot restart and is answered afterwards", async () => {
    const { request } = await askDeploy("qa", root);
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0);
    await env.users.alice.react(env.roomId, request.event_id, "✅");
    await waitForVersion(request.event_id, (b) => b.includes("✅ allowed by"), "the request answered after the restart");
    const next = await replyTo(root, request.event_id, "the turn after the restart");
    const { text } = splitFooter(await waitForVersion(next.event_id, isFinal, "its final text"));
    assert.match(text, /🔧 deploy_preview ✓\n```\npreview of the app is live on qa\n```\n\nPreview deployed: preview of the app is live on qa$/);
    assert.deepEqual(status().map((r) => r.status), ["allowed", "denied", "denied", "allowed"]);
  });

  test("a bot killed after the turn stopped but before it posted the request posts it at the next start", async () => {
    await env.restartBotWith({ BOT_TEST_CRASH_AT: "final-edit" }, "SIGTERM");
    const prompt = await env.users.alice.sendText(env.roomId, "deploy: canary", { threadRoot: root });
    const exit = await Promise.race([env.bot.exited, new Promise<"alive">((r) => setTimeout(() => r("alive"), 60_000).unref())]);
    assert.notEqual(exit, "alive", "the bot died right after the stopped turn's final edit");
    const recorded = env.query<{ status: string; message_event_id: string | null }>("SELECT status, message_event_id FROM letta_approvals ORDER BY id DESC LIMIT 1");
    assert.deepEqual(recorded, [{ status: "pending", message_event_id: null }], "recorded, not posted");
    await env.restartBotWith({ BOT_TEST_CRASH_AT: undefined });
    const reply = await replyTo(root, prompt, "the stopped turn's reply");
    const request = await replyTo(root, reply.event_id, "the request posted after the restart", (e) => bodyOf(e).startsWith("🔐 Permission needed"));
    assert.match(bodyOf(request), /wants to use deploy_preview: target: "canary"\n/);
    await env.users.alice.react(env.roomId, request.event_id, "✅");
    const next = await replyTo(root, request.event_id, "the turn after the ✅");
    assert.match(splitFooter(await waitForVersion(next.event_id, isFinal, "its final text")).text, /Preview deployed: preview of the app is live on canary$/);
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { startScriptedModel, type ScriptedModel } from "../harness/scripted-model.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter } from "./env.ts";

// A Letta agent delegates a coding task to OpenCode through the bot's MCP tools, and the room
// sees and controls it: the real Letta 0.16.8 of the stack; this file's own scripted model
// (so that its delegation scripts are there whatever model the stack booted) behind both the
// agent and its own `opencode serve`. Alice, Bob and Mallory are the room; every assertion is
// on what they read, on the bot's database, or on what reached the model.

let env: TestEnv;
let model: ScriptedModel;
let oc: TestOpencode;
let lettaUrl = "";
let workspace = "";
const agentName = `coder-${Date.now().toString(36)}`;
let agentId = "";
let secondAgent = "";
/** Request bodies the model received, in order. */
const bodies: Array<{ messages?: Array<{ role: string; content?: unknown }>; at?: number }> = [];

type Rel = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const rel = (e: MatrixEvent): Rel => (e.content["m.relates_to"] as Rel | undefined) ?? {};
const bodyOf = (e: MatrixEvent): string => String(e.content.body);

async function letta<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${lettaUrl}${path}`, { method, headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}

/** The newest version of a bot message as alice sees it, once `ok` holds. */
async function waitForVersion(eventId: string, ok: (body: string) => boolean, description: string, timeoutMs = 60_000): Promise<{ body: string; at: number }> {
  const hit = await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const b = e.event_id === eventId ? bodyOf(e) : rel(e).rel_type === "m.replace" && rel(e).event_id === eventId ? (e.content["m.new_content"] as { body: string }).body : undefined;
      return b !== undefined && ok(b);
    },
    description,
    timeoutMs,
  });
  return { body: (await env.users.alice.latestBody(env.roomId, eventId)).body, at: hit.receivedAt };
}

/** A bot message in the thread (not an edit) matching `match`. */
function inThread(root: string, description: string, match: (e: MatrixEvent) => boolean, timeoutMs = 60_000): Promise<MatrixEvent & { receivedAt: number }> {
  return env.waitForBot(description, (e) => rel(e).rel_type === "m.thread" && rel(e).event_id === root && match(e), timeoutMs);
}

const isFinal = (b: string): boolean => /\n— \S.*$/.test(b);

/** Everything one delegation shows in its thread, as alice sees it. */
async function delegationIn(root: string): Promise<{ headline: MatrixEvent & { receivedAt: number }; ocReply: MatrixEvent & { receivedAt: number }; permission: MatrixEvent & { receivedAt: number } }> {
  const headline = await inThread(root, "the delegation headline", (e) => bodyOf(e).startsWith("🛠️ Letta → OpenCode: ") && rel(e)["m.in_reply_to"]?.event_id !== undefined);
  const ocReply = await inThread(root, "OpenCode's reply under the headline", (e) => rel(e)["m.in_reply_to"]?.event_id === headline.event_id && !bodyOf(e).startsWith("🔐"));
  const permission = await inThread(root, "the permission request", (e) => bodyOf(e).startsWith("🔐 Permission needed"));
  return { headline, ocReply, permission };
}

/** The n-th delegation (1-based) once recorded, and the permission request asked under its headline. */
async function nthDelegation(n: number): Promise<{ sessionId: string; headline: string; permission: MatrixEvent & { receivedAt: number } }> {
  let row: { session_id: string; headline_event_id: string } | undefined;
  for (let i = 0; i < 600 && !row; i++) {
    row = env.query<{ session_id: string; headline_event_id: string }>("SELECT session_id, headline_event_id FROM mcp_delegations ORDER BY started_at LIMIT 1 OFFSET ?", n - 1)[0];
    if (!row) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(row, `delegation ${n} recorded`);
  const headline = row.headline_event_id;
  const permission = await env.waitForBot(`the permission request of delegation ${n}`, (e) => rel(e)["m.in_reply_to"]?.event_id === headline && bodyOf(e).startsWith("🔐 Permission needed"), 60_000);
  return { sessionId: row.session_id, headline, permission };
}

async function sessionMessages(sessionId: string): Promise<Array<{ info: { role: string }; parts: Array<{ type: string; tool?: string; state?: { status?: string } }> }>> {
  const res = await fetch(`${oc.url}/session/${sessionId}/message?directory=${encodeURIComponent(workspace)}`);
  assert.equal(res.status, 200);
  return (await res.json()) as Array<{ info: { role: string }; parts: Array<{ type: string; tool?: string; state?: { status?: string } }> }>;
}

before(async () => {
  const stack = loadStackInfo();
  assert.ok(stack.letta, "the runner did not boot Letta: run this file through `npm test -- test/e2e/letta-delegation.test.ts`");
  lettaUrl = stack.letta.baseUrl;
  model = await startScriptedModel({ onRequestBody: (path, body) => void (path.endsWith("/chat/completions") && bodies.push({ ...(body as (typeof bodies)[number]), at: performance.now() })) });
  workspace = mkdtempSync(join(stack.workDir, "deleg-ws-"));
  oc = await startTestOpencode({ workspaceDir: workspace, stateDir: mkdtempSync(join(stack.workDir, "deleg-oc-")), modelBaseUrl: model.baseUrl });
  // The agent thinks with this file's model: its llm_config points there (no provider to register).
  const created = await letta<{ id: string }>("POST", "/v1/agents/", {
    name: agentName,
    llm_config: { model: "fake-model", model_endpoint_type: "openai", model_endpoint: model.baseUrl, context_window: 30000 },
    embedding: stack.letta.embedding,
    memory_blocks: [{ label: "persona", value: "I help a team in a Matrix room and hand coding work to OpenCode." }],
  });
  agentId = created.id;
  env = await TestEnv.create({
    name: "deleg",
    editWindowMs: 300,
    botEnv: {
      LETTA_BASE_URL: lettaUrl,
      LETTA_MODEL: stack.letta.model,
      LETTA_EMBEDDING: stack.letta.embedding,
      LETTA_DELEGATE_TO_OPENCODE: "true",
      OPENCODE_SERVER_URL: oc.url,
      OPENCODE_WORKSPACE_DIR: workspace,
      BOT_ADMINS: "@alice-deleg-*:localhost",
    },
  });
});

after(async () => {
  await env?.close();
  for (const id of [agentId, secondAgent]) if (id) await fetch(`${lettaUrl}/v1/agents/${id}`, { method: "DELETE" }).catch(() => undefined);
  await oc?.stop();
  await model?.close();
});

describe("a Letta agent delegates coding tasks to OpenCode", () => {
  test("`!letta use` gives the agent the OpenCode tools and a secret of its own", async () => {
    const answer = await env.ask(`!letta use ${agentName}`);
    assert.match(answer, /^This room now talks to Letta agent \*\*coder-\w+\*\*/);
    assert.match(answer, /\n🛠️ It can hand coding tasks to OpenCode; their work streams into its threads here \(`!letta delegate off` stops that\)\.$/);
    const tools = (await letta<{ tools: Array<{ name: string }> }>("GET", `/v1/agents/${agentId}?include=agent.tools`)).tools.map((t) => t.name);
    for (const name of ["opencode_run_task", "opencode_send_message", "opencode_task_status", "opencode_read_file"]) assert.ok(tools.includes(name), `${name} attached: ${tools.join(", ")}`);
    const secrets = (await letta<{ secrets: Array<{ key: string; value: string }> }>("GET", `/v1/agents/${agentId}?include=agent.secrets`)).secrets;
    const url = secrets.find((s) => s.key === "MATRIX_BOT_MCP_URL")?.value;
    const token = secrets.find((s) => s.key === "MATRIX_BOT_MCP_TOKEN")?.value ?? "";
    assert.equal(url, `http://127.0.0.1:${env.bot.httpPort}/mcp`);
    assert.match(token, /^mab_[\w-]{40,}$/);
    const rows = env.query<{ agent_id: string; token_hash: string }>("SELECT agent_id, token_hash FROM mcp_agents");
    assert.deepEqual(rows.map((r) => r.agent_id), [agentId]);
    assert.notEqual(rows[0]?.token_hash, token, "only a hash is stored");
    assert.ok(!env.bot.text.includes(token), "the token is never logged");
  });

  test("POST /mcp wants the agent's token: none or a wrong one gets 401; a call outside a running thread is refused", async () => {
    const url = `http://127.0.0.1:${env.bot.httpPort}/mcp`;
    const call = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "opencode_run_task", arguments: { title: "x", prompt: "y" } } };
    const post = (headers: Record<string, string>): Promise<Response> =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers }, body: JSON.stringify(call) });
    const none = await post({});
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal((await post({ authorization: "Bearer mab_not-a-token-the-bot-issued" })).status, 401);
    assert.equal((await post({ authorization: "Basic YTpi" })).status, 401);
    const secrets = (await letta<{ secrets: Array<{ key: string; value: string }> }>("GET", `/v1/agents/${agentId}?include=agent.secrets`)).secrets;
    const token = secrets.find((s) => s.key === "MATRIX_BOT_MCP_TOKEN")?.value ?? "";
    const list = await fetch(url, { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${token}` }, body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }) });
    const names = ((await list.json()) as { result: { tools: Array<{ name: string }> } }).result.tools.map((t) => t.name).sort();
    assert.deepEqual(names, ["opencode_read_file", "opencode_run_task", "opencode_send_message", "opencode_task_status"]);
    // The right token, but the agent has no turn running in a thread: no anonymous OpenCode.
    const direct = await post({ authorization: `Bearer ${token}` });
    assert.equal(direct.status, 200);
    const result = ((await direct.json()) as { result: { isError: boolean; content: Array<{ text: string }> } }).result;
    assert.equal(result.isError, true);
    assert.match(result.content[0]?.text ?? "", /^Refused: this call is not part of a conversation in a Matrix thread/);
    assert.equal(env.query("SELECT * FROM mcp_delegations").length, 0);
  });

  let root = "";
  test("the thread shows the delegation and OpenCode's stream; Alice's ✅ runs the command; the result goes back to the agent, whose answer reaches the thread", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const sentAtWall = Date.now();
    root = await alice.sendText(env.roomId, "!letta our login form accepts empty passwords, get it fixed");
    const { headline, ocReply, permission } = await delegationIn(root);
    assert.match(bodyOf(headline), /^🛠️ Letta → OpenCode: Fix empty-password login\n\nOpenCode session `ses_\w+` · `!oc attach ses_\w+` \(at the top level\) continues it by hand\.$/);
    const sessionId = /`(ses_\w+)`/.exec(bodyOf(headline))?.[1] as string;
    const firstLine = await waitForVersion(ocReply.event_id, (b) => b.includes("✏️ write login.py"), "OpenCode's write line");
    // The request says what is asked and mentions Alice, with the usual reactions.
    assert.match(bodyOf(permission), /^🔐 Permission needed — alice-deleg-\w+: OpenCode wants to use bash:\n\n```\necho login tests passed\n```\n\n/);
    assert.match(bodyOf(permission), /or write `!letta allow`, `!letta allow always`, `!letta deny \[reason\]` in this thread\.$/);
    assert.deepEqual(permission.content["m.mentions"], { user_ids: [alice.userId] });
    await alice.react(env.roomId, permission.event_id, "✅");
    const decided = await waitForVersion(permission.event_id, (b) => b.includes("allowed once"), "the request answered");
    assert.match(decided.body, /✅ allowed once by alice-deleg-\w+\.$/);

    const ocFinal = await waitForVersion(ocReply.event_id, isFinal, "OpenCode's final reply");
    const { text } = splitFooter(ocFinal.body);
    assert.match(text, /✏️ write login\.py ✓/);
    assert.match(text, /▶️ bash `echo login tests passed` ✓/);
    assert.match(text, /Fixed: login\.py refuses empty passwords, and the login tests pass\.$/);
    assert.equal(readFileSync(join(workspace, "login.py"), "utf8").includes('raise ValueError("empty password")'), true);

    // The agent's own reply (to Alice's message) ends with its answer in its own words.
    const agentReply = await env.waitForBot("the agent's reply", (e) => rel(e).rel_type === "m.thread" && rel(e).event_id === root && rel(e)["m.in_reply_to"]?.event_id === root);
    const final = await waitForVersion(agentReply.event_id, isFinal, "the agent's final answer", 90_000);
    const call = env.bot.lines.map((l) => (l.startsWith("{") ? (JSON.parse(l) as { msg?: string; tool?: string; time?: number }) : {})).find((l) => l.msg === "MCP call" && l.tool === "opencode_run_task");
    t.diagnostic(`the tool call reached the bot ${String((call?.time ?? Number.NaN) - sentAtWall)} ms after alice sent (Letta: model step + tool sandbox)`);
    t.diagnostic(
      `alice's view: headline after ${(headline.receivedAt - sentAt).toFixed(0)} ms, first OpenCode line (✏️ write) after ${(firstLine.at - sentAt).toFixed(0)} ms, ` +
        `permission request after ${(permission.receivedAt - sentAt).toFixed(0)} ms, OpenCode final after ${(ocFinal.at - sentAt).toFixed(0)} ms, agent's final answer after ${(final.at - sentAt).toFixed(0)} ms`,
    );
    const agentText = splitFooter(final.body).text;
    assert.match(agentText, /🔧 opencode_run_task ✓/);
    assert.match(agentText, /Done\. OpenCode says: Fixed: login\.py refuses empty passwords, and the login tests pass\. Changed: login\.py\.$/);

    // The agent's next model request carried the tool's result with OpenCode's final text.
    const withResult = bodies.filter((b) => {
      const last = b.messages?.[b.messages.length - 1];
      return last?.role === "tool" && JSON.stringify(last.content).includes("Fixed: login.py refuses empty passwords, and the login tests pass.");
    });
    assert.equal(withResult.length, 1, "one model request with the result");
    const rows = env.query<{ session_id: string; status: string; delivered: string; prompted_by: string; room_id: string; root_event_id: string }>(
      "SELECT session_id, status, delivered, prompted_by, room_id, root_event_id FROM mcp_delegations",
    );
    assert.deepEqual(rows, [{ session_id: sessionId, status: "done", delivered: "tool", prompted_by: alice.userId, room_id: env.roomId, root_event_id: root }]);
    // The session has no OpenCode thread of its own: `!oc attach` maps it for follow-ups by hand.
    assert.equal(env.query("SELECT * FROM threads WHERE session_id = ?", sessionId).length, 0);
    await alice.sendText(env.roomId, `!oc attach ${sessionId}`);
    const attachRoot = await env.waitForBot("the attached thread's root", (e) => bodyOf(e).startsWith("📎 **Fix empty-password login** — attached OpenCode session"));
    assert.ok(attachRoot.event_id);
    assert.deepEqual(env.query<{ backend: string }>("SELECT backend FROM threads WHERE session_id = ?", sessionId), [{ backend: "opencode" }]);
  });

  test("a thread the bot does not know cannot delegate: the agent asked through Letta's own API is refused", async (t) => {
    const before = env.query("SELECT * FROM mcp_delegations").length;
    const sessions = (await (await fetch(`${oc.url}/session?directory=${encodeURIComponent(workspace)}`)).json()) as unknown[];
    // Streamed, as the bot and the ADE do.
    const askedAt = performance.now();
    const streamed = await fetch(`${lettaUrl}/v1/agents/${agentId}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-stainless-package-version": "1.12.1" },
      body: JSON.stringify({ messages: [{ role: "user", content: "[mallory] our login form accepts empty passwords, get it fixed" }], streaming: true, stream_tokens: true, include_pings: true }),
    });
    assert.equal(streamed.status, 200);
    const res = { messages: (await streamed.text()).split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)) as { message_type: string; tool_return?: string; status?: string; content?: string }) };
    t.diagnostic(`Letta answered the direct message in ${(performance.now() - askedAt).toFixed(0)} ms; model requests at ${bodies.filter((b) => (b.at ?? 0) > askedAt).map((b) => `${((b.at ?? 0) - askedAt).toFixed(0)} ms`).join(", ")}`);
    const ret = res.messages.find((m) => m.message_type === "tool_return_message");
    assert.equal(ret?.status, "error");
    assert.match(ret?.tool_return ?? "", /Refused: this call is not part of a conversation in a Matrix thread the bot is running/);
    assert.match(res.messages.filter((m) => m.message_type === "assistant_message").map((m) => m.content ?? "").join(""), /^OpenCode could not take the task: /);
    assert.equal(env.query("SELECT * FROM mcp_delegations").length, before, "no delegation");
    const after = (await (await fetch(`${oc.url}/session?directory=${encodeURIComponent(workspace)}`)).json()) as unknown[];
    assert.equal(after.length, sessions.length, "no OpenCode session was created");
  });

  test("`!letta abort` stops the delegated OpenCode work too", async () => {
    const { alice } = env.users;
    await alice.sendText(env.roomId, "the signup form too, get it fixed", { threadRoot: root });
    const { sessionId, permission } = await nthDelegation(2);
    const answer = await env.ask("!letta abort", { threadRoot: root });
    assert.ok(answer.startsWith(`⏹️ Stopped the OpenCode work delegated here (\`${sessionId}\`).`), answer);
    await waitForVersion(permission.event_id, (b) => /rejected|no longer pending/.test(b), "the request closed");
    for (let i = 0; i < 100 && env.query<{ status: string }>("SELECT status FROM mcp_delegations WHERE session_id = ?", sessionId)[0]?.status === "running"; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(env.query("SELECT status FROM mcp_delegations WHERE session_id = ?", sessionId), [{ status: "aborted" }]);
    const bash = (await sessionMessages(sessionId)).flatMap((m) => m.parts).filter((p) => p.tool === "bash");
    assert.ok(bash.every((p) => p.state?.status !== "completed"), "the command never ran");
  });

  test("a bot restart during the delegated turn loses nothing and doubles nothing", async (t) => {
    const { alice } = env.users;
    await alice.sendText(env.roomId, "and the admin form, get it fixed", { threadRoot: root });
    const { sessionId, headline, permission } = await nthDelegation(3);
    // The waiting tool call answers "still running" before the bot goes; the agent says so.
    const restartAt = performance.now();
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0);
    t.diagnostic(`restart took ${(performance.now() - restartAt).toFixed(0)} ms`);
    await alice.react(env.roomId, permission.event_id, "✅");
    await waitForVersion(permission.event_id, (b) => b.includes("allowed once"), "the request answered after the restart");
    const notice = await inThread(root, "the result handed to the agent", (e) => bodyOf(e).startsWith("📨 OpenCode's result for **Fix empty-password login** (done) goes to"), 90_000);
    const answer = await env.waitForBot("the agent's answer to the result", (e) => rel(e)["m.in_reply_to"]?.event_id === notice.event_id, 60_000);
    const final = await waitForVersion(answer.event_id, isFinal, "the agent's final answer after the restart", 90_000);
    assert.match(splitFooter(final.body).text, /^Done\. OpenCode says: Fixed: login\.py refuses empty passwords, and the login tests pass\./);

    // Nothing doubled: one session for the task, one prompt in it, the command run once, the result delivered once.
    const messages = await sessionMessages(sessionId);
    assert.equal(messages.filter((m) => m.info.role === "user").length, 1, "the prompt reached OpenCode once");
    assert.equal(messages.flatMap((m) => m.parts).filter((p) => p.tool === "bash" && p.state?.status === "completed").length, 1, "the command ran once");
    assert.deepEqual(env.query("SELECT status, delivered FROM mcp_delegations WHERE session_id = ?", sessionId), [{ status: "done", delivered: "message" }]);
    const told = (await letta<Array<{ message_type: string; content?: unknown }>>("GET", `/v1/agents/${agentId}/messages?limit=200`))
      .filter((m) => m.message_type === "user_message" && JSON.stringify(m.content).includes(sessionId));
    assert.equal(told.length, 1, "the result reached the agent once");
    // OpenCode's reply of that turn was finished in place after the restart, not posted twice.
    const ocReplies = (await env.botReplies(root)).filter((e) => rel(e)["m.in_reply_to"]?.event_id === headline && !bodyOf(e).startsWith("🔐") && !bodyOf(e).startsWith("📨"));
    assert.equal(ocReplies.length, 1, "one OpenCode reply for the task");
    assert.ok(isFinal((await env.users.alice.latestBody(env.roomId, ocReplies[0]!.event_id)).body), "finished in place");
  });

  test("`!letta delegate off` keeps the room's agent from OpenCode; `!letta new` agents get the tools too", async () => {
    const { alice } = env.users;
    assert.equal(await env.ask("!letta delegate", { as: "bob" }), "`!letta delegate [on|off]` needs room moderator rights (power level ≥ 50).");
    assert.equal(await env.ask("!letta delegate off"), "⛔ This room's Letta agent may not hand tasks to OpenCode.");
    const before = env.query("SELECT * FROM mcp_delegations").length;
    const prompt = await alice.sendText(env.roomId, "the reset form, get it fixed", { threadRoot: root });
    const reply = await env.waitForBot("the agent's answer without OpenCode", (e) => rel(e)["m.in_reply_to"]?.event_id === prompt);
    const final = await waitForVersion(reply.event_id, isFinal, "its final version", 90_000);
    assert.match(splitFooter(final.body).text, /^🔧 opencode_run_task ✗ .*\n\nOpenCode could not take the task: .*turned delegation to OpenCode off/s);
    assert.equal(env.query("SELECT * FROM mcp_delegations").length, before, "nothing was delegated");
    assert.equal(await env.ask("!letta delegate on"), "✅ This room's Letta agent may hand coding tasks to OpenCode; the work streams into its thread.");

    const made = await env.ask(`!letta new ${agentName}-2`);
    assert.match(made, /^Created Letta agent \*\*coder-\w+-2\*\* \(`(agent-[0-9a-f-]+)`/);
    assert.match(made, /\n🛠️ It can hand coding tasks to OpenCode;/);
    secondAgent = /`(agent-[0-9a-f-]+)`/.exec(made)?.[1] ?? "";
    const tools = (await letta<{ tools: Array<{ name: string }> }>("GET", `/v1/agents/${secondAgent}?include=agent.tools`)).tools.map((x) => x.name);
    assert.ok(tools.includes("opencode_run_task"), tools.join(", "));
  });
});

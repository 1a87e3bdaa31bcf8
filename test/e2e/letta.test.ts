import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Letta behind `!letta`, against the real Letta 0.16.8 server the runner boots (test/harness/
// letta-server.ts) with the scripted model behind it. Alice (the room's creator) and Bob write
// in the room; every assertion is on what they read. The bot reaches Letta through a small
// proxy in this file, so a test can make Letta answer 503 or vanish without disturbing the
// shared server.

/** An HTTP pass-through to Letta that can answer 503 a few times or stop listening. */
class LettaProxy {
  readonly upstream: URL;
  private server: http.Server | undefined;
  port = 0;
  failures = 0;
  /** Message POSTs to pass to Letta whose answer the proxy then replaces with a 502 (a gateway that timed out after Letta took it). */
  swallow = 0;
  /** POSTs of user messages that reached the proxy (including the ones it failed). */
  messagePosts = 0;

  constructor(upstream: string) {
    this.upstream = new URL(upstream);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const server = http.createServer((req, res) => {
      const messagePost = req.method === "POST" && /^\/v1\/agents\/[^/]+\/messages/.test(req.url ?? "");
      if (messagePost) this.messagePosts++;
      // The outage hits sending a message; the bot's questions to Letta (did it take the message?) get through.
      if (this.failures > 0 && messagePost) {
        this.failures--;
        req.resume();
        res.writeHead(503, { "content-type": "application/json" });
        res.end(JSON.stringify({ detail: "scripted outage" }));
        return;
      }
      const swallowed = this.swallow > 0 && req.method === "POST" && /^\/v1\/agents\/[^/]+\/messages/.test(req.url ?? "");
      if (swallowed) this.swallow--;
      const upstream = http.request(
        { host: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: this.upstream.host } },
        (up) => {
          if (swallowed) {
            up.resume();
            res.writeHead(502, { "content-type": "application/json" });
            res.end(JSON.stringify({ detail: "scripted gateway timeout" }));
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening: the bot's connections are refused, as if the server were down. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

let env: TestEnv;
let proxy: LettaProxy;
let lettaUrl = "";
const agentName = `pal-${Date.now().toString(36)}`;
let agentId = "";
let root = "";

const rel = (e: MatrixEvent): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined) ?? {};

/** Sends `body` (at the top level or in a thread) and returns the bot's threaded answer to it. */
async function ask(body: string, opts: { as?: "alice" | "bob"; threadRoot?: string } = {}): Promise<string> {
  const user = env.users[opts.as ?? "alice"];
  const id = await user.sendText(env.roomId, body, opts.threadRoot ? { threadRoot: opts.threadRoot } : {});
  const answer = await env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    type: "m.room.message",
    match: (e) => rel(e).rel_type === "m.thread" && rel(e)["m.in_reply_to"]?.event_id === id,
    description: `the answer to ${body}`,
    timeoutMs: 30_000,
  });
  return String(answer.content.body);
}

/** Waits until the bot's reply to `promptId` shows a version for which `ok` holds; returns that body. */
async function waitForReplyVersion(promptId: string, ok: (body: string) => boolean, description: string, timeoutMs = 30_000): Promise<{ replyId: string; body: string; at: number }> {
  const alice = env.users.alice;
  const first = await alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    type: "m.room.message",
    match: (e) => rel(e).rel_type === "m.thread" && rel(e)["m.in_reply_to"]?.event_id === promptId,
    description: `the reply to ${promptId}`,
    timeoutMs,
  });
  const bodyOf = (e: MatrixEvent): string | undefined => {
    if (e.event_id === first.event_id) return String(e.content.body);
    if (rel(e).rel_type === "m.replace" && rel(e).event_id === first.event_id) return (e.content["m.new_content"] as { body: string }).body;
    return undefined;
  };
  const hit = await alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => {
      const b = bodyOf(e);
      return b !== undefined && ok(b);
    },
    description,
    timeoutMs,
  });
  return { replyId: first.event_id, body: bodyOf(hit) as string, at: hit.receivedAt };
}

/** When alice first saw a version of `replyId` containing `text` (performance.now() time). */
function firstSeenWith(replyId: string, text: string): number | undefined {
  for (const e of env.users.alice.seenEvents(env.roomId)) {
    const body = e.event_id === replyId ? String(e.content.body) : rel(e).rel_type === "m.replace" && rel(e).event_id === replyId ? (e.content["m.new_content"] as { body: string }).body : undefined;
    if (body?.includes(text)) return e.receivedAt;
  }
  return undefined;
}

async function lettaUserMessages(id: string): Promise<string[]> {
  const res = await fetch(`${lettaUrl}/v1/agents/${id}/messages?limit=100`, { headers: { "x-stainless-package-version": "1.12.1" } });
  assert.equal(res.status, 200);
  const messages = (await res.json()) as Array<{ message_type: string; content?: unknown }>;
  return messages
    .filter((m) => m.message_type === "user_message")
    .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content)));
}

/** The bot's own timing of its Letta turns (log lines "letta turn finished"), oldest first. */
function turnLogs(): Array<{ status: string; acceptedMs?: number; firstOutputMs?: number; totalMs: number }> {
  return env.bot.lines
    .filter((l) => l.includes('"letta turn finished"'))
    .map((l) => JSON.parse(l) as { status: string; acceptedMs?: number; firstOutputMs?: number; totalMs: number });
}
async function nthTurnLog(n: number): Promise<ReturnType<typeof turnLogs>[number] | undefined> {
  for (let i = 0; i < 50 && turnLogs().length < n; i++) await new Promise((r) => setTimeout(r, 100));
  return turnLogs()[n - 1];
}
const botSide = (l: { acceptedMs?: number; firstOutputMs?: number; totalMs: number } | undefined): string =>
  l ? `bot side: Letta accepted after ${String(l.acceptedMs)} ms, first output ${String(l.firstOutputMs)} ms, complete ${l.totalMs} ms` : "no bot log";

const chatRequests = async (): Promise<string[]> => (await env.modelRequests()).filter((r) => r.kind === "chat").map((r) => r.lastUserText);

before(async () => {
  const stack = loadStackInfo();
  assert.ok(stack.letta, "the runner did not boot Letta: run this file through `npm test -- test/e2e/letta.test.ts`");
  lettaUrl = stack.letta.baseUrl;
  proxy = new LettaProxy(lettaUrl);
  await proxy.up();
  env = await TestEnv.create({
    name: "letta",
    editWindowMs: 300,
    botEnv: {
      LETTA_BASE_URL: proxy.url,
      LETTA_MODEL: stack.letta.model,
      LETTA_EMBEDDING: stack.letta.embedding,
      LETTA_RETRY_DELAY_MS: "250",
      BOT_ADMINS: "@alice-letta-*:localhost",
    },
  });
});

after(async () => {
  await env?.close();
  await proxy?.down();
});

describe("a Letta agent in a thread", () => {
  test("with no agent for the room, `!letta <message>` answers with a one-line hint", async () => {
    const answer = await ask("!letta hello there");
    assert.equal(answer, "No Letta agent for this room yet: list them with `!letta agents`, pick one with `!letta use <name>`, or create one with `!letta new <name>`.");
    assert.equal(env.query("SELECT * FROM letta_turns").length, 0);
    assert.equal(env.query("SELECT * FROM threads").length, 0);
  });

  test("`!letta new <name>` creates an agent with the configured model, listed by `!letta agents`", async () => {
    const created = await ask(`!letta new ${agentName}`);
    const m = new RegExp(`^Created Letta agent \\*\\*${agentName}\\*\\* \\(\`(agent-[0-9a-f-]+)\`, openai-proxy/fake-model\\)\\. Pick it for this room with \`!letta use ${agentName}\`\\.$`).exec(created);
    assert.ok(m, created);
    agentId = m[1] as string;
    const again = await ask(`!letta new ${agentName}`);
    assert.equal(again, `An agent named **${agentName}** already exists (\`${agentId}\`); pick it with \`!letta use ${agentName}\`.`);

    const list = await ask("!letta agents");
    assert.match(list, /^\*\*Letta agents\*\* \(\d+\)/);
    assert.ok(list.includes(`- **${agentName}** · \`${agentId}\` · openai-proxy/fake-model`), list);
  });

  test("`!letta use` binds the room (moderators only); an unknown agent gets a one-line answer", async () => {
    assert.equal(await ask(`!letta use ${agentName}`, { as: "bob" }), "`!letta use <name or id> [share]` needs room moderator rights (power level ≥ 50).");
    assert.equal(env.query("SELECT * FROM letta_rooms").length, 0);

    assert.equal(await ask("!letta use no-such-agent"), "No Letta agent named `no-such-agent`; see `!letta agents`.");
    assert.equal(await ask("!letta use agent-00000000-0000-4000-8000-000000000000"), "No Letta agent named `agent-00000000-0000-4000-8000-000000000000`; see `!letta agents`.");

    const bound = await ask(`!letta use ${agentName}`);
    assert.equal(bound, `This room now talks to Letta agent **${agentName}** (\`${agentId}\`, openai-proxy/fake-model). Write \`!letta <message>\` to start a thread.`);
    const rows = env.query<{ agent_id: string; agent_name: string; bound_by: string }>("SELECT agent_id, agent_name, bound_by FROM letta_rooms");
    assert.deepEqual(rows, [{ agent_id: agentId, agent_name: agentName, bound_by: env.users.alice.userId }]);
    assert.match(await ask("!letta agents"), new RegExp(`\\*\\*${agentName}\\*\\* · \`${agentId}\` · openai-proxy/fake-model · ← this room`));
  });

  test("an agent is its room's: `!letta new` is for operators, another room cannot pick a bound agent, an operator may share it", async () => {
    const { alice, bob } = env.users;
    const bobRoom = await bob.createRoom({ name: `bob's letta room ${Date.now().toString(36)}`, invite: [env.botUserId, alice.userId], powerLevelUsers: { [alice.userId]: 50 } });
    await bob.waitForRoomEvent({ roomId: bobRoom, type: "m.room.member", match: (e) => e.state_key === env.botUserId && e.content.membership === "join", description: "the bot joining bob's room" });
    await alice.joinRoom(bobRoom);
    const askIn = async (user: typeof bob, body: string): Promise<string> => {
      const id = await user.sendText(bobRoom, body);
      const answer = await user.waitForRoomEvent({
        roomId: bobRoom,
        sender: env.botUserId,
        match: (e) => (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id,
        description: `the answer to ${body}`,
      });
      return String(answer.content.body);
    };
    assert.equal(await askIn(bob, "!letta new bobs-own"), "`!letta new <name>` is for the bot's operators (access.admins).");
    assert.equal(
      await askIn(bob, `!letta use ${agentName}`),
      `⛔ Letta agent **${agentName}** already talks to another room and remembers what it was told there, so this room cannot pick it. ` +
        `The bot's operators (access.admins) can create one for this room (\`!letta new <name>\`) or share this one (\`!letta use ${agentName} share\`).`,
    );
    assert.equal(await askIn(bob, `!letta use ${agentName} share`), "`!letta use <name or id> share` is for the bot's operators (access.admins).");
    assert.deepEqual(env.query<{ room_id: string }>("SELECT room_id FROM letta_rooms"), [{ room_id: env.roomId }]);
    // Alice is an operator and a moderator of bob's room: sharing needs both.
    assert.match(await askIn(alice, `!letta use ${agentName} share`), new RegExp(`^This room now talks to Letta agent \\*\\*${agentName}\\*\\*`));
    assert.equal(env.query("SELECT * FROM letta_rooms WHERE room_id = ?", bobRoom).length, 1);
  });

  test("`!letta hello there` streams the agent's answer into one threaded reply ending with the footer", async (t) => {
    const sentAt = performance.now();
    root = await env.users.alice.sendText(env.roomId, "!letta hello there");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    const { text, footer } = splitFooter(reply.body);
    assert.equal(text, "Echo: hello there");
    assert.match(footer, new RegExp(`^— letta ${agentName} · 1 step · [\\d,]+ tokens · \\d+\\.\\ds$`));
    assert.ok(reply.editCount >= 1, "the reply grew by edits");

    const firstText = firstSeenWith(reply.replyId, "Echo");
    assert.ok(firstText !== undefined);
    t.diagnostic(
      `first turn (alice's view): reply posted after ${reply.firstSeenAfterMs.toFixed(0)} ms, first agent text after ${(firstText - sentAt).toFixed(0)} ms, ` +
        `final after ${reply.finalSeenAfterMs.toFixed(0)} ms (${reply.editCount} edits); ${botSide(await nthTurnLog(1))}`,
    );

    // The live reply is an m.notice; the one push to who asked (an m.text that mentions them) comes on top.
    const all = (await env.botReplies(root)).filter((e) => rel(e).rel_type === "m.thread");
    const replies = all.filter((e) => e.content.msgtype === "m.notice");
    assert.equal(replies.length, 1, "one reply, not a flood");
    assert.equal(all.length - replies.length, 1, "one push to who asked");
    assert.equal(replies[0]?.content.msgtype, "m.notice");

    const threads = env.query<{ backend: string; session_id: string; started_by: string; agent: string }>("SELECT backend, session_id, started_by, agent FROM threads");
    assert.deepEqual(threads, [{ backend: "letta", session_id: agentId, started_by: env.users.alice.userId, agent: agentName }]);
    const turns = env.query<{ status: string; reply_event_id: string; steps: number }>("SELECT status, reply_event_id, steps FROM letta_turns");
    assert.deepEqual(turns, [{ status: "done", reply_event_id: reply.replyId, steps: 1 }]);
    const inbox = env.query<{ status: string }>("SELECT status FROM inbox WHERE event_id = ?", root);
    assert.deepEqual(inbox, [{ status: "done" }]);

    // Letta hands the model the message exactly as the bot wrote it: attributed, not wrapped.
    // (Other suites share the scripted model, so look for ours rather than the last request.)
    const ours = (await chatRequests()).filter((t) => /^\[alice-letta-\w+\] hello there$/.test(t));
    assert.equal(ours.length, 1, "the message reached the model once, attributed and not wrapped");
  });

  test("a follow-up in the thread, without a prefix, reaches the same agent", async (t) => {
    const sentAt = performance.now();
    const prompt = await env.users.bob.sendText(env.roomId, "what did I just say?", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: what did I just say?");
    const firstText = firstSeenWith(reply.replyId, "Echo") ?? Number.NaN;
    t.diagnostic(
      `follow-up (alice's view): reply posted after ${reply.firstSeenAfterMs.toFixed(0)} ms, first agent text after ${(firstText - sentAt).toFixed(0)} ms, ` +
        `final after ${reply.finalSeenAfterMs.toFixed(0)} ms; ${botSide(await nthTurnLog(2))}`,
    );
    const said = await lettaUserMessages(agentId);
    assert.equal(said.length, 2, said.join(" | "));
    assert.match(said[0] ?? "", /\] hello there$/);
    assert.match(said[1] ?? "", /^\[bob-letta-\w+\] what did I just say\?$/);
    assert.equal(env.query("SELECT * FROM threads").length, 1);
  });

  test("reasoning is a quoted 💭 line and a tool call one compact line", async () => {
    let sentAt = performance.now();
    let prompt = await env.users.alice.sendText(env.roomId, "please reason about tea", { threadRoot: root });
    let reply = await waitForFinalReply(env, root, prompt, sentAt);
    assert.equal(splitFooter(reply.body).text, "> 💭 _Thinking about: please reason about tea_\n\nEcho: please reason about tea");

    sentAt = performance.now();
    prompt = await env.users.alice.sendText(env.roomId, "remember: likes green tea", { threadRoot: root });
    reply = await waitForFinalReply(env, root, prompt, sentAt);
    const { text, footer } = splitFooter(reply.body);
    assert.equal(text, "🔧 memory_insert ✓\n\nNoted: likes green tea");
    assert.match(footer, new RegExp(`^— letta ${agentName} · 2 steps · [\\d,]+ tokens · \\d+\\.\\ds$`));
  });

  test("a model error inside the answer is shown in the reply and the message is not sent again", async () => {
    const sentAt = performance.now();
    const prompt = await env.users.alice.sendText(env.roomId, "fail 400 please", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    const { text } = splitFooter(reply.body);
    assert.match(text, /^⚠️ \*\*Letta error:\*\* An error occurred with the LLM request\. — INVALID_ARGUMENT: Bad request/);
    assert.equal((await chatRequests()).filter((t) => t.endsWith("fail 400 please")).length, 1, "sent to the model once");
  });

  test("`!letta status` shows the room's agent and the server's health", async () => {
    const status = await ask("!letta status");
    assert.match(status, new RegExp(`^\\*\\*Letta\\*\\* ${proxy.url} — ✅ ok, version 0\\.16\\.8 \\(\\d+ ms\\)$`, "m"));
    assert.ok(status.includes(`Room agent: **${agentName}** (\`${agentId}\`), chosen by ${env.users.alice.userId}`), status);
    assert.ok(status.includes("New agents use model `openai-proxy/fake-model`."), status);
    const inThread = await ask("!letta status", { threadRoot: root });
    assert.ok(inThread.includes(`This thread: **${agentName}** (\`${agentId}\`)`), inThread);
  });

  test("a 5xx before the answer began is retried, and the message reaches Letta once", async (t) => {
    proxy.failures = 2;
    const postsBefore = proxy.messagePosts;
    const sentAt = performance.now();
    const prompt = await env.users.alice.sendText(env.roomId, "second try works", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: second try works");
    assert.equal(proxy.messagePosts - postsBefore, 3, "two 503s, then the message");
    assert.equal((await chatRequests()).filter((t) => t.endsWith("second try works")).length, 1);
    t.diagnostic(`two 503s then success (250 ms + 500 ms backoff): final after ${reply.finalSeenAfterMs.toFixed(0)} ms`);
  });

  test("a 502 after Letta took the message is not retried into a second message", async (t) => {
    proxy.swallow = 1;
    const prompt = await env.users.alice.sendText(env.roomId, "taken but lost", { threadRoot: root });
    const { body } = await waitForReplyVersion(prompt, (b) => b.startsWith("⚠️") || /\n\n— letta /.test(b), "the end of the turn");
    // Letta stores the message with its run: wait until it has it, then count.
    let copies: string[] = [];
    for (let i = 0; i < 100 && copies.length === 0; i++) {
      copies = (await lettaUserMessages(agentId)).filter((m) => m.endsWith("taken but lost"));
      if (copies.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(copies.length, 1, `Letta has the message once; the thread says: ${body}`);
    t.diagnostic(`a gateway 502 after Letta accepted the message: the thread says ${JSON.stringify(body.split("\n")[0])}`);
  });

  test("with Letta down, the thread gets a clear one-line answer after the retries", async (t) => {
    await proxy.down();
    try {
      const sentAt = performance.now();
      const prompt = await env.users.alice.sendText(env.roomId, "anyone there?", { threadRoot: root });
      const { body, at } = await waitForReplyVersion(prompt, (b) => b.startsWith("⚠️"), "the failure answer");
      assert.equal(body, `⚠️ Letta is not reachable at ${proxy.url}: connection refused (after 3 retries).`);
      t.diagnostic(`server down: one-line answer after ${(at - sentAt).toFixed(0)} ms (3 retries, 250/500/1000 ms backoff)`);
      const turn = env.query<{ status: string }>("SELECT status FROM letta_turns ORDER BY id DESC LIMIT 1");
      assert.deepEqual(turn, [{ status: "failed" }]);
      const status = await ask("!letta status");
      assert.match(status, new RegExp(`^\\*\\*Letta\\*\\* ${proxy.url} — ❌ Letta is not reachable at ${proxy.url}: connection refused\\.$`, "m"));
    } finally {
      await proxy.up();
    }
  });

  test("after a restart the thread still reaches the same agent", async () => {
    const { exitCode } = await env.restartBot("SIGTERM");
    assert.equal(exitCode, 0);
    const sentAt = performance.now();
    const prompt = await env.users.alice.sendText(env.roomId, "still there after the restart?", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, prompt, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: still there after the restart?");
    const said = await lettaUserMessages(agentId);
    assert.equal(said.filter((s) => s.endsWith("still there after the restart?")).length, 1);
    assert.equal(said.filter((s) => s.endsWith("anyone there?")).length, 0, "the message from while Letta was down was never delivered later");
  });
});

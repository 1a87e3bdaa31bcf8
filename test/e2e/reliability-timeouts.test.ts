import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { TestEnv } from "./env.ts";

// A hung OpenCode server: its health check and event stream still work (so the bot sees it as
// connected), but every other request is accepted and never answered, as when a handler hangs.
// Each call must end at opencode.requestTimeoutMs with a clear message in the thread, and the
// room's next message must be answered: the room is not stalled for minutes per call.

const limitMs = 2000;

async function startHungOpencode(): Promise<{ url: string; hung: () => number; close: () => Promise<void> }> {
  const open = new Set<ServerResponse>();
  let hung = 0;
  const server: Server = createServer((req, res) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/global/health") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"healthy":true,"version":"0.0.0-hung"}');
    } else if (path === "/global/event") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (type: string): boolean => res.write(`data: ${JSON.stringify({ directory: "", payload: { type, properties: {} } })}\n\n`);
      send("server.connected");
      const beat = setInterval(() => send("server.heartbeat"), 5000);
      res.on("close", () => clearInterval(beat));
    } else {
      hung++; // accepted, never answered
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hung: () => hung,
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe("a hung OpenCode server", () => {
  let env: TestEnv;
  let oc: Awaited<ReturnType<typeof startHungOpencode>>;
  before(async () => {
    oc = await startHungOpencode();
    env = await TestEnv.create({ name: "hung", botEnv: { OPENCODE_SERVER_URL: oc.url, OPENCODE_REQUEST_TIMEOUT_MS: String(limitMs) } });
  });
  after(async () => {
    await env?.close();
    await oc?.close();
  });

  test("a prompt is told within the limit that OpenCode did not answer, and the room's next message is answered", async (t) => {
    const { alice } = env.users;
    const t0 = performance.now();
    const prompt = await alice.sendText(env.roomId, "!oc hello, are you there?");
    // Sent at once, queued behind the prompt: a room's messages are handled one at a time.
    const next = await alice.sendText(env.roomId, "!oc sessions");
    const inReplyTo = (id: string) => (e: { content: Record<string, unknown> }) =>
      (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id;
    const told = await env.waitForBot("the timeout message", inReplyTo(prompt), 20_000);
    const toldMs = told.receivedAt - t0;
    assert.match(String(told.content.body), /OpenCode did not answer within 2 s \(POST \/session\)/);
    assert.ok(toldMs >= limitMs - 100, `not before the limit (${toldMs.toFixed(0)} ms)`);
    assert.ok(toldMs < limitMs + 8000, `told ${toldMs.toFixed(0)} ms after sending, limit ${limitMs} ms`);
    const answered = await env.waitForBot("the answer to the next message", inReplyTo(next), 20_000);
    assert.match(String(answered.content.body), /No OpenCode sessions in this room yet/);
    assert.ok(oc.hung() >= 1, "the bot's request reached the hung server");
    t.diagnostic(`timeout message after ${toldMs.toFixed(0)} ms; next message answered after ${(answered.receivedAt - t0).toFixed(0)} ms`);
  });

  test("a command that asks OpenCode is told too, and the bot keeps answering", async () => {
    const body = await env.ask("!oc commands");
    assert.match(body, /^⚠️ `commands` failed: OpenCode did not answer within 2 s \(GET \/command\)/);
    assert.match(await env.ask("!oc help"), /!oc/);
  });
});

// A hung Letta: it answers the agent the room talks to, then accepts every other request
// (sending a message, listing agents, the questions asked before a re-send) and never answers.
// The thread is told at letta.timeoutMs, the message is not sent again (a timed-out message may
// have arrived), and the room goes on. Before, a timed-out send was retried: (retries + 1) × the
// limit, plus the questions, for one message.

const agentId = "agent-00000000-0000-4000-8000-0000000000aa";

async function startHungLetta(): Promise<{ url: string; posts: () => number; hung: () => number; close: () => Promise<void> }> {
  const open = new Set<ServerResponse>();
  let posts = 0;
  let hung = 0;
  const server: Server = createServer((req, res) => {
    open.add(res);
    res.on("close", () => open.delete(res));
    req.resume();
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === `/v1/agents/${agentId}`) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: agentId, name: "stuck", model: "openai-proxy/fake-model" }));
      return;
    }
    if (req.method === "POST" && path === `/v1/agents/${agentId}/messages`) posts++;
    hung++; // accepted, never answered
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    posts: () => posts,
    hung: () => hung,
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe("a hung Letta server", () => {
  let env: TestEnv;
  let letta: Awaited<ReturnType<typeof startHungLetta>>;
  before(async () => {
    letta = await startHungLetta();
    // The default retries (3, from 1 s): a timed-out send must not be retried all the same.
    env = await TestEnv.create({ name: "hungl", botEnv: { LETTA_BASE_URL: letta.url, LETTA_DEFAULT_AGENT: agentId, LETTA_TIMEOUT_MS: String(limitMs) } });
  });
  after(async () => {
    await env?.close();
    await letta?.close();
  });

  const inReplyTo = (id: string) => (e: { content: Record<string, unknown> }) =>
    (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id;

  test("a message is told within the limit that Letta did not answer, is not sent again, and the room's next message is answered", async (t) => {
    const { alice } = env.users;
    const t0 = performance.now();
    const prompt = await alice.sendText(env.roomId, "!letta hello, are you there?");
    const next = await alice.sendText(env.roomId, "!letta sessions");
    // The reply says the agent is thinking, then becomes the one line that says what happened.
    const reply = await env.waitForBot("the reply to the message", inReplyTo(prompt), 20_000);
    const told = await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => {
        const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
        return rel?.rel_type === "m.replace" && rel.event_id === reply.event_id && String((e.content["m.new_content"] as { body?: string }).body).startsWith("⚠️");
      },
      description: "the reply saying Letta did not answer",
      timeoutMs: 30_000,
    });
    const toldMs = told.receivedAt - t0;
    assert.equal(
      (told.content["m.new_content"] as { body: string }).body,
      `⚠️ Letta at ${letta.url} did not answer in time. The message was not sent again: Letta may have it.`,
    );
    assert.ok(toldMs >= limitMs - 100, `not before the limit (${toldMs.toFixed(0)} ms)`);
    // The limit, then the questions before a re-send (at most half the limit here), unanswered too.
    assert.ok(toldMs < limitMs * 2 + 1500, `told ${toldMs.toFixed(0)} ms after sending, limit ${limitMs} ms`);
    assert.equal(letta.posts(), 1, "the message went to Letta once");
    const answered = await env.waitForBot("the answer to the next message", inReplyTo(next), 20_000);
    assert.match(String(answered.content.body), /threads in this room\*\* \(1\)/);
    assert.deepEqual(env.query("SELECT status FROM letta_turns"), [{ status: "failed" }]);
    t.diagnostic(`told after ${toldMs.toFixed(0)} ms (limit ${limitMs} ms); the next message answered after ${(answered.receivedAt - t0).toFixed(0)} ms`);
  });

  test("a command that asks Letta is told once at the limit (not retried), and the bot keeps answering", async (t) => {
    const t0 = performance.now();
    const body = await env.ask("!letta agents");
    const ms = performance.now() - t0;
    assert.equal(body, `⚠️ \`agents\` failed: Letta at ${letta.url} did not answer in time.`);
    assert.ok(ms < limitMs + 2000, `answered after ${ms.toFixed(0)} ms, limit ${limitMs} ms`);
    assert.match(await env.ask("!letta help"), /!letta/);
    t.diagnostic(`\`agents\` told after ${ms.toFixed(0)} ms (limit ${limitMs} ms)`);
  });
});

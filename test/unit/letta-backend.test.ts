import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { LettaApi } from "../../src/letta/api.ts";
import { LettaBackend } from "../../src/letta/backend.ts";
import { LettaRoomStore, LettaTurnStore } from "../../src/letta/store.ts";
import { createLogger } from "../../src/log.ts";
import type { MatrixSender } from "../../src/matrix/sender.ts";
import { openDatabase, type Db } from "../../src/store/db.ts";
import { Inbox } from "../../src/store/inbox.ts";
import { ThreadStore } from "../../src/store/threads.ts";
import { TurnEngine } from "../../src/turns/engine.ts";

// The Letta backend against a fake Letta: threads and turns in SQLite, one message at a time
// per agent, the inbox marked in the same transaction, cut-off turns told after a restart.

const room = "!room:test";
const log = createLogger("silent");

interface Sent {
  roomId: string;
  body: string;
  replace?: string;
  replyTo?: string;
}

function fakeSender(): { sender: MatrixSender; sent: Sent[]; reactions: string[] } {
  const sent: Sent[] = [];
  const reactions: string[] = [];
  let n = 0;
  const sender = {
    send: async (roomId: string, content: Record<string, unknown>) => {
      const rel = content["m.relates_to"] as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined;
      const body = rel?.rel_type === "m.replace" ? (content["m.new_content"] as { body: string }).body : String(content.body);
      const entry: Sent = { roomId, body };
      if (rel?.rel_type === "m.replace" && rel.event_id) entry.replace = rel.event_id;
      if (rel?.["m.in_reply_to"]?.event_id) entry.replyTo = rel["m.in_reply_to"].event_id;
      sent.push(entry);
      return `$sent${++n}`;
    },
    react: async (_roomId: string, eventId: string, key: string) => {
      reactions.push(`${eventId} ${key}`);
      return undefined;
    },
  } as unknown as MatrixSender;
  return { sender, sent, reactions };
}

/** A Letta that answers "Echo: <text>" after `delayMs`, and records how many answers overlapped. */
async function fakeLetta(delayMs: number): Promise<{ url: string; received: string[]; maxConcurrent: number; close(): Promise<void> }> {
  const state = { url: "", received: [] as string[], maxConcurrent: 0, close: async () => {} };
  let active = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const text = (JSON.parse(body) as { messages: Array<{ content: string }> }).messages[0]?.content ?? "";
      state.received.push(text);
      active++;
      state.maxConcurrent = Math.max(state.maxConcurrent, active);
      res.writeHead(200, { "content-type": "text/event-stream" });
      setTimeout(() => {
        res.write(`data: ${JSON.stringify({ id: "m1", message_type: "assistant_message", content: `Echo: ${text.replace(/^\[[^\]]*\] /, "")}` })}\n\n`);
        res.write(`data: ${JSON.stringify({ message_type: "stop_reason", stop_reason: "end_turn" })}\n\n`);
        res.write(`data: ${JSON.stringify({ message_type: "usage_statistics", step_count: 1, total_tokens: 42 })}\n\n`);
        res.end("data: [DONE]\n\n");
        active--;
      }, delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return state;
}

function setup(url: string, opts: { defaultAgent?: string } = {}): { db: Db; backend: LettaBackend; inbox: Inbox; threads: ThreadStore; rooms: LettaRoomStore; turns: LettaTurnStore } & ReturnType<typeof fakeSender> {
  const db = openDatabase(":memory:");
  const inbox = new Inbox(db);
  const threads = new ThreadStore(db);
  const rooms = new LettaRoomStore(db);
  const turns = new LettaTurnStore(db);
  const fake = fakeSender();
  const backend = new LettaBackend({
    prefix: "!letta",
    api: new LettaApi({ baseUrl: url, maxRetries: 0, retryDelayMs: 10, timeoutMs: 2000, log }),
    db, threads, inbox, rooms, turns,
    sender: fake.sender,
    displayName: async (_r, u) => (u === "@alice:test" ? "Alice" : "Bob"),
    log,
    defaultAgent: opts.defaultAgent,
    model: "openai/x",
    embedding: undefined,
    engine: new TurnEngine({ sender: fake.sender, log, editWindowMs: 50, notices: { turnEnded: async () => {} } }),
    timeoutMs: 2000,
  });
  return { db, backend, inbox, threads, rooms, turns, ...fake };
}

const accept = (inbox: Inbox, eventId: string): void => void inbox.accept(room, { event_id: eventId, type: "m.room.message", content: {} });

test("without an agent for the room the answer is the hint, and nothing is recorded", async () => {
  const t = setup("http://127.0.0.1:9");
  accept(t.inbox, "$p1");
  await t.backend.startThread({ roomId: room, eventId: "$p1", sender: "@alice:test", text: "hello" }, "$p1");
  assert.equal(t.sent.length, 1);
  assert.match(t.sent[0]?.body ?? "", /^No Letta agent for this room yet/);
  assert.equal(t.threads.inRoom(room).length, 0);
  assert.equal(t.turns.running().length, 0);
});

test("a thread is recorded with its agent, the inbox marked done, and the answer streamed to its final text", async () => {
  const letta = await fakeLetta(20);
  try {
    const t = setup(letta.url);
    t.rooms.bind(room, "agent-1", "pal", "@alice:test");
    accept(t.inbox, "$p1");
    await t.backend.startThread({ roomId: room, eventId: "$p1", sender: "@alice:test", text: "hello there" }, "$p1");
    // Recorded before anything reached Letta: a restart now would never send it twice.
    assert.equal(t.inbox.isDone("$p1"), true);
    const thread = t.threads.get(room, "$p1");
    assert.equal(thread?.backend, "letta");
    assert.equal(thread?.sessionId, "agent-1");
    assert.equal(thread?.agent, "pal");
    await t.backend.idle();
    assert.deepEqual(letta.received, ["[Alice] hello there"]);
    assert.equal(t.sent[0]?.body, "⏳ _pal is thinking…_");
    assert.match(t.sent.at(-1)?.body ?? "", /^Echo: hello there\n\n— letta pal · 1 step · 42 tokens · \d+\.\ds$/);
    const row = t.db.prepare("SELECT status, reply_event_id, steps, tokens FROM letta_turns").get();
    assert.deepEqual(row, { status: "done", reply_event_id: "$sent1", steps: 1, tokens: 42 });
  } finally {
    await letta.close();
  }
});

test("messages for a busy agent wait their turn, one at a time, even from different threads", async () => {
  const letta = await fakeLetta(150);
  try {
    const t = setup(letta.url);
    t.rooms.bind(room, "agent-1", "pal", "@alice:test");
    for (const id of ["$a", "$b"]) accept(t.inbox, id);
    await t.backend.startThread({ roomId: room, eventId: "$a", sender: "@alice:test", text: "one" }, "$a");
    await t.backend.startThread({ roomId: room, eventId: "$b", sender: "@bob:test", text: "two" }, "$b");
    assert.deepEqual(t.reactions, ["$b 🕐 1"]);
    const thread = t.threads.get(room, "$a");
    assert.ok(thread);
    accept(t.inbox, "$c");
    assert.deepEqual(await t.backend.followUp(thread, { roomId: room, eventId: "$c", sender: "@alice:test", text: "three" }), { queued: 2 });
    assert.deepEqual(t.backend.load("agent-1"), { busy: true, queued: 2 });
    await t.backend.idle();
    assert.deepEqual(letta.received, ["[Alice] one", "[Bob] two", "[Alice] three"]);
    assert.equal(letta.maxConcurrent, 1, "never two messages to one agent at once");
    assert.deepEqual(t.backend.load("agent-1"), { busy: false, queued: 0 });
  } finally {
    await letta.close();
  }
});

test("turns cut off by a restart are closed with a notice, never re-sent", async () => {
  const t = setup("http://127.0.0.1:9");
  const streaming = t.turns.start({ roomId: room, rootEventId: "$r", agentId: "agent-1", promptEventId: "$p1", otid: "o1", promptedBy: "@alice:test" });
  t.turns.setReply(streaming.id, "$reply");
  t.turns.start({ roomId: room, rootEventId: "$r", agentId: "agent-1", promptEventId: "$p2", otid: "o2", promptedBy: "@alice:test" });
  await t.backend.reconcile();
  assert.equal(t.turns.running().length, 0);
  assert.deepEqual(
    t.sent.map((s) => [s.replyTo, s.body]),
    [
      ["$reply", "⚠️ The bot restarted while this answer was streaming. The message was not sent again; Letta may have finished it."],
      ["$p2", "⚠️ The bot restarted before this message reached Letta. It was not sent: send it again if you still want an answer."],
    ],
  );
});

test("the configured default agent answers rooms that chose none; a missing one is said", async () => {
  const t = setup("http://127.0.0.1:9", { defaultAgent: "pal" });
  // Stand in for the server's answer to "agents named pal".
  t.backend.api.agentsNamed = async () => [];
  t.backend.api.getAgent = async () => undefined;
  accept(t.inbox, "$p1");
  await t.backend.startThread({ roomId: room, eventId: "$p1", sender: "@alice:test", text: "hi" }, "$p1");
  assert.match(t.sent[0]?.body ?? "", /^The default Letta agent `pal` \(letta\.defaultAgent\) is not on the server\./);
});

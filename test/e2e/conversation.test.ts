import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Talking to the bot as people do in a group room: mentioning it (a pill, or "Bot: …"), and
// replying to its messages from a client without threads. And the signs that it heard: a read
// receipt and a 👀 on every prompt it takes.

let env: TestEnv;
let botName = "";
before(async () => {
  env = await TestEnv.create({ name: "conv", editWindowMs: 500 });
  // What clients show for the bot, and what a person types or a pill carries.
  botName = String((await env.users.alice.stateEvent(env.roomId, "m.room.member", env.botUserId)).displayname ?? "");
  assert.ok(botName, "the bot has a display name");
});
after(async () => {
  await env?.close();
});

/** A word no other prompt of this run (or of another suite on the shared model) contains. */
const tag = (): string => `t${randomBytes(3).toString("hex")}`;
type Rel = { rel_type?: string; event_id?: string; key?: string; "m.in_reply_to"?: { event_id?: string } };
const relOf = (e: MatrixEvent): Rel => (e.content["m.relates_to"] ?? {}) as Rel;

/** The chat requests whose newest user text contains `needle`: how often the model was prompted with it. */
async function modelPrompts(needle: string): Promise<string[]> {
  return (await env.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes(needle)).map((r) => r.lastUserText);
}

async function sessionUserMessages(sessionId: string): Promise<string[]> {
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

const threadCount = (): number => env.query("SELECT * FROM threads").length;
const sessionOf = (root: string): string =>
  env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";

/** A pill as Element sends it: the display name in the body, a matrix.to link in the HTML, the bot in m.mentions. */
const pill = (text: string, threadRoot?: string) => ({
  formattedBody: `<a href="https://matrix.to/#/${encodeURIComponent(env.botUserId)}">${botName}</a>: ${text}`,
  mentions: [env.botUserId],
  ...(threadRoot ? { threadRoot } : {}),
});

/** A reply from a client without threads: only m.in_reply_to, the fallback quote and the replied-to sender in m.mentions. */
async function plainReply(to: MatrixEvent, text: string): Promise<string> {
  const quoted = String(to.content.body ?? "").split("\n")[0];
  return env.users.alice.sendEvent(env.roomId, "m.room.message", {
    msgtype: "m.text",
    body: `> <${to.sender}> ${quoted}\n\n${text}`,
    "m.mentions": { user_ids: [to.sender] },
    "m.relates_to": { "m.in_reply_to": { event_id: to.event_id } },
  });
}

describe("mentions, plain replies and signs of life", () => {
  let root = "";
  let liveReplyId = "";

  test("a pill mention starts a session; the model gets the prompt once, without the mention; 👀 and a read receipt at once", async () => {
    const { alice } = env.users;
    const word = tag();
    const sentAt = performance.now();
    root = await alice.sendText(env.roomId, `${botName}: pill prompt ${word}`, pill(`pill prompt ${word}`));
    const seen = await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      type: "m.reaction",
      match: (e) => relOf(e).event_id === root,
      description: "the bot's reaction to the prompt",
    });
    assert.equal(relOf(seen).key, "👀");
    await alice.waitForReadReceipt(env.roomId, root, env.botUserId);
    const reply = await waitForFinalReply(env, root, root, sentAt);
    liveReplyId = reply.replyId;
    assert.equal(splitFooter(reply.body).text, `Echo: pill prompt ${word}`);
    const prompts = await modelPrompts(word);
    assert.equal(prompts.length, 1, `prompted once: ${prompts.join(" | ")}`);
    assert.match(prompts[0] ?? "", new RegExp(`^\\[alice-conv-\\w+\\] pill prompt ${word}$`), "the mention is not part of the prompt");
    assert.equal(threadCount(), 1);
    const reactions = alice.seenEvents(env.roomId).filter((e) => e.type === "m.reaction" && e.sender === env.botUserId && relOf(e).event_id === root);
    assert.deepEqual(reactions.map((e) => relOf(e).key), ["👀"], "one reaction, nothing more");
  });

  test("the typed forms `Bot: …` and `@bot:server …` start sessions too", async () => {
    const { alice } = env.users;
    for (const [form, text] of [["name", `${botName}, typed prompt`], ["user id", `${env.botUserId} typed prompt`]] as const) {
      const word = tag();
      const sentAt = performance.now();
      const id = await alice.sendText(env.roomId, `${text} ${word}`);
      const reply = await waitForFinalReply(env, id, id, sentAt);
      assert.equal(splitFooter(reply.body).text, `Echo: typed prompt ${word}`, `the ${form} form`);
      assert.equal((await modelPrompts(word)).length, 1);
    }
    assert.equal(threadCount(), 3);
  });

  test("a plain reply to the bot's live reply continues that session once, and the answer goes into its thread", async () => {
    const { alice } = env.users;
    const word = tag();
    const live = await alice.getEvent(env.roomId, liveReplyId);
    const sentAt = performance.now();
    const id = await plainReply(live, `plain reply ${word}`);
    const reply = await waitForFinalReply(env, root, id, sentAt);
    assert.equal(splitFooter(reply.body).text, `Echo: plain reply ${word}`);
    assert.equal((await modelPrompts(word)).length, 1);
    const prompts = await sessionUserMessages(sessionOf(root));
    assert.equal(prompts.length, 2, "the second prompt of the first session");
    assert.match(prompts[1] ?? "", new RegExp(`\\] plain reply ${word}$`));
    assert.equal(threadCount(), 3, "no new session");
    await alice.waitForReadReceipt(env.roomId, id, env.botUserId);
  });

  test("a plain reply with the prefix, to the thread root, continues the session too (not a new one)", async () => {
    const { alice } = env.users;
    const word = tag();
    const rootEvent = await alice.getEvent(env.roomId, root);
    const sentAt = performance.now();
    const id = await plainReply(rootEvent, `!oc prefixed reply ${word}`);
    const reply = await waitForFinalReply(env, root, id, sentAt);
    assert.equal(splitFooter(reply.body).text, `Echo: prefixed reply ${word}`);
    assert.equal((await modelPrompts(word)).length, 1);
    assert.equal((await sessionUserMessages(sessionOf(root))).length, 3);
    assert.equal(threadCount(), 3, "no new session");
  });

  test("a mention inside the session's thread is just a follow-up", async () => {
    const { alice } = env.users;
    const word = tag();
    const sentAt = performance.now();
    const id = await alice.sendText(env.roomId, `${botName}: in the thread ${word}`, pill(`in the thread ${word}`, root));
    const reply = await waitForFinalReply(env, root, id, sentAt);
    assert.equal(splitFooter(reply.body).text, `Echo: in the thread ${word}`);
    assert.equal((await modelPrompts(word)).length, 1);
    assert.equal(threadCount(), 3);
  });

  test("a stranger's mention and a reply to a message of no session reach nobody", async () => {
    const { alice, bob, mallory } = env.users;
    const word = tag();
    const strangerId = await mallory.sendText(env.roomId, `${botName}: stranger ${word}`, pill(`stranger ${word}`));
    const chat = await bob.sendText(env.roomId, "lunch at noon?");
    const unrelated = await plainReply(await alice.getEvent(env.roomId, chat), `sure ${word}`);
    // Messages of a room are handled in order: once this answer is final, the two above were dealt with.
    const marker = tag();
    const sentAt = performance.now();
    const markerId = await alice.sendText(env.roomId, `!oc marker ${marker}`);
    await waitForFinalReply(env, markerId, markerId, sentAt);
    assert.deepEqual(await modelPrompts(word), [], "neither reached the model");
    assert.equal(threadCount(), 4, "only the marker's session is new");
    const about = (id: string) => alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && (relOf(e).event_id === id || relOf(e)["m.in_reply_to"]?.event_id === id));
    assert.deepEqual(about(unrelated), [], "nothing at all for a reply outside any session");
    const toStranger = about(strangerId);
    assert.ok(toStranger.every((e) => e.type === "m.room.message" && String(e.content.body).includes("not allowed")), "at most the not-allowed notice, no 👀");
    const receipts = await alice.readReceipts(env.roomId);
    assert.ok(!receipts.get(strangerId)?.includes(env.botUserId), "no read receipt for the stranger's message");
  });

  test("while a turn runs the bot shows as typing in the room, and stops when it is done", async (t) => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, `!oc slow answer while typing ${tag()}`);
    await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? "").includes("slow3"),
      description: "the reply streaming",
    });
    const during = await alice.typingUsers(env.roomId);
    assert.ok(during.includes(env.botUserId), `typing while it streams: ${JSON.stringify(during)}`);
    await waitForFinalReply(env, root, root, sentAt);
    let after: string[] = during;
    for (let i = 0; i < 50 && after.includes(env.botUserId); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await alice.typingUsers(env.roomId);
    }
    assert.ok(!after.includes(env.botUserId), "no longer typing once the answer is final");
    t.diagnostic(`typing seen by the second client while streaming: ${JSON.stringify(during)}`);
  });
});

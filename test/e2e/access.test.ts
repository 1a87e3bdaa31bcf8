import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { MatrixTestUser, type MatrixEvent } from "../harness/matrix-user.ts";
import { registerUser } from "../harness/synapse.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Who the bot listens to: allowed users by glob, invites only from them, never its own
// messages, never other bots' notices, never edits.

let env: TestEnv;
let helperBot: MatrixTestUser; // another bot, on an account the glob allows: its notices must still be ignored
let botSelf: MatrixTestUser; // a second client on the bot's own account
let room2 = "";
const suffix = Date.now().toString(36);

before(async () => {
  env = await TestEnv.create({ name: "access", botEnv: { BOT_ALLOWED_USERS: "@alice-*:localhost" } });
  const helper = await registerUser(env.homeserver.baseUrl, env.homeserver.sharedSecret, `alice-helperbot-${suffix}`);
  helperBot = new MatrixTestUser(env.homeserver.baseUrl, helper);
  botSelf = new MatrixTestUser(env.homeserver.baseUrl, env.accounts.bot);
});
after(async () => {
  await env?.close();
});

type Rel = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const relOf = (e: MatrixEvent): Rel => (e.content["m.relates_to"] ?? {}) as Rel;
const newBody = (e: MatrixEvent): string => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? e.content.body ?? "");
const about = (e: MatrixEvent, id: string): boolean => relOf(e).event_id === id || relOf(e)["m.in_reply_to"]?.event_id === id;

/** Everything the bot did about `eventId` (replies, reactions, threads on it), as alice saw it. */
const botReactionsTo = (roomId: string, eventId: string): MatrixEvent[] =>
  env.users.alice.seenEvents(roomId).filter((e) => e.sender === env.botUserId && about(e, eventId));

/**
 * Sends a prompt from alice and waits for its final answer: the bot handles a room's messages in
 * order, so everything sent before it has been dealt with by then.
 */
async function marker(roomId: string, text: string): Promise<void> {
  const sentAt = performance.now();
  const id = await env.users.alice.sendText(roomId, `!oc ${text}`);
  const final = await env.users.alice.waitForRoomEvent({
    roomId,
    sender: env.botUserId,
    match: (e) => newBody(e).startsWith(`Echo: ${text}\n\n— `),
    description: `the answer to the marker "${text}"`,
    timeoutMs: 30_000,
  });
  assert.ok(final.receivedAt >= sentAt);
  void id;
}

const modelSaw = async (needle: string): Promise<boolean> => (await env.modelRequests()).some((r) => r.lastUserText.includes(needle));

describe("access", () => {
  test("allowed by glob: alice gets an answer; bob and mallory, outside the glob, get one notice and nothing else", async () => {
    const { alice, bob, mallory } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc hello from alice");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: hello from alice");
    for (const [who, user] of [["bob", bob], ["mallory", mallory]] as const) {
      const answer = await env.ask(`!oc ${who} wants a session`, { as: who });
      assert.equal(answer, `Sorry, ${user.userId} is not allowed to use this bot.`);
      assert.equal(await modelSaw(`${who} wants a session`), false);
    }
    assert.equal(env.query("SELECT * FROM threads").length, 1);
  });

  test("invites: a stranger's is declined, an allowed user's accepted", async () => {
    const { alice, mallory } = env.users;
    const strangerRoom = await mallory.createRoom({ name: `mallory's room ${suffix}`, invite: [env.botUserId] });
    const left = await mallory.waitForRoomEvent({
      roomId: strangerRoom,
      type: "m.room.member",
      match: (e) => e.state_key === env.botUserId && e.content.membership !== "invite",
      description: "the bot's answer to mallory's invite",
      timeoutMs: 30_000,
    });
    assert.equal(left.content.membership, "leave", "the invite was declined");

    room2 = await alice.createRoom({ name: `alice's second room ${suffix}`, invite: [env.botUserId, helperBot.userId] });
    const joined = await alice.waitForRoomEvent({
      roomId: room2,
      type: "m.room.member",
      match: (e) => e.state_key === env.botUserId && e.content.membership !== "invite",
      description: "the bot's answer to alice's invite",
      timeoutMs: 30_000,
    });
    assert.equal(joined.content.membership, "join");
    await helperBot.joinRoom(room2);
    const known = env.query<{ room_id: string }>("SELECT room_id FROM rooms").map((r) => r.room_id);
    assert.ok(known.includes(room2) && !known.includes(strangerRoom), `rooms the bot keeps: ${known.join(", ")}`);
  });

  test("the bot never acts on a message from its own account, even a command in m.text", async () => {
    const own = await botSelf.sendText(env.roomId, "!oc sent from the bot's own account");
    const ownHelp = await botSelf.sendText(env.roomId, "!oc help");
    await marker(env.roomId, "after the bot's own messages");
    for (const id of [own, ownHelp]) assert.deepEqual(botReactionsTo(env.roomId, id), [], "no reply or reaction to its own message");
    assert.equal(await modelSaw("sent from the bot's own account"), false);
    assert.equal(env.query("SELECT * FROM threads WHERE root_event_id IN (?, ?)", own, ownHelp).length, 0);
  });

  test("another bot's notices are ignored, at top level and in a session thread, even from an allowed account", async () => {
    assert.ok(room2, "needs the room from the invite test");
    const { alice } = env.users;
    const top = await helperBot.sendText(room2, "!oc notice from another bot", { msgtype: "m.notice" });
    const help = await helperBot.sendText(room2, "!oc help", { msgtype: "m.notice" });
    const root = await alice.sendText(room2, "!oc a session in the second room");
    await alice.waitForRoomEvent({
      roomId: room2,
      sender: env.botUserId,
      match: (e) => newBody(e).startsWith("Echo: a session in the second room\n\n— "),
      description: "the answer in the second room",
    });
    const inThread = await helperBot.sendText(room2, "notice in the thread from another bot", { msgtype: "m.notice", threadRoot: root });
    await marker(room2, "after the other bot's notices");
    for (const id of [top, help, inThread]) assert.deepEqual(botReactionsTo(room2, id), [], "no reply or reaction to a notice");
    assert.equal(await modelSaw("from another bot"), false, "no notice reached the agent");
  });

  test("edits are ignored: an edited command, a message edited into one, an edited follow-up", async () => {
    const { alice } = env.users;
    const threadsBefore = env.query("SELECT * FROM threads").length;
    const oldPrompt = env.query<{ root_event_id: string }>("SELECT root_event_id FROM threads ORDER BY rowid LIMIT 1")[0]?.root_event_id ?? "";
    const plain = await alice.sendText(env.roomId, "just chatting, not for the bot");
    const followUp = await alice.sendText(env.roomId, "a follow-up that will be edited", { threadRoot: oldPrompt });
    const sentAt = performance.now();
    await waitForFinalReply(env, oldPrompt, followUp, sentAt);

    const edits = [
      await alice.editText(env.roomId, oldPrompt, "!oc a different prompt by an edit"),
      await alice.editText(env.roomId, plain, "!oc edited into a command"),
      await alice.editText(env.roomId, followUp, "an edited follow-up"),
    ];
    await marker(env.roomId, "after the edits");
    for (const id of edits) assert.deepEqual(botReactionsTo(env.roomId, id), [], "no reply or reaction to an edit");
    for (const text of ["a different prompt by an edit", "edited into a command", "an edited follow-up"]) assert.equal(await modelSaw(text), false, `"${text}" reached the agent`);
    // One new thread: the marker's. The edits started none.
    assert.equal(env.query("SELECT * FROM threads").length, threadsBefore + 1);
  });
});

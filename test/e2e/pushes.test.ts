import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { PushGateway, type PushNotification } from "../harness/push-gateway.ts";
import { TestEnv, waitForFinalReply } from "./env.ts";

// What phones get, through the real push path: each person registers an HTTP pusher (as a
// phone app does) pointing at a push gateway this file runs on loopback; Synapse evaluates its
// push rules and sends the notifications there; the tests look at which events arrived, with
// which tweaks, and what their lock-screen text (the plain `body`) says.
//
// "Loud" below is what makes a phone buzz: a highlight or a sound tweak. In a group room
// Synapse's default `.m.rule.message` also sends every other member a silent notification
// (no tweaks) for any text message, as it does for a person's message; the bot's pushes are
// text messages, so those are expected, and the tests check that they stay silent.

let env: TestEnv;
let gateway: PushGateway;
let dmRoom = "";
const suffix = Date.now().toString(36);
const phone = { alice: `alice-phone-${suffix}`, bob: `bob-phone-${suffix}` };
/** Long enough for a push Synapse would still send to have arrived (they come within milliseconds). */
const settleMs = 2500;

before(async () => {
  gateway = await PushGateway.start();
  // No BOT_COMPLETION_NOTICE_AFTER_MS: the default (every turn pushes) is what is tested.
  env = await TestEnv.create({ name: "push" });
  await env.users.alice.setHttpPusher(gateway.url, { pushkey: phone.alice });
  await env.users.bob.setHttpPusher(gateway.url, { pushkey: phone.bob });
  // The path works before anything is tested: a person's mention reaches the phone.
  const probe = await env.users.bob.sendText(env.roomId, "probe for alice's phone", { mentions: [env.users.alice.userId] });
  await gateway.waitFor(phone.alice, (n) => n.event_id === probe, { timeoutMs: 15_000, description: "a mention from bob" }).catch((err: unknown) => {
    throw new Error(`Synapse sent no push to the test gateway: a stack booted before test/harness/synapse.ts let it push to 127.0.0.1 (ip_range_whitelist)? Boot a new one.\n${String(err)}`);
  });
  // A direct chat: alice and the bot alone (Synapse's one-to-one rules apply to two members).
  dmRoom = await env.users.alice.createRoom({ name: `alice and the bot ${suffix}`, invite: [env.botUserId] });
  await env.users.alice.waitForRoomEvent({
    roomId: dmRoom,
    type: "m.room.member",
    match: (e) => e.state_key === env.botUserId && e.content.membership === "join",
    description: "the bot joining the direct chat",
    timeoutMs: 30_000,
  });
});
after(async () => {
  await env?.close();
  await gateway?.stop();
});

type Person = "alice" | "bob";

const tweaks = (n: PushNotification): Record<string, unknown> => n.devices[0]?.tweaks ?? {};
const loud = (n: PushNotification): boolean => tweaks(n).highlight === true || tweaks(n).sound !== undefined;
const relation = (n: PushNotification): { rel_type?: string; event_id?: string } => (n.content?.["m.relates_to"] ?? {}) as { rel_type?: string; event_id?: string };
const bodyOf = (n: PushNotification): string => String(n.content?.body ?? "");

/** The bot's notifications to a person's phone, in a room, in a thread if given. */
function botPushes(who: Person, roomId: string, threadRoot?: string): PushNotification[] {
  return gateway.forPushkey(phone[who]).filter((n) => n.sender === env.botUserId && n.room_id === roomId && (threadRoot === undefined || relation(n).event_id === threadRoot));
}

const loudPushes = (who: Person, roomId: string, threadRoot?: string): PushNotification[] => botPushes(who, roomId, threadRoot).filter(loud);

function waitForPush(who: Person, roomId: string, threadRoot: string, match: (body: string) => boolean, description: string, timeoutMs = 30_000): Promise<PushNotification> {
  return gateway.waitFor(phone[who], (n) => n.sender === env.botUserId && n.room_id === roomId && relation(n).event_id === threadRoot && loud(n) && match(bodyOf(n)), { description, timeoutMs });
}

const displayName = (who: Person): string => /^@([^:]+)/.exec(env.users[who].userId)?.[1] ?? "";

/** What a lock screen shows is plain text: no markup, names instead of links. */
function assertLockScreenText(body: string): void {
  assert.doesNotMatch(body, /\*\*|__|`|\]\(|matrix\.to|<a |&lt;|&amp;/, `plain text for a lock screen: ${JSON.stringify(body)}`);
}

/**
 * A push for one person: a text message that mentions them, rings and highlights, pill kept in
 * the HTML. `fenced`: the body may show an asked command in its fence (a permission request).
 */
function assertPushFor(n: PushNotification, who: Person, opts: { fenced?: boolean } = {}): void {
  const userId = env.users[who].userId;
  assert.equal(n.type, "m.room.message");
  assert.equal(n.content?.msgtype, "m.text", "a notice would never push");
  assert.deepEqual(n.content?.["m.mentions"], { user_ids: [userId] });
  assert.equal(tweaks(n).highlight, true, "a mention highlights");
  assert.equal(tweaks(n).sound, "default", "and rings");
  assert.equal(n.prio, "high");
  assertLockScreenText(opts.fenced ? bodyOf(n).replace(/^(`{3,})\n[\s\S]*?\n\1$/m, "") : bodyOf(n));
  assert.ok(String(n.content?.formatted_body).includes(`<a href="https://matrix.to/#/${encodeURIComponent(userId)}">${displayName(who)}</a>`), `the pill in the HTML: ${String(n.content?.formatted_body)}`);
}

/** Sends a prompt starting a thread and waits for the final version of the reply. */
async function turn(roomId: string, prompt: string): Promise<{ root: string; replyId: string }> {
  const sentAt = performance.now();
  const root = await env.users.alice.sendText(roomId, prompt);
  if (roomId === env.roomId) return { root, replyId: (await waitForFinalReply(env, root, root, sentAt)).replyId };
  // waitForFinalReply watches the suite's room; in another room the footer line is waited for here.
  const reply = await env.users.alice.waitForRoomEvent({
    roomId,
    sender: env.botUserId,
    match: (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === root && e.content.msgtype === "m.notice",
    description: `the reply in ${roomId}`,
    timeoutMs: 60_000,
  });
  await env.users.alice.waitForRoomEvent({
    roomId,
    sender: env.botUserId,
    match: (e) => {
      const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
      const body = e.event_id === reply.event_id ? String(e.content.body) : rel?.rel_type === "m.replace" && rel.event_id === reply.event_id ? String((e.content["m.new_content"] as { body?: string }).body) : "";
      return /\n— \S.*$/.test(body);
    },
    description: "the final version of the reply",
    timeoutMs: 60_000,
  });
  return { root, replyId: reply.event_id };
}

/** Waits until the scripted model has been asked `n` times for a prompt containing `text`. */
async function modelAsked(text: string, n: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const asked = (await env.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes(text)).length;
    if (asked >= n || Date.now() > end) return asked;
    await sleep(250);
  }
}

describe("pushes", () => {
  let groupThread = "";

  test("a short turn in a group room: one push, to who asked, once the answer is complete", async (t) => {
    const { root, replyId } = await turn(env.roomId, "!oc Echo push short");
    groupThread = root;
    const push = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("✅"), "the completion push");
    await sleep(settleMs);
    t.diagnostic(`alice's phone: ${JSON.stringify(bodyOf(push))}`);
    assertPushFor(push, "alice");
    assert.notEqual(push.event_id, replyId, "the push is its own message, not the live reply");
    assert.match(bodyOf(push), new RegExp(`^✅ .*\\b[Dd]one in (under 1 s|\\d+ s)\\b.* \\(for ${displayName("alice")}\\)$`));
    assert.deepEqual(loudPushes("alice", env.roomId, root).map((n) => n.event_id), [push.event_id], "exactly one push for the turn");
    assert.deepEqual(loudPushes("bob", env.roomId, root), [], "nobody else's phone rings");
    const quiet = botPushes("bob", env.roomId, root);
    t.diagnostic(`bob's phone, silent (Synapse's .m.rule.message): ${quiet.length}`);
    assert.ok(quiet.every((n) => n.event_id === push.event_id), "bob's silent ones are the same message, nothing of the live reply");
  });

  test("the completion says what finished: title, outcome, duration and the answer's first line", async () => {
    const { root } = await turn(env.roomId, "!oc Echo what finished");
    const push = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("✅"), "the completion push");
    assert.match(bodyOf(push), new RegExp(`^✅ Echo what finished — done in (under 1 s|\\d+ s): Echo: Echo what finished \\(for ${displayName("alice")}\\)$`));
  });

  test("a long turn: nothing while it streams, one push after its final version", async (t) => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc something slow for the phone");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    const push = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("✅"), "the completion push");
    await sleep(settleMs);
    t.diagnostic(`alice's phone: ${JSON.stringify(bodyOf(push))} (reply edited ${reply.editCount} times)`);
    assertPushFor(push, "alice");
    assert.ok(reply.editCount >= 2, "the reply streamed");
    const seconds = Number(/done in (\d+) s/i.exec(bodyOf(push))?.[1] ?? 0);
    assert.ok(seconds >= 3, `the duration is the turn's: ${bodyOf(push)}`);
    const edits = await env.users.alice.edits(env.roomId, reply.replyId);
    const pushed = await env.users.alice.getEvent(env.roomId, push.event_id ?? "");
    assert.ok(edits.every((e) => e.origin_server_ts <= pushed.origin_server_ts), "the push comes after the last edit: the answer is complete");
    assert.deepEqual(loudPushes("alice", env.roomId, root).map((n) => n.event_id), [push.event_id]);
  });

  test("a permission request pushes at once, saying what will run", async (t) => {
    const root = await env.users.alice.sendText(env.roomId, "!oc bash: npm test");
    const ask = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("🔐"), "the permission push");
    t.diagnostic(`alice's phone: ${JSON.stringify(bodyOf(ask).split("\n")[0])}`);
    assertPushFor(ask, "alice", { fenced: true });
    assert.equal(bodyOf(ask).split("\n")[0], `🔐 Permission needed — ${displayName("alice")}: OpenCode wants to run: npm test`, "the first line, which a lock screen shows, says what will run");
    assert.ok(bodyOf(ask).includes("\n```\nnpm test\n```\n"), "the whole command follows, fenced as the message shows it");
    assert.match(String(ask.content?.formatted_body), /<strong>Permission needed<\/strong>/, "the HTML is the message as before");
    await sleep(500);
    assert.deepEqual(loudPushes("alice", env.roomId, root).map((n) => n.event_id), [ask.event_id], "nothing else yet: the turn waits");

    await env.users.alice.react(env.roomId, ask.event_id ?? "", "❌");
    const done = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("✅"), "the completion push after the answer");
    await sleep(settleMs);
    assert.deepEqual(loudPushes("alice", env.roomId, root).map((n) => n.event_id), [ask.event_id, done.event_id], "the request, then the end of the turn; the request's edit is silent");
  });

  let retrying = "";

  test("a model outage: retries push nobody", async (t) => {
    const root = await env.users.alice.sendText(env.roomId, "!oc fail for a while");
    retrying = root;
    const asked = await modelAsked("fail for a while", 3, 30_000);
    t.diagnostic(`the model was asked ${asked} times`);
    assert.ok(asked >= 3, "OpenCode retried the failing model");
    // The thread says what the agent is waiting for: the provider's error and the next try.
    const retryLine = await env.users.alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => /^⏳ _.+; retry \d+ in \d+ s…_$/.test(String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? e.content.body ?? "")),
      description: "the live reply showing the retry",
    });
    t.diagnostic(`the thread shows: ${JSON.stringify((retryLine.content["m.new_content"] as { body?: string } | undefined)?.body ?? retryLine.content.body)}`);
    await sleep(500);
    assert.deepEqual(botPushes("alice", env.roomId, root), [], "no push while it retries");
    assert.deepEqual(botPushes("bob", env.roomId, root), []);
  });

  test("a retrying turn its asker aborts pushes nobody", async (t) => {
    assert.ok(retrying, "the outage test's thread");
    assert.equal(await env.ask("!oc abort", { threadRoot: retrying }), "⏹️ Aborting…");
    const reply = await waitForFinalReply(env, retrying, retrying, 0);
    t.diagnostic(`the reply: ${JSON.stringify(reply.body)}`);
    await sleep(settleMs);
    assert.deepEqual(loudPushes("alice", env.roomId, retrying).map(bodyOf), [], "aborted: the asker knows");
  });

  test("a failed turn pushes its asker at once", async (t) => {
    const root = await env.users.alice.sendText(env.roomId, "!oc fail 400 now");
    const push = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("⚠️"), "the failure push");
    await sleep(settleMs);
    t.diagnostic(`alice's phone: ${JSON.stringify(bodyOf(push))}`);
    assertPushFor(push, "alice");
    assert.match(bodyOf(push), /\b[Ff]ailed (at once|after \d+ s)\b/);
    assert.deepEqual(loudPushes("alice", env.roomId, root).map((n) => n.event_id), [push.event_id]);
  });

  test("a failure says what failed and what to do", async () => {
    const root = await env.users.alice.sendText(env.roomId, "!oc fail 400 again");
    const push = await waitForPush("alice", env.roomId, root, (b) => b.startsWith("⚠️"), "the failure push");
    assert.match(bodyOf(push), new RegExp(`^⚠️ fail 400 again — failed (at once|after \\d+ s): APIError: .+ Write a follow-up in this thread to try again.* \\(for ${displayName("alice")}\\)$`));
  });

  test("a streaming turn its asker aborts pushes nobody", async () => {
    const root = await env.users.alice.sendText(env.roomId, "!oc something slow to stop");
    await env.users.alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? "").includes("slow3"),
      description: "the reply streaming",
    });
    assert.equal(await env.ask("!oc abort", { threadRoot: root }), "⏹️ Aborting…");
    await env.users.alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => /⏹️ Aborted/.test(String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? "")),
      description: "the reply saying it was aborted",
    });
    await sleep(settleMs);
    assert.deepEqual(loudPushes("alice", env.roomId, root), []);
    assert.deepEqual(loudPushes("bob", env.roomId, root), []);
  });

  test("a follow-up by a second person pushes that person, not who started the thread", async (t) => {
    assert.ok(groupThread, "the first test's thread");
    const aliceBefore = loudPushes("alice", env.roomId, groupThread).length;
    const sentAt = performance.now();
    const prompt = await env.users.bob.sendText(env.roomId, "Echo from bob", { threadRoot: groupThread });
    await waitForFinalReply(env, groupThread, prompt, sentAt);
    const push = await waitForPush("bob", env.roomId, groupThread, (b) => b.startsWith("✅"), "bob's completion push");
    await sleep(settleMs);
    t.diagnostic(`bob's phone: ${JSON.stringify(bodyOf(push))}`);
    assertPushFor(push, "bob");
    assert.match(bodyOf(push), new RegExp(`\\(for ${displayName("bob")}\\)$`));
    assert.deepEqual(loudPushes("bob", env.roomId, groupThread).map((n) => n.event_id), [push.event_id]);
    assert.equal(loudPushes("alice", env.roomId, groupThread).length, aliceBefore, "alice started the thread, but this turn was bob's");
  });

  test("in a direct chat: one push per turn, nothing of the live reply", async (t) => {
    const { root, replyId } = await turn(dmRoom, "!oc Echo in private");
    const push = await waitForPush("alice", dmRoom, root, (b) => b.startsWith("✅"), "the completion push in the direct chat");
    await sleep(settleMs);
    t.diagnostic(`alice's phone: ${JSON.stringify(bodyOf(push))}`);
    assertPushFor(push, "alice");
    // In a room of two every message notifies (.m.rule.room_one_to_one): all but this one are notices.
    assert.deepEqual(botPushes("alice", dmRoom).map((n) => n.event_id), [push.event_id], "no notification of any kind for the reply or its edits");
    assert.notEqual(push.event_id, replyId);
  });

  test("the live replies and their edits never reached a phone", (t) => {
    const fromBot = gateway.all().filter((n) => n.sender === env.botUserId);
    for (const n of fromBot) {
      const who = n.devices[0]?.pushkey.replace(/-phone-.*/, "") ?? "?";
      const how = loud(n) ? `highlight=${String(tweaks(n).highlight)} sound=${String(tweaks(n).sound)}` : "silent";
      t.diagnostic(`${who} ${n.room_id === dmRoom ? "dm" : "group"} ${how}: ${JSON.stringify(bodyOf(n).split("\n")[0])}`);
    }
    assert.ok(fromBot.length > 0);
    for (const n of fromBot) {
      assert.equal(n.content?.msgtype, "m.text", `only text messages: ${JSON.stringify(n.content)}`);
      assert.notEqual(relation(n).rel_type, "m.replace", "no edit");
      assert.ok(((n.content?.["m.mentions"] as { user_ids?: string[] } | undefined)?.user_ids ?? []).length === 1, "each one is for one person");
    }
    assert.deepEqual(gateway.refused, [], "Synapse spoke the push gateway API");
  });
});

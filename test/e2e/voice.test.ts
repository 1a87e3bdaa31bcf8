import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { MatrixEvent, MatrixTestUser } from "../harness/matrix-user.ts";
import { TranscriptionServer } from "../harness/transcription-server.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Voice messages from phones: an m.audio (org.matrix.msc3245.voice) in a session thread is
// transcribed by an OpenAI-compatible endpoint (a scripted one on loopback, which answers only
// for the exact bytes Alice uploaded, the configured model and key), the transcript is shown in
// the thread, quoted and attributed, and becomes the prompt. Without the endpoint the bot says
// how to enable it; a failed transcription is one line and nothing reaches the agent.

const apiKey = `sk-voice-${randomBytes(12).toString("hex")}`;
const model = "whisper-test-model";
let server: TranscriptionServer;
let env: TestEnv;
let aliceName = "";

before(async () => {
  server = await TranscriptionServer.start({ model, apiKey });
  env = await TestEnv.create({
    name: "voice",
    botEnv: { TRANSCRIPTION_BASE_URL: `${server.url}/v1`, TRANSCRIPTION_API_KEY: apiKey, TRANSCRIPTION_MODEL: model },
  });
  aliceName = String((await env.users.alice.stateEvent(env.roomId, "m.room.member", env.users.alice.userId)).displayname ?? "");
  assert.ok(aliceName, "alice has a display name");
});
after(async () => {
  await env?.close();
  await server?.close();
});

/** A word no other prompt of this run (or of another suite on the shared model) contains. */
const tag = (): string => `v${randomBytes(3).toString("hex")}`;
/** Bytes that look like an Ogg file and hold every byte value a multipart encoder could mangle (CR, LF, NUL, high bytes). */
const audioBytes = (): Buffer => Buffer.concat([Buffer.from("OggS\u0000\u0002", "latin1"), Buffer.from("\r\n--\r\n\u0000\u00ff", "latin1"), randomBytes(3000)]);
type Rel = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const relOf = (e: MatrixEvent): Rel => (e.content["m.relates_to"] ?? {}) as Rel;

/** Sends a voice message as Element does: m.audio with the MSC3245 voice marker, body "Voice message", no caption. */
async function sendVoice(user: MatrixTestUser, roomId: string, audio: Buffer, where: { threadRoot?: string; replyTo?: string } = {}): Promise<string> {
  const url = await user.uploadFile(audio, "audio/ogg", "Voice message.ogg");
  const content: Record<string, unknown> = {
    msgtype: "m.audio",
    body: "Voice message",
    url,
    info: { mimetype: "audio/ogg", size: audio.length, duration: 2100 },
    "org.matrix.msc1767.audio": { duration: 2100, waveform: [0, 300, 900, 400] },
    "org.matrix.msc3245.voice": {},
  };
  if (where.threadRoot) content["m.relates_to"] = { rel_type: "m.thread", event_id: where.threadRoot, is_falling_back: true, "m.in_reply_to": { event_id: where.threadRoot } };
  else if (where.replyTo) content["m.relates_to"] = { "m.in_reply_to": { event_id: where.replyTo } };
  return user.sendEvent(roomId, "m.room.message", content);
}

/** The bot's notices that answer `eventId` (reply fallback to it), as alice's sync saw them. */
const noticesAbout = (e: TestEnv, eventId: string, roomId = e.roomId): MatrixEvent[] =>
  e.users.alice.seenEvents(roomId).filter((ev) => ev.sender === e.botUserId && ev.type === "m.room.message" && ev.content.msgtype === "m.notice" && relOf(ev)["m.in_reply_to"]?.event_id === eventId);

async function modelPrompts(needle: string): Promise<string[]> {
  return (await env.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes(needle)).map((r) => r.lastUserText);
}

async function sessionUserMessages(root: string): Promise<string[]> {
  const sessionId = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
  const client = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
  const messages = (await client.session.messages({ sessionID: sessionId })).data ?? [];
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

/**
 * The agent's answer to `promptId` in the thread `root`, once final (its footer line). Not
 * waitForFinalReply: the transcript notice is the bot's first reply to a voice message.
 */
async function answerTo(e: TestEnv, root: string, promptId: string, roomId = e.roomId): Promise<{ replyId: string; body: string }> {
  const { alice } = e.users;
  const first = await alice.waitForRoomEvent({
    roomId,
    sender: e.botUserId,
    type: "m.room.message",
    timeoutMs: 60_000,
    match: (ev) => relOf(ev).rel_type === "m.thread" && relOf(ev).event_id === root && relOf(ev)["m.in_reply_to"]?.event_id === promptId && !String(ev.content.body).startsWith("🎙️"),
    description: `the answer to ${promptId}`,
  });
  const version = (ev: MatrixEvent): string | undefined =>
    ev.event_id === first.event_id ? String(ev.content.body) : relOf(ev).rel_type === "m.replace" && relOf(ev).event_id === first.event_id ? String((ev.content["m.new_content"] as { body?: unknown }).body) : undefined;
  await alice.waitForRoomEvent({ roomId, sender: e.botUserId, timeoutMs: 60_000, match: (ev) => /\n— \S/.test(version(ev) ?? ""), description: `the final version of ${first.event_id}` });
  return { replyId: first.event_id, body: (await alice.latestBody(roomId, first.event_id)).body };
}

/** A typed follow-up in the thread, answered: messages of a room are handled in order, so everything sent before it was dealt with. */
async function marker(root: string): Promise<void> {
  const sentAt = performance.now();
  const id = await env.users.alice.sendText(env.roomId, `marker ${tag()}`, { threadRoot: root });
  await waitForFinalReply(env, root, id, sentAt);
}

describe("voice messages with a transcription endpoint", () => {
  let root = "";
  let liveReplyId = "";

  before(async () => {
    const sentAt = performance.now();
    root = await env.users.alice.sendText(env.roomId, `!oc voice session ${tag()}`);
    await waitForFinalReply(env, root, root, sentAt);
  });

  test("in a session thread: the exact bytes are transcribed, the thread shows the quoted, attributed transcript, the model gets it once", async () => {
    const { alice } = env.users;
    const word = tag();
    const said = `please add a test for the parser ${word}`;
    const audio = audioBytes();
    server.script(audio, { text: ` ${said} ` });
    const voiceId = await sendVoice(alice, env.roomId, audio, { threadRoot: root });

    const shown = await env.waitForBot("the transcript notice", (e) => relOf(e)["m.in_reply_to"]?.event_id === voiceId && String(e.content.body).startsWith("🎙️"));
    assert.equal(shown.content.body, `🎙️ ${aliceName}: "${said}"`);
    assert.equal(shown.content.msgtype, "m.notice");
    assert.equal(relOf(shown).rel_type, "m.thread");
    assert.equal(relOf(shown).event_id, root, "in the session's thread");
    assert.deepEqual(shown.content["m.mentions"], { user_ids: [] }, "the transcript pushes nobody");

    const reply = await answerTo(env, root, voiceId);
    liveReplyId = reply.replyId;
    assert.equal(splitFooter(reply.body).text, `Echo: ${said}`);
    const prompts = await modelPrompts(word);
    assert.equal(prompts.length, 1, `prompted once: ${prompts.join(" | ")}`);
    assert.match(prompts[0] ?? "", new RegExp(`^\\[alice-voice-\\w+\\] ${said}$`), "attributed to alice, as a typed prompt");

    const received = server.requestsFor(audio);
    assert.equal(received.length, 1, "transcribed once");
    assert.equal(received[0]?.model, model);
    assert.equal(received[0]?.filename, "Voice message.ogg", "a name with the extension the API needs");
    assert.equal(received[0]?.fileType, "audio/ogg");
    assert.equal(received[0]?.refused, undefined);
    await alice.waitForReadReceipt(env.roomId, voiceId, env.botUserId);
  });

  test("a plain reply by voice (no thread) to the bot's answer continues that session", async () => {
    const word = tag();
    const said = `now run the linter ${word}`;
    const audio = audioBytes();
    server.script(audio, { text: said });
    const voiceId = await sendVoice(env.users.alice, env.roomId, audio, { replyTo: liveReplyId });
    const reply = await answerTo(env, root, voiceId);
    assert.equal(splitFooter(reply.body).text, `Echo: ${said}`);
    assert.equal((await modelPrompts(word)).length, 1);
    assert.equal(env.query("SELECT * FROM threads").length, 1, "no new session");
  });

  test("the service answers 500: one line naming the failure (the key it quoted blanked out), nothing reaches the agent", async () => {
    const audio = audioBytes();
    server.script(audio, { status: 500, body: JSON.stringify({ error: { message: `model overloaded for key ${apiKey}`, type: "server_error" } }) });
    const before = (await sessionUserMessages(root)).length;
    const voiceId = await sendVoice(env.users.alice, env.roomId, audio, { threadRoot: root });
    const failed = await env.waitForBot("the failure notice", (e) => relOf(e)["m.in_reply_to"]?.event_id === voiceId);
    assert.equal(
      failed.content.body,
      `⚠️ Transcription failed: ${new URL(server.url).host} answered HTTP 500: model overloaded for key [redacted]. Nothing was sent to the agent.`,
    );
    assert.equal(failed.content.msgtype, "m.notice");
    await marker(root);
    assert.equal(server.requestsFor(audio).length, 1, "asked once, not retried");
    assert.equal((await sessionUserMessages(root)).length, before + 1, "only the marker reached the session");
    assert.deepEqual(noticesAbout(env, voiceId).map((e) => e.content.body), [failed.content.body], "one line, and no transcript notice");
    assert.ok(!env.bot.text.includes(apiKey), "the key is never in the bot's log");
    assert.ok(env.bot.text.includes("could not transcribe a voice message"), "the failure is logged");
  });

  test("a stranger's voice message and a top-level one in a group room are never transcribed", async () => {
    const strangers = audioBytes();
    const topLevel = audioBytes();
    server.script(strangers, { text: `stranger says ${tag()}` });
    server.script(topLevel, { text: `top level says ${tag()}` });
    const strangerId = await sendVoice(env.users.mallory, env.roomId, strangers, { threadRoot: root });
    const topId = await sendVoice(env.users.alice, env.roomId, topLevel);
    await marker(root);
    assert.equal(server.requestsFor(strangers).length, 0, "the stranger's audio never left the homeserver");
    assert.equal(server.requestsFor(topLevel).length, 0);
    assert.ok(noticesAbout(env, strangerId).every((e) => String(e.content.body).includes("not allowed")), "at most the not-allowed notice");
    assert.deepEqual(noticesAbout(env, topId), [], "a top-level voice message in a group room is nobody's");
    assert.equal(env.query("SELECT * FROM threads").length, 1);
  });

  test("in a direct chat with the bot, a top-level voice message starts a session", async () => {
    const { alice } = env.users;
    const dm = await alice.createRoom({ invite: [env.botUserId] });
    await alice.waitForRoomEvent({ roomId: dm, type: "m.room.member", match: (e) => e.state_key === env.botUserId && e.content.membership === "join", description: "the bot joining the DM" });
    const word = tag();
    const said = `what does the scheduler do ${word}`;
    const audio = audioBytes();
    server.script(audio, { text: said });
    const voiceId = await sendVoice(alice, dm, audio);
    const shown = await alice.waitForRoomEvent({ roomId: dm, sender: env.botUserId, match: (e) => String(e.content.body).startsWith("🎙️"), description: "the transcript notice in the DM" });
    assert.equal(shown.content.body, `🎙️ ${aliceName}: "${said}"`);
    assert.equal(relOf(shown).event_id, voiceId, "the session's thread is on the voice message");
    const answer = await answerTo(env, voiceId, voiceId, dm);
    assert.equal(splitFooter(answer.body).text, `Echo: ${said}`);
    assert.equal((await modelPrompts(word)).length, 1);
    const rows = env.query<{ room_id: string; root_event_id: string }>("SELECT room_id, root_event_id FROM threads WHERE room_id = ?", dm);
    assert.deepEqual(rows, [{ room_id: dm, root_event_id: voiceId }]);
  });
});

describe("voice messages without a transcription endpoint", () => {
  let plain: TestEnv;
  before(async () => {
    plain = await TestEnv.create({ name: "novoice" });
  });
  after(async () => {
    await plain?.close();
  });

  test("a voice message in a session thread gets one line saying how to enable transcription; nothing is prompted", async () => {
    const { alice } = plain.users;
    const sentAt = performance.now();
    const root = await alice.sendText(plain.roomId, `!oc no voice here ${tag()}`);
    await waitForFinalReply(plain, root, root, sentAt);
    const audio = audioBytes();
    const voiceId = await sendVoice(alice, plain.roomId, audio, { threadRoot: root });
    const howTo = await plain.waitForBot("the how-to notice", (e) => relOf(e)["m.in_reply_to"]?.event_id === voiceId);
    const body = String(howTo.content.body);
    assert.match(body, /^🎙️ Voice messages need a transcription service: set `transcription\.baseUrl` \(env `TRANSCRIPTION_BASE_URL`\)/);
    assert.ok(!body.includes("\n"), "one line");
    assert.equal(relOf(howTo).event_id, root, "in the thread");
    assert.equal(server.requestsFor(audio).length, 0);
    const markerAt = performance.now();
    const markerId = await alice.sendText(plain.roomId, `marker ${tag()}`, { threadRoot: root });
    await waitForFinalReply(plain, root, markerId, markerAt);
    const prompts = (await plain.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes("Voice message"));
    assert.deepEqual(prompts, [], "the voice message never became a prompt");
    assert.deepEqual(noticesAbout(plain, voiceId).map((e) => e.content.body), [body], "only the how-to");
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testOpencodeConfig } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, embeddedServerEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot on its embedded default (no OpenCode URL: it runs its own `opencode serve`), and
// rooms it cannot serve (end-to-end encrypted).

describe("the embedded OpenCode server", () => {
  let env: TestEnv;
  before(async () => {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, "embedded-"));
    const configPath = join(dir, "opencode.json");
    // The user's own OpenCode configuration, here pointing at the scripted model.
    writeFileSync(configPath, JSON.stringify(testOpencodeConfig(stack.model.baseUrl)));
    env = await TestEnv.create({
      name: "embed",
      botEnv: embeddedServerEnv(dir, join(dir, "workspace"), configPath),
    });
  });
  after(async () => {
    await env?.close();
  });

  test("with no OpenCode URL the bot starts its own server, answers through it, and stops it on exit", async () => {
    const health = (await (await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`)).json()) as { ok: boolean; opencode: Array<{ url: string; ok: boolean }> };
    const url = health.opencode[0]?.url ?? "";
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(url, env.stack.opencode.url, "its own server, not the shared one");
    assert.equal(health.ok, true);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc hello from the embedded default");
    const reply = await waitForFinalReply(env, root, root, sentAt, 60_000);
    assert.equal(splitFooter(reply.body).text, "Echo: hello from the embedded default");
    assert.equal(await env.bot.stop("SIGTERM"), 0);
    await assert.rejects(fetch(`${url}/global/health`, { signal: AbortSignal.timeout(2000) }), "the embedded server is gone");
  });
});

describe("history from before the bot joined", () => {
  let env: TestEnv;
  before(async () => {
    env = await TestEnv.create({ name: "hist" });
  });
  after(async () => {
    await env?.close();
  });

  test("commands written before the bot was invited are not acted on; later ones are", async () => {
    const { alice } = env.users;
    const roomId = await alice.createRoom({ name: "older room" });
    const old = await alice.sendText(roomId, "!oc help from before the bot");
    await alice.inviteUser(roomId, env.botUserId);
    await alice.waitForRoomEvent({
      roomId,
      type: "m.room.member",
      match: (e) => e.state_key === env.botUserId && e.content.membership === "join",
      description: "the bot joining the older room",
      timeoutMs: 30_000,
    });
    const fresh = await alice.sendText(roomId, "!oc help");
    await alice.waitForRoomEvent({
      roomId,
      sender: env.botUserId,
      match: (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === fresh,
      description: "the answer to the new command",
    });
    const answered = alice.seenEvents(roomId).filter((e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === old);
    assert.equal(answered.length, 0, "the old command got no answer");
  });
});

describe("an encrypted room", () => {
  let env: TestEnv;
  before(async () => {
    env = await TestEnv.create({ name: "e2ee" });
  });
  after(async () => {
    await env?.close();
  });

  test("the bot says once that it cannot read encrypted messages", async () => {
    const { alice } = env.users;
    const roomId = await alice.createRoom({ name: "secret", encrypted: true, invite: [env.botUserId] });
    const notice = await alice.waitForRoomEvent({
      roomId,
      sender: env.botUserId,
      type: "m.room.message",
      description: "the bot's notice in the encrypted room",
      timeoutMs: 30_000,
    });
    assert.equal(notice.content.body, "🔒 This room is end-to-end encrypted, and I cannot read encrypted messages yet. Please talk to me in an unencrypted room.");
    assert.equal(notice.content.msgtype, "m.notice");
    // An (undecryptable) encrypted message does not bring a second notice.
    await alice.sendEvent(roomId, "m.room.encrypted", { algorithm: "m.megolm.v1.aes-sha2", ciphertext: "AwgAEn...", sender_key: "x", session_id: "y", device_id: "z" });
    const marker = await alice.sendText(env.roomId, "!oc help");
    await env.waitForBot("the help answer in the other room", (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === marker);
    const notices = alice.seenEvents(roomId).filter((e) => e.sender === env.botUserId && e.type === "m.room.message");
    assert.equal(notices.length, 1);
  });
});

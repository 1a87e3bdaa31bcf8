import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { FederationInjector } from "../harness/federation-injector.ts";
import type { MatrixEvent, MatrixTestUser } from "../harness/matrix-user.ts";
import { startTestOpencode, type TestOpencode } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, waitForFinalReply } from "./env.ts";

// Who may do what beyond using the bot: the bot's operators (access.admins, here alice by a
// pattern) and nobody else touch what every room shares; nothing in one room acts on another.
// Room A is the suite's room; alice owns room B, bob owns a room of his own.

let env: TestEnv;
let injector: FederationInjector;
let server: TestOpencode; // of its own: a shared one may have been told to allow `echo` always
let roomB = "";
let bobRoom = "";
const suffix = Date.now().toString(36);

async function inviteBot(owner: MatrixTestUser, name: string): Promise<string> {
  const roomId = await owner.createRoom({ name: `${name} ${suffix}`, invite: [env.botUserId] });
  await owner.waitForRoomEvent({
    roomId,
    type: "m.room.member",
    match: (e) => e.state_key === env.botUserId && e.content.membership === "join",
    description: `the bot joining ${name}`,
    timeoutMs: 30_000,
  });
  return roomId;
}

before(async () => {
  const stack = loadStackInfo();
  // The bot syncs through the injector: the cross-room reaction below is what only a remote server could send.
  injector = new FederationInjector(stack.synapse.baseUrl);
  await injector.up();
  const ws = mkdtempSync(join(stack.workDir, "ws-rights-"));
  server = await startTestOpencode({ workspaceDir: ws, stateDir: mkdtempSync(join(stack.workDir, "oc-rights-")), modelBaseUrl: stack.model.baseUrl });
  env = await TestEnv.create({
    name: "rights",
    botEnv: { MATRIX_HOMESERVER_URL: injector.url, OPENCODE_SERVER_URL: server.url, OPENCODE_WORKSPACE_DIR: ws, BOT_ADMINS: "@alice-rights-*:localhost" },
  });
  roomB = await inviteBot(env.users.alice, "alice's room B");
  bobRoom = await inviteBot(env.users.bob, "bob's room");
});
after(async () => {
  await env?.close();
  await injector?.down();
  await server?.stop();
});

const repliesTo = (id: string) => (e: MatrixEvent): boolean =>
  (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id;

/** Sends `body` as `user` in `roomId` and returns the bot's answer to it. */
async function askIn(user: MatrixTestUser, roomId: string, body: string): Promise<string> {
  const id = await user.sendText(roomId, body);
  const answer = await user.waitForRoomEvent({ roomId, sender: env.botUserId, type: "m.room.message", match: repliesTo(id), description: `the answer to ${body}` });
  return String(answer.content.body);
}

const threadsOf = (sessionId: string) =>
  env.query<{ room_id: string; root_event_id: string }>("SELECT room_id, root_event_id FROM threads WHERE session_id = ? ORDER BY room_id", sessionId);

describe("rights", () => {
  test("restart-server: bob, admin of his own room, is refused; an operator from access.admins gets past the check", async () => {
    const { bob } = env.users;
    // Bob may run his room's moderator commands (he created it)...
    assert.match(await askIn(bob, bobRoom, "!oc project ."), /^New sessions in this room work in `.*`\.$/);
    // ...but the OpenCode server is everyone's.
    assert.equal(await askIn(bob, bobRoom, "!oc restart-server"), "`!oc restart-server` is for the bot's operators (access.admins).");
    assert.equal(await env.ask("!oc restart-server", { as: "bob" }), "`!oc restart-server` is for the bot's operators (access.admins).");
    // The suite's server is not the bot's own: this answer comes only after the rights check.
    assert.equal(
      await env.ask("!oc restart-server"),
      `The OpenCode server at ${server.url} was not started by this bot, so the bot cannot restart it. Restart it where it runs; the bot reconnects by itself.`,
    );
    assert.match(await env.ask("!oc help"), /`!oc restart-server` — restart the OpenCode server .* _\(operators\)_/);
  });

  test("a ✅ reaction sent in room B on room A's permission request decides nothing; one in room A does", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc bash: echo cross-room");
    const request = await env.waitForBot("the permission request", (e) => repliesTo(root)(e) && String(e.content.body).includes("Permission needed"));

    // Synapse refuses this from its own users ("Relations must be in the same room"); a remote server need not.
    injector.inject(roomB, {
      type: "m.reaction",
      sender: alice.userId,
      content: { "m.relates_to": { rel_type: "m.annotation", event_id: request.event_id, key: "✅" } },
    });
    // Room B's messages are handled in order: once this is answered, the reaction has been too.
    assert.match(await askIn(alice, roomB, "!oc status"), /^\*\*This room\*\*/);
    assert.equal(injector.delivered, 1, "the bot received the cross-room reaction");
    assert.deepEqual(env.query("SELECT status, decided_by FROM permissions"), [{ status: "pending", decided_by: null }]);
    assert.equal((await alice.latestBody(env.roomId, request.event_id)).editCount, 0, "the request was not marked decided");

    await alice.react(env.roomId, request.event_id, "✅");
    await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => {
        const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
        return rel?.rel_type === "m.replace" && rel.event_id === request.event_id && /allowed once/.test(String((e.content["m.new_content"] as { body?: string }).body));
      },
      description: "the request marked allowed once",
    });
    assert.deepEqual(env.query("SELECT status, decided_by FROM permissions"), [{ status: "once", decided_by: alice.userId }]);
    await waitForFinalReply(env, root, root, sentAt);
  });

  test("`!oc attach` of room A's session is refused in other rooms; only an operator moves it, explicitly", async () => {
    const { alice, bob } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc a session of room A");
    await waitForFinalReply(env, root, root, sentAt);
    const id = env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
    assert.match(id, /^ses_/);
    const before = threadsOf(id);
    assert.deepEqual(before, [{ room_id: env.roomId, root_event_id: root }]);

    const refused = `⛔ Session \`${id}\` belongs to a thread in another room, so it cannot be attached here. The bot's operators (access.admins) can move it with \`!oc attach ${id} move\`.`;
    assert.equal(await askIn(alice, roomB, `!oc attach ${id}`), refused, "even an operator must say `move`");
    assert.equal(await askIn(bob, bobRoom, `!oc attach ${id}`), refused);
    assert.equal(await askIn(bob, bobRoom, `!oc attach ${id} move`), "`!oc attach <session-id> move` is for the bot's operators (access.admins).");
    assert.deepEqual(threadsOf(id), before, "the session still belongs to room A alone");

    await alice.sendText(roomB, `!oc attach ${id} move`);
    const moved = await alice.waitForRoomEvent({
      roomId: roomB,
      sender: env.botUserId,
      match: (e) => String(e.content.body).includes(`OpenCode session \`${id}\`, moved here from another room by an operator.`),
      description: "the moved session's thread in room B",
    });
    const told = await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => (e.content["m.relates_to"] as { event_id?: string } | undefined)?.event_id === root && String(e.content.body).startsWith("📦"),
      description: "the notice in room A's thread",
    });
    assert.equal(String(told.content.body), "📦 An operator moved this session to another room; messages in this thread no longer reach it.");
    assert.deepEqual(threadsOf(id), [{ room_id: roomB, root_event_id: moved.event_id }]);
    assert.match(await env.ask(`!oc attach ${id}`), /^⛔ Session `ses_\w+` belongs to a thread in another room/, "and now room A cannot take it back");
  });
});

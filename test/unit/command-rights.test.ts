import { test } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "matrix-bot-sdk";
import { AccessPolicy } from "../../src/access/policy.ts";
import type { AgentBackend } from "../../src/commands/backend.ts";
import { CommandRouter, type RouterDeps } from "../../src/commands/router.ts";
import type { CommandSpec } from "../../src/commands/types.ts";
import type { Logger } from "../../src/log.ts";
import type { MatrixSender } from "../../src/matrix/sender.ts";
import type { ThreadStore } from "../../src/store/threads.ts";

// The router's rights check, with the rest of the bot faked: what each person reads.

const room = "!room:example.org";

function setup(admins: string[], powerOf: Record<string, number>) {
  const answers: string[] = [];
  const ran: string[] = [];
  const reactions: Array<[string, string]> = [];
  const command = (name: string, rights: CommandSpec["rights"]): CommandSpec => ({
    name,
    summary: name,
    where: "any",
    ...(rights ? { rights } : {}),
    async run(ctx) {
      ran.push(`${name} by ${ctx.msg.sender}${ctx.senderIsAdmin ? " (admin)" : ""}`);
    },
  });
  const backend = {
    name: "opencode",
    prefix: "!oc",
    promptSummary: "prompt",
    commands: [command("restart-server", "admin"), command("project", "moderator"), command("status", undefined)],
    startThread: async () => undefined,
    followUp: async () => ({ queued: 0 }),
    onReaction: async (roomId: string, eventId: string) => {
      reactions.push([roomId, eventId]);
      return false;
    },
  } satisfies AgentBackend;
  const sender = {
    send: async (_room: string, content: { body?: string }) => {
      answers.push(String(content.body));
      return `$answer${answers.length}`;
    },
    react: async () => "$r",
  } as unknown as MatrixSender;
  const client = {
    getRoomStateEvent: async (_r: string, type: string) => (type === "m.room.power_levels" ? { users: powerOf } : { room_version: "10" }),
    getRoomState: async () => [],
  } as unknown as MatrixClient;
  const log = { info: () => undefined, error: () => undefined, warn: () => undefined } as unknown as Logger;
  const deps: RouterDeps = {
    botUserId: "@bot:example.org",
    access: new AccessPolicy(["@*:example.org"], 0, admins),
    threads: { get: () => undefined } as unknown as ThreadStore,
    backends: [backend],
    sender,
    client,
    services: {} as unknown as RouterDeps["services"],
    log,
    downloadFiles: async () => [],
  };
  const router = new CommandRouter(deps);
  let n = 0;
  const say = (sender: string, body: string, extra: { msgtype?: string; reactsTo?: string } = {}) =>
    router.handle({ roomId: room, eventId: `$m${++n}`, sender, msgtype: extra.msgtype ?? "m.text", body, threadRoot: undefined, isEdit: false, reactsTo: extra.reactsTo, timestamp: 0, content: {} });
  return { answers, ran, reactions, say };
}

test("an operator command is refused to a room admin who is not in access.admins, and says who may", async () => {
  const t = setup(["@op:ops.example.net"], { "@bob:example.org": 100 });
  await t.say("@bob:example.org", "!oc restart-server");
  assert.deepEqual(t.answers, ["`!oc restart-server` is for the bot's operators (access.admins)."]);
  await t.say("@op:ops.example.net", "!oc restart-server");
  assert.deepEqual(t.ran, ["restart-server by @op:ops.example.net (admin)"], "an operator outside allowedUsers is let in");
});

test("with no operators configured the refusal says so", async () => {
  const t = setup([], { "@bob:example.org": 100 });
  await t.say("@bob:example.org", "!oc restart-server");
  assert.deepEqual(t.answers, ["`!oc restart-server` is for the bot's operators (access.admins), and none are configured."]);
  assert.deepEqual(t.ran, []);
});

test("room commands keep the power-level check, for operators too; plain commands need neither", async () => {
  const t = setup(["@op:ops.example.net"], { "@bob:example.org": 50 });
  await t.say("@op:ops.example.net", "!oc project x");
  await t.say("@bob:example.org", "!oc project x");
  await t.say("@carol:example.org", "!oc status");
  assert.deepEqual(t.answers, ["`!oc project` needs room moderator rights (power level ≥ 50)."]);
  assert.deepEqual(t.ran, ["project by @bob:example.org", "status by @carol:example.org"]);
});

test("a reaction reaches the permission desk with the room it was sent in", async () => {
  const t = setup([], {});
  await t.say("@bob:example.org", "✅", { msgtype: "m.reaction", reactsTo: "$request" });
  await t.say("@eve:evil.org", "✅", { msgtype: "m.reaction", reactsTo: "$request" });
  assert.deepEqual(t.reactions, [[room, "$request"]], "a stranger's reaction never gets there");
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pushesPerReply, repliesPerPrompt, shrinks, type ThreadView } from "../harness/crash-checks.ts";
import { testOpencodeConfig } from "../harness/opencode.ts";
import { serversOf, signal, until } from "../harness/processes.ts";
import { expectedReply } from "../harness/scripted-model.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, embeddedServerEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot on its embedded default (it starts `opencode serve` itself; no sandbox, so the server
// outlives it) killed with -9 again and again while answers stream and prompts wait: three
// sessions, each with two follow-ups queued behind its turn, and a kill each time the restarted
// bot streams again. Each start must adopt the one server (never start a second, never leave
// one running unadopted), and every prompt must get its whole answer in its thread, once.

const slowText = expectedReply("slow");
const kills = 3;

let env: TestEnv;
let home = "";
before(async () => {
  const stack = loadStackInfo();
  const dir = mkdtempSync(join(stack.workDir, "embedded-killloop-"));
  const configPath = join(dir, "opencode.json");
  writeFileSync(configPath, JSON.stringify(testOpencodeConfig(stack.model.baseUrl)));
  home = join(dir, "home");
  env = await TestEnv.create({ name: "killloop", editWindowMs: 250, botEnv: { ...embeddedServerEnv(dir, join(dir, "workspace"), configPath), OPENCODE_SANDBOX: "off" } });
});
after(async () => {
  await env?.close();
  for (const pid of home ? serversOf(home) : []) {
    signal(pid, "SIGKILL"); // a failed assertion must not leave a server running
  }
});

describe("the bot on its embedded server, killed with -9 in a loop", () => {
  test(`${kills} kills with answers streaming and prompts queued: one server, adopted each time; every answer whole, in its thread, once`, async (t) => {
    const { alice } = env.users;
    const view: ThreadView = { user: alice, roomId: env.roomId, botUserId: env.botUserId };
    const [server] = await until("the embedded server", () => (serversOf(home).length === 1 ? serversOf(home) : undefined));
    const marker = randomBytes(3).toString("hex");
    const sentAt = performance.now();
    const threads: Array<{ root: string; prompts: Array<{ id: string; tag: string }> }> = [];
    for (const n of [1, 2, 3]) {
      const tag = `${marker}s${n}`;
      const root = await alice.sendText(env.roomId, `!oc slow ${tag}`);
      const prompts = [{ id: root, tag }];
      for (const q of [1, 2]) prompts.push({ id: await alice.sendText(env.roomId, `slow again ${marker}s${n}q${q}`, { threadRoot: root }), tag: `${marker}s${n}q${q}` });
      threads.push({ root, prompts });
    }

    const killedWith: number[] = [];
    let since = sentAt;
    for (let k = 1; k <= kills; k++) {
      // Killed while a reply grows: an edit that is not the final version, seen after the last start.
      await alice.waitForRoomEvent({
        roomId: env.roomId,
        sender: env.botUserId,
        after: since,
        match: (e) => {
          const rel = e.content["m.relates_to"] as { rel_type?: string } | undefined;
          const body = String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? "");
          return rel?.rel_type === "m.replace" && body.includes("slow") && !/\n— \S/.test(body);
        },
        description: `a reply streaming before kill ${k}`,
        timeoutMs: 20_000,
      });
      killedWith.push(env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turns WHERE status = 'running'")[0]?.n ?? 0);
      await env.bot.stop("SIGKILL");
      assert.deepEqual(serversOf(home), [server], `kill ${k}: the server outlives the bot`);
      await env.restartBot("SIGKILL");
      since = performance.now();
      const adopted = await env.bot.waitForLog((l) => l.msg === "adopted embedded OpenCode server", 1000);
      assert.equal(adopted.pid, server, `start ${k + 1} adopts the same server`);
      assert.deepEqual(serversOf(home), [server], `start ${k + 1}: no second server`);
    }

    for (const [i, th] of threads.entries()) {
      const finals: number[] = [];
      for (const p of th.prompts) {
        const reply = await waitForFinalReply(env, th.root, p.id, sentAt, 90_000);
        assert.equal(splitFooter(reply.body).text, slowText, `thread ${i + 1}, ${p.tag}: the whole answer`);
        finals.push(reply.finalSeenAfterMs);
      }
      assert.deepEqual(finals, finals.toSorted((x, y) => x - y), `thread ${i + 1}: answered in the order asked`);
    }
    const doneMs = performance.now() - sentAt;
    const requests = (await env.modelRequests()).filter((r) => r.kind === "chat");
    for (const th of threads) {
      for (const p of th.prompts) assert.equal(requests.filter((r) => r.lastUserText.endsWith(p.tag)).length, 1, `${p.tag} reached the model once`);
      assert.deepEqual(await repliesPerPrompt(view, th.root), Object.fromEntries(th.prompts.map((p) => [p.id, 1])), "one reply per prompt");
      assert.deepEqual(Object.values(await pushesPerReply(view, th.root)), [1, 1, 1], "one push per prompt");
      assert.deepEqual(await shrinks(view, th.root), [], "no version of a reply shows less than the one before");
    }
    assert.deepEqual(serversOf(home), [server], "in the end, one server: the one the first start started");
    assert.deepEqual(env.query("SELECT pid FROM embedded_server"), [{ pid: server }], "and it is the one recorded");
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turns WHERE status = 'running'"), [{ n: 0 }], "no turn left running");
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM turn_queue"), [{ n: 0 }], "nothing left waiting");
    assert.deepEqual(env.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"), [{ n: 0 }], "no Matrix event left unprocessed");
    t.diagnostic(`${kills} kills with ${killedWith.join(", ")} turns running; server pid ${server} adopted each time; every answer complete ${doneMs.toFixed(0)} ms after the first prompt`);
  });
});

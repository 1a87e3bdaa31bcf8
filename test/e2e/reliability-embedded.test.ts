import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LogLine } from "../harness/bot-process.ts";
import { testOpencodeConfig } from "../harness/opencode.ts";
import { serversOf, signal, until } from "../harness/processes.ts";
import { expectedReply } from "../harness/scripted-model.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { bwrapWorks } from "../../src/process/sandbox.ts";
import { TestEnv, embeddedServerEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The bot on its embedded default (`npm start` with no opencode.serverUrl) killed with -9 in the
// middle of a streamed answer. Without a sandbox the server survives the bot, and the next start
// must adopt it (no second server, the answer goes on) or reap it; in a bubblewrap sandbox
// --die-with-parent takes it along. Either way no `opencode serve` may be left running unnoticed.

const slowText = expectedReply("slow");

/** A bot of one suite in embedded mode, with what the tests read: its OpenCode home and the model's requests. */
class EmbeddedBot {
  env!: TestEnv;
  home = "";

  async create(name: string, sandbox: "off" | "bwrap"): Promise<void> {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, `embedded-${name}-`));
    const configPath = join(dir, "opencode.json");
    writeFileSync(configPath, JSON.stringify(testOpencodeConfig(stack.model.baseUrl)));
    this.home = join(dir, "home");
    this.env = await TestEnv.create({
      name,
      editWindowMs: 300,
      // alice operates the bot: she may `!oc restart-server`.
      botEnv: { ...embeddedServerEnv(dir, join(dir, "workspace"), configPath), OPENCODE_SANDBOX: sandbox, BOT_ADMINS: `@alice-${name}-*:localhost` },
    });
  }

  /** Stops the bot and kills whatever server of it is left (a failed assertion must not leave one running). */
  async close(): Promise<void> {
    await this.env?.close();
    for (const pid of this.home ? serversOf(this.home) : []) {
      signal(pid, "SIGKILL");
      signal(pid, "SIGCONT");
    }
  }

  /** Asks the bot's server (with the password in the bot's database) whether the thread's session is working. */
  async busy(root: string): Promise<boolean> {
    const [rec] = this.env.query<{ port: number; username: string; password: string; workspace: string }>("SELECT port, username, password, workspace FROM embedded_server");
    const [thread] = this.env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root);
    if (!rec || !thread) return false;
    const res = await fetch(`http://127.0.0.1:${rec.port}/session/status?directory=${encodeURIComponent(rec.workspace)}`, {
      headers: { authorization: `Basic ${Buffer.from(`${rec.username}:${rec.password}`).toString("base64")}` },
      signal: AbortSignal.timeout(3000),
    }).catch(() => undefined);
    const statuses = ((await res?.json().catch(() => ({}))) ?? {}) as Record<string, { type?: string }>;
    return statuses[thread.session_id]?.type === "busy";
  }

  /**
   * A slow prompt (40 words in 4 s), once alice reads the first words of its reply and the model
   * is still writing: the kill that follows must land mid-answer. On a loaded machine the reply
   * may reach her too late; then the prompt is tried again (up to 3 times).
   */
  async slowPrompt(): Promise<{ root: string; sentAt: number; tag: string }> {
    const { alice } = this.env.users;
    const marker = randomBytes(4).toString("hex");
    for (let attempt = 1; ; attempt++) {
      const sentAt = performance.now();
      const tag = `${marker}-${attempt}`;
      const root = await alice.sendText(this.env.roomId, `!oc slow ${tag}`);
      const replyId = await until("the reply", () => this.env.query<{ id: string }>("SELECT reply_event_id AS id FROM turns WHERE root_event_id = ? AND reply_event_id IS NOT NULL", root)[0]?.id);
      await alice.waitForRoomEvent({
        roomId: this.env.roomId,
        sender: this.env.botUserId,
        match: (e) => {
          const rel = e.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined;
          return rel?.rel_type === "m.replace" && rel.event_id === replyId && String((e.content["m.new_content"] as { body?: string }).body).includes("slow2");
        },
        description: `the reply to ${tag} streaming`,
      });
      if (await this.busy(root)) return { root, sentAt, tag };
      if (attempt === 3) throw new Error("the answer was always over before the test could kill the bot");
      await waitForFinalReply(this.env, root, root, sentAt, 60_000);
    }
  }

  /** What alice reads of the bot's reply in `root` now (after a kill: the last words the dead bot sent). */
  async shown(root: string): Promise<string> {
    const [turn] = this.env.query<{ reply_event_id: string }>("SELECT reply_event_id FROM turns WHERE root_event_id = ?", root);
    return turn ? (await this.env.users.alice.latestBody(this.env.roomId, turn.reply_event_id)).body : "";
  }

  /** Starts the bot again (after a kill) and times it: spawn to the keeper's `decision` line, and to "bot ready". */
  async restart(decision: string): Promise<{ line: LogLine; readyMs: number; decisionMs: number }> {
    const t0 = performance.now();
    await this.env.restartBot("SIGKILL");
    const readyMs = performance.now() - t0;
    const line = await this.env.bot.waitForLog((l) => l.msg === decision, 1000);
    return { line, readyMs, decisionMs: Number(line.time) - this.env.bot.spawnedAt };
  }

  /** How often the model was asked to answer the prompt tagged `tag`. */
  async promptsSeen(tag: string): Promise<number> {
    return (await this.env.modelRequests()).filter((r) => r.kind === "chat" && r.lastUserText.includes(tag)).length;
  }

  record(): Array<{ pid: number; port: number; sandboxed: number }> {
    return this.env.query("SELECT pid, port, sandboxed FROM embedded_server");
  }
}

describe("the embedded server without a sandbox, the bot killed with -9", () => {
  const bot = new EmbeddedBot();
  before(async () => {
    await bot.create("adopt", "off");
  });
  after(async () => {
    await bot.close();
  });

  test("the restarted bot adopts the running server: the same process, the whole answer, the prompt sent once", async (t) => {
    const [server] = await until("the server", () => (serversOf(bot.home).length === 1 ? serversOf(bot.home) : undefined));
    assert.deepEqual(bot.record().map((r) => r.pid), [server], "the server is recorded in the bot's database");
    const { root, sentAt, tag } = await bot.slowPrompt();
    await bot.env.bot.stop("SIGKILL");
    assert.deepEqual(serversOf(bot.home), [server], "the server outlives the killed bot");
    const { line, readyMs, decisionMs } = await bot.restart("adopted embedded OpenCode server");
    const stillBusy = await bot.busy(root);
    assert.equal(line.pid, server);
    const reply = await waitForFinalReply(bot.env, root, root, sentAt, 60_000);
    assert.equal(splitFooter(reply.body).text, slowText, "the whole answer, as the model wrote it");
    assert.deepEqual(serversOf(bot.home), [server], "one server: the adopted one");
    assert.equal(await bot.promptsSeen(tag), 1, "the model got the prompt once");
    const turns = bot.env.query<{ status: string; reply: string }>("SELECT status, reply_event_id AS reply FROM turns WHERE root_event_id = ?", root);
    assert.deepEqual(turns, [{ status: "done", reply: reply.replyId }], "one turn, its reply finished in place");
    t.diagnostic(`adopted pid ${server} (${stillBusy ? "still answering" : "its answer already over"} when the bot was ready): checked and adopted in ${String(line.tookMs)} ms, ${decisionMs} ms after the spawn, bot ready ${readyMs.toFixed(0)} ms after the restart`);
  });

  test("a graceful stop stops the adopted server and forgets it; the next start starts a new one", async () => {
    const [adopted] = serversOf(bot.home);
    assert.equal(await bot.env.bot.stop("SIGTERM"), 0);
    assert.deepEqual(serversOf(bot.home), [], "no server left");
    assert.deepEqual(bot.record(), [], "no record left");
    const { line } = await bot.restart("started embedded OpenCode server");
    assert.equal(line.previous, "none");
    assert.notEqual(line.pid, adopted);
    assert.deepEqual(serversOf(bot.home), [line.pid]);
  });

  test("a recorded server that died too: a fresh one starts, the thread is told its answer stopped", async (t) => {
    const [server] = serversOf(bot.home);
    const { root, sentAt, tag } = await bot.slowPrompt();
    await bot.env.bot.stop("SIGKILL");
    signal(-Number(server), "SIGKILL"); // it leads its process group
    await until("the server to end", () => (serversOf(bot.home).length === 0 ? true : undefined));
    const shown = await bot.shown(root);
    const { line, readyMs, decisionMs } = await bot.restart("started embedded OpenCode server");
    assert.equal(line.previous, "gone");
    const reply = await waitForFinalReply(bot.env, root, root, sentAt, 60_000);
    assert.match(reply.body, /stopped before it was complete/);
    assert.deepEqual(serversOf(bot.home), [line.pid], "one server: the new one");
    assert.equal(await bot.promptsSeen(tag), 1, "the prompt was not sent again");
    t.diagnostic(`fresh start: started in ${String(line.tookMs)} ms, ${decisionMs} ms after the spawn, bot ready ${readyMs.toFixed(0)} ms after the restart; shown before: ${JSON.stringify(shown)}; final: ${JSON.stringify(reply.body)}`);
  });

  test("a recorded server that does not answer (SIGSTOP) is reaped and replaced", async (t) => {
    const [server] = serversOf(bot.home);
    const { root, sentAt, tag } = await bot.slowPrompt();
    await bot.env.bot.stop("SIGKILL");
    signal(Number(server), "SIGSTOP");
    const { line, readyMs, decisionMs } = await bot.restart("started embedded OpenCode server");
    assert.equal(line.previous, "reaped");
    const reaped = await bot.env.bot.waitForLog((l) => l.msg === "reaped embedded OpenCode server", 1000);
    assert.equal(reaped.pid, server);
    assert.match(String(reaped.reason), /^unhealthy/);
    assert.deepEqual(serversOf(bot.home), [line.pid], "the stopped server is gone, the new one runs");
    const reply = await waitForFinalReply(bot.env, root, root, sentAt, 60_000);
    assert.match(reply.body, /stopped before it was complete/);
    assert.equal(await bot.promptsSeen(tag), 1, "the prompt was not sent again");
    t.diagnostic(`reaped (${String(reaped.reason)}) and started anew in ${String(line.tookMs)} ms (reaping: ${String(reaped.tookMs)} ms), ${decisionMs} ms after the spawn, bot ready ${readyMs.toFixed(0)} ms after the restart`);
  });

  test("`!oc restart-server` restarts an adopted server on its port, and the record follows", async () => {
    await bot.env.bot.stop("SIGKILL");
    const [server] = serversOf(bot.home);
    const [before] = bot.record();
    await bot.restart("adopted embedded OpenCode server");
    assert.match(await bot.env.ask("!oc restart-server"), new RegExp(`^🔄 Restarted the OpenCode server \\(pid ${server} → \\d+\\)`));
    const [now] = bot.record();
    assert.ok(now && before && now.pid !== before.pid && now.port === before.port, "a new process on the same port, recorded");
    assert.deepEqual(serversOf(bot.home), [now.pid], "the adopted one is gone");
    const sentAt = performance.now();
    const root = await bot.env.users.alice.sendText(bot.env.roomId, "!oc answered after the restart");
    assert.equal(splitFooter((await waitForFinalReply(bot.env, root, root, sentAt, 60_000)).body).text, "Echo: answered after the restart");
  });
});

const bwrap = bwrapWorks();
describe("the embedded server in a bubblewrap sandbox, the bot killed with -9", { skip: bwrap.ok ? false : `bubblewrap cannot run here: ${bwrap.why}` }, () => {
  const bot = new EmbeddedBot();
  let crash: { shown: string; final: string } | undefined;
  before(async () => {
    await bot.create("bwrapkill", "bwrap");
  });
  after(async () => {
    await bot.close();
  });

  test("the server dies with the bot (no orphan); the restarted bot starts a new one and closes the reply", async (t) => {
    const before = await until("the sandboxed server", () => (serversOf(bot.home).length > 0 ? serversOf(bot.home) : undefined));
    assert.deepEqual(bot.record().map((r) => r.sandboxed), [1]);
    const { root, sentAt, tag } = await bot.slowPrompt();
    const killedAt = performance.now();
    await bot.env.bot.stop("SIGKILL");
    await until("no opencode left of the killed bot", () => (serversOf(bot.home).length === 0 ? true : undefined), 10_000);
    const goneMs = performance.now() - killedAt;
    const shown = await bot.shown(root);
    const { line, readyMs } = await bot.restart("started embedded OpenCode server");
    assert.equal(line.previous, "gone");
    assert.equal(line.sandbox, "bwrap");
    assert.equal(line.detached, false, "in the sandbox the server keeps --die-with-parent");
    const reply = await waitForFinalReply(bot.env, root, root, sentAt, 60_000);
    assert.match(reply.body, /stopped before it was complete/);
    assert.equal(await bot.promptsSeen(tag), 1, "the prompt was not sent again");
    const after = serversOf(bot.home);
    assert.ok(after.length > 0 && after.every((p) => !before.includes(p)), "only the new server runs");
    crash = { shown, final: reply.body };
    t.diagnostic(`sandboxed server gone ${goneMs.toFixed(0)} ms after the kill; new one started in ${String(line.tookMs)} ms; bot ready ${readyMs.toFixed(0)} ms after the restart; shown before: ${JSON.stringify(shown)}; final: ${JSON.stringify(reply.body)}`);
  });

  // The server killed with the bot never saved the words it had streamed; the bot kept what
  // people read (the engine records the state before each edit goes out: live_replies).
  test("the words shown before the crash are still in the closed reply", () => {
    assert.ok(crash, "the crash above ran");
    assert.ok(splitFooter(crash.final).text.includes(crash.shown.trim()), `shown ${JSON.stringify(crash.shown)}, closed as ${JSON.stringify(crash.final)}`);
  });
});

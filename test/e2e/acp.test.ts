import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveOpencodeBinary } from "../../src/opencode/embedded-server.ts";
import { testOpencodeConfig } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// An ACP agent behind `!acp`: the real `opencode acp` (the binary of the opencode-ai package),
// started by the bot as configured in acp.agents, with the scripted model behind it and a home
// of its own. Every assertion is on what Alice reads.

describe("ACP agent (opencode acp)", { timeout: 240_000 }, () => {
  let env: TestEnv;
  const modelSaw = async (text: string): Promise<boolean> => (await env.modelRequests()).some((r) => r.lastUserText.includes(text));

  before(async () => {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, "acp-"));
    const workspace = join(dir, "project");
    const home = join(dir, "home");
    mkdirSync(workspace, { recursive: true });
    mkdirSync(home, { recursive: true });
    const botConfig = join(dir, "bot-config.yaml");
    writeFileSync(
      botConfig,
      [
        "acp:",
        "  agents:",
        "    opencode-acp:",
        `      command: ${JSON.stringify(resolveOpencodeBinary())}`,
        "      args: [acp]",
        `      cwd: ${JSON.stringify(workspace)}`,
        "      prefix: '!acp'",
        "      env: [OPENCODE_CONFIG_CONTENT]",
        "",
      ].join("\n"),
    );
    env = await TestEnv.create({
      name: "acp",
      botEnv: {
        BOT_CONFIG: botConfig,
        // The agent's state lives in a home of its own; HOME and XDG_* are on the child allowlist.
        HOME: home,
        XDG_DATA_HOME: join(home, "data"),
        XDG_CONFIG_HOME: join(home, "config"),
        XDG_STATE_HOME: join(home, "state"),
        XDG_CACHE_HOME: join(home, "cache"),
        // bash asks; paths outside the project do not (a careless operator, for the sandbox test).
        OPENCODE_CONFIG_CONTENT: JSON.stringify(testOpencodeConfig(stack.model.baseUrl, "ask", { permission: { external_directory: "allow" } })),
        OPENCODE_DISABLE_MODELS_FETCH: "1",
        OPENCODE_DISABLE_AUTOUPDATE: "1",
        OPENCODE_DISABLE_SHARE: "1",
        OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      },
    });
  });

  after(async () => {
    await env?.close();
  });

  test("a prompt starts a session whose answer streams into a thread, with a footer", async () => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!acp hello there");
    const reply = await waitForFinalReply(env, root, root, sentAt, 90_000);
    const { text, footer } = splitFooter(reply.body);
    assert.equal(text, "Echo: hello there");
    assert.match(footer, /^— opencode-acp · [\d,]+ tokens · \d+\.\ds$/);
    assert.equal(env.query<{ backend: string }>("SELECT backend FROM threads WHERE root_event_id = ?", root)[0]?.backend, "opencode-acp");
  });

  test("a tool call asks permission with the whole command; ✅ allows it and the tool line shows ✓", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!acp bash: echo hi");
    const ask = await env.waitForBot("the permission request", (e) => String(e.content.body).startsWith("🔐 Permission needed"), 90_000);
    const body = String(ask.content.body);
    assert.match(body, /^🔐 Permission needed — alice-acp-\S+: opencode-acp wants to run: echo hi\n\n```\necho hi\n```\n\nReact ✅ allow once · ♾️ allow always · ❌ reject — or write !acp allow/);
    assert.equal((ask.content["m.relates_to"] as { event_id?: string }).event_id, root);
    await alice.react(env.roomId, ask.event_id, "✅");
    const reply = await waitForFinalReply(env, root, root, sentAt, 90_000);
    assert.equal(splitFooter(reply.body).text, "▶️ bash `echo hi` ✓\n\nCommand finished: hi");
    const outcome = await alice.latestBody(env.roomId, ask.event_id);
    assert.match(outcome.body, /^🔐 opencode-acp asked to use bash:\n\n```\necho hi\n```\n\n✅ allowed once by alice-acp-\S+\.$/);
  });

  test("the agent, even once allowed, cannot write the bot's database or read its process's environment", async () => {
    const { alice } = env.users;
    const insert = `INSERT INTO scheduled_prompts (room_id, text, due_at, status, created_by, created_at) VALUES ('${env.roomId}', 'pwned by the agent', 0, 'pending', '@agent:evil', 0)`;
    const python = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit(); print('db: inserted')";
    const out = join(env.dataDir, "..", `acp-attack-${Date.now()}.txt`);
    const command = `python3 -c "${python}" ${env.dbPath} "${insert}" > ${out} 2>&1; tr '\\0' '\\n' 2>>${out} < /proc/${env.bot.pid}/environ >> ${out}; echo done`;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, `!acp bash: ${command}`);
    const ask = await env.waitForBot("the permission request", (e) => String(e.content.body).startsWith("🔐 Permission needed") && String(e.content.body).includes("pwned"), 90_000);
    await alice.react(env.roomId, ask.event_id, "✅");
    await waitForFinalReply(env, root, root, sentAt, 90_000);
    const seen = readFileSync(out, "utf8");
    assert.match(seen, /no such table: scheduled_prompts/, "the database the agent sees is not the bot's");
    assert.ok(!seen.includes(env.accounts.bot.accessToken), "the bot's Matrix token from /proc/<bot>/environ");
    assert.deepEqual(env.query("SELECT text FROM scheduled_prompts"), [], "no row was added to the bot's database");
  });

  test("a stranger is not answered and reaches no agent", async () => {
    const answer = await env.ask("!acp mallory wants a session", { as: "mallory" });
    assert.equal(answer, `Sorry, ${env.users.mallory.userId} is not allowed to use this bot.`);
    assert.equal(await modelSaw("mallory wants a session"), false);
    assert.equal(env.query("SELECT * FROM threads WHERE title LIKE '%mallory%'").length, 0);
  });

  test("a restart mid-turn closes the turn plainly in its thread, and a follow-up resumes the session", async () => {
    const { alice } = env.users;
    const root = await alice.sendText(env.roomId, "!acp answer slow");
    // Restart once the answer is streaming (an edit of the reply carries its first words).
    await alice.waitForRoomEvent({ roomId: env.roomId, sender: env.botUserId, match: (e) => JSON.stringify(e.content).includes("slow1"), description: "the slow answer streaming", timeoutMs: 90_000 });
    await env.restartBot();
    const note = await env.waitForBot("the note about the cut-off turn", (e) => String(e.content.body).includes("The bot restarted while opencode-acp was working"), 60_000);
    assert.equal((note.content["m.relates_to"] as { event_id?: string }).event_id, root);
    assert.equal(
      String(note.content.body),
      "⚠️ The bot restarted while opencode-acp was working on this, and the agent stopped with it: that answer was cut off. Write in this thread to go on; the session is resumed.",
    );
    const sentAt = performance.now();
    const next = await alice.sendText(env.roomId, "hello again", { threadRoot: root });
    const reply = await waitForFinalReply(env, root, next, sentAt, 90_000);
    assert.equal(splitFooter(reply.body).text, "Echo: hello again");
  });

  test("the shared commands work under this backend's prefix: sessions, queue, verbosity, forget", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!acp shared commands thread");
    await waitForFinalReply(env, root, root, sentAt, 90_000);
    assert.match(await env.ask("!acp sessions"), /^\*\*!acp threads in this room\*\* \(\d+\):[\s\S]*\*\*shared commands thread\*\* — by @alice/);
    assert.equal(await env.ask("!acp queue", { threadRoot: root }), "Nothing is waiting in this thread.");
    assert.match(await env.ask("!acp verbosity quiet", { threadRoot: root }), /^Verbosity in this thread: \*\*quiet\*\*/);
    assert.match(await env.ask("!acp forget", { threadRoot: root }), /^This thread is no longer linked to `[^`]+`; messages in it now reach no agent\.$/);
    assert.equal(env.query("SELECT * FROM threads WHERE root_event_id = ?", root).length, 0);
  });
});

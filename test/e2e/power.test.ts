import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { startTestOpencode, testOpencodeConfig, type TestOpencode } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, embeddedServerEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Power features as the people in the room see them: fork, undo/redo, worktree/merge, the
// durable queue, OpenCode's own commands, restarting the server. The project is a git
// repository of this suite's own, served by an OpenCode server of its own.

let env: TestEnv;
let server: TestOpencode;
let ws: string;
let oc: ReturnType<typeof createOpencodeClient>;
const git = (cwd: string, ...args: string[]): string => execFileSync("git", args, { cwd, encoding: "utf8" }).trim();
const identity = ["-c", "user.name=Test", "-c", "user.email=test@localhost"];

before(async () => {
  const stack = loadStackInfo();
  ws = mkdtempSync(join(stack.workDir, "ws-power-"));
  mkdirSync(join(ws, ".opencode", "command"), { recursive: true });
  writeFileSync(join(ws, ".opencode", "command", "shout.md"), "---\ndescription: Shout the words back\n---\nPlease echo these words: $ARGUMENTS\n");
  writeFileSync(join(ws, "README.md"), "# a project\n");
  git(ws, "init", "-q", "-b", "main");
  git(ws, "add", "-A");
  git(ws, ...identity, "commit", "-qm", "initial commit");
  server = await startTestOpencode({ workspaceDir: ws, stateDir: mkdtempSync(join(stack.workDir, "oc-power-")), modelBaseUrl: stack.model.baseUrl });
  env = await TestEnv.create({
    name: "power",
    botEnv: { OPENCODE_SERVER_URL: server.url, OPENCODE_WORKSPACE_DIR: ws, BOT_COMPLETION_NOTICE_AFTER_MS: "600000", BOT_ADMINS: "@alice-power-*:localhost" },
  });
  oc = createOpencodeClient({ baseUrl: server.url, directory: ws });
});
after(async () => {
  await env?.close();
  await server?.stop();
});

const sessionOf = (root: string): string =>
  env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";
const body = (e: MatrixEvent): string => String(e.content.body);

async function newThread(prompt: string): Promise<string> {
  const sentAt = performance.now();
  const root = await env.users.alice.sendText(env.roomId, `!oc ${prompt}`);
  await waitForFinalReply(env, root, root, sentAt);
  return root;
}

async function say(root: string, text: string): Promise<string> {
  const sentAt = performance.now();
  const id = await env.users.alice.sendText(env.roomId, text, { threadRoot: root });
  return splitFooter((await waitForFinalReply(env, root, id, sentAt)).body).text;
}

async function messagesOf(sessionId: string, directory = ws): Promise<Array<{ role: string; text: string }>> {
  const res = await oc.session.messages({ sessionID: sessionId, directory });
  return (res.data ?? []).map((m) => ({ role: m.info.role, text: m.parts.filter((p) => p.type === "text").map((p) => (p as { text: string }).text).join("") }));
}

describe("fork, undo and redo", () => {
  test("fork copies the session into a new thread that links back, from the last or the n-th last message", async () => {
    const root = await newThread("tell me about forks");
    assert.equal(await say(root, "and the second message"), "Echo: and the second message");
    const answer = await env.ask("!oc fork", { threadRoot: root });
    const m = /^🍴 Forked after message 2 of 2 \(“and the second message”\) into \[a new thread\]\(https:\/\/matrix\.to\/#\/[^)]+\), session `(ses_\w+)`\.$/.exec(answer);
    assert.ok(m, answer);
    const forkId = m[1] as string;
    const forkRoot = await env.waitForBot("the fork's thread root", (e) => body(e).startsWith("🍴 **") && body(e).includes(forkId));
    assert.ok(body(forkRoot).includes(encodeURIComponent(root)), "the fork links back to the original thread");
    assert.equal((await messagesOf(forkId)).length, 4, "the whole history was copied");
    assert.equal(await say(forkRoot.event_id, "going on in the fork"), "Echo: going on in the fork");
    assert.equal((await messagesOf(sessionOf(root))).length, 4, "the original session did not change");

    const second = await env.ask("!oc fork 2", { threadRoot: root });
    const id2 = /session `(ses_\w+)`\.$/.exec(second)?.[1] ?? "";
    assert.match(second, /^🍴 Forked after message 1 of 2 \(“tell me about forks”\)/);
    assert.deepEqual((await messagesOf(id2)).map((x) => x.role), ["user", "assistant"], "only the first exchange");
    assert.match(await env.ask("!oc fork 3", { threadRoot: root }), /^This session has 2 messages\. Usage: `!oc fork \[n\]` — fork the session/);
    assert.match(await env.ask("!oc fork two", { threadRoot: root }), /^`two` is not a number of messages\. Usage:/);
    assert.equal(await env.ask("!oc fork"), "`!oc fork [n]` works inside a session thread: write it as a reply in the thread of the session.");
  });

  test("undo reverts the last turn and its files, redo brings them back, a new prompt makes the undo final", async () => {
    const hello = join(ws, "hello.py");
    const root = await newThread("Create hello.py that prints hello");
    assert.equal(readFileSync(hello, "utf8"), 'print("hello")\n');
    assert.equal(
      await env.ask("!oc undo", { threadRoot: root }),
      "↩️ Undid the turn of “Create hello.py that prints hello”. Files changed back: `hello.py` (removed). `!oc redo` brings it back; the next prompt makes the undo final.",
    );
    assert.equal(existsSync(hello), false, "the file the turn created is gone");
    assert.equal(await env.ask("!oc redo", { threadRoot: root }), "↪️ Redid what was undone. Files back as the agent left them: `hello.py`.");
    assert.equal(readFileSync(hello, "utf8"), 'print("hello")\n');
    assert.equal(await env.ask("!oc redo", { threadRoot: root }), "Nothing to redo in this session.");
    assert.match(await env.ask("!oc undo", { threadRoot: root }), /^↩️ Undid the turn of “Create hello\.py that prints hello”\. Files changed back: `hello\.py` \(removed\)\./);
    assert.equal(await say(root, "what now after the undo"), "Echo: what now after the undo");
    assert.equal(await env.ask("!oc redo", { threadRoot: root }), "Nothing to redo in this session.");
    assert.equal(existsSync(hello), false);
    assert.deepEqual((await messagesOf(sessionOf(root))).map((x) => x.role), ["user", "assistant"], "the undone turn is gone from the session");
    assert.equal(git(ws, "status", "--porcelain"), "", "the project is clean again");
  });
});

describe("worktrees", () => {
  async function openWorktree(name: string): Promise<{ root: string; dir: string }> {
    await env.users.alice.sendText(env.roomId, `!oc worktree ${name}`);
    const rootEvent = await env.waitForBot(`the thread of worktree ${name}`, (e) => body(e).startsWith(`🌿 **opencode/${name}**`));
    const dir = /new git worktree `([^`]+)` of `([^`]+)`/.exec(body(rootEvent));
    assert.ok(dir, body(rootEvent));
    assert.equal(dir[2], ws);
    assert.match(git(ws, "branch", "--list", `opencode/${name}`), new RegExp(`opencode/${name}`));
    return { root: rootEvent.event_id, dir: dir[1] as string };
  }

  test("a worktree thread works on its own branch; merge reports a conflict plainly and leaves main as it was", async () => {
    const { root, dir } = await openWorktree("feature-a");
    assert.match(await say(root, "Create hello.py in the worktree"), /Created hello\.py\.$/);
    assert.equal(readFileSync(join(dir, "hello.py"), "utf8"), 'print("hello")\n', "written in the worktree");
    assert.equal(existsSync(join(ws, "hello.py")), false, "not in the main checkout");
    writeFileSync(join(ws, "hello.py"), 'print("main")\n');
    git(ws, "add", "hello.py");
    git(ws, ...identity, "commit", "-qm", "main's own hello.py");
    const head = git(ws, "rev-parse", "HEAD");
    assert.equal(
      await env.ask("!oc merge", { threadRoot: root }),
      "⚠️ **Merge conflict.** `opencode/feature-a` and `main` both changed `hello.py`. Nothing was merged: `main` is as it was. " +
        "Ask the agent here to merge `main` into the branch and resolve the conflicts, then `!oc merge` again.",
    );
    assert.equal(git(ws, "rev-parse", "HEAD"), head);
    assert.equal(git(ws, "status", "--porcelain"), "");
    assert.equal(readFileSync(join(ws, "hello.py"), "utf8"), 'print("main")\n');
  });

  test("merge commits the session's work on the branch and merges it into main", async () => {
    const { root, dir } = await openWorktree("feature-b");
    assert.equal(readFileSync(join(dir, "hello.py"), "utf8"), 'print("main")\n', "the branch starts from main");
    assert.match(await say(root, "Create hello.py again"), /Created hello\.py\.$/);
    assert.match(
      await env.ask("!oc merge", { threadRoot: root }),
      /^✅ Merged `opencode\/feature-b` into `main` \(merge commit `[0-9a-f]{7,}`\); the session's uncommitted changes were committed on the branch first\. 1 file changed: `M hello\.py`\.$/,
    );
    assert.equal(readFileSync(join(ws, "hello.py"), "utf8"), 'print("hello")\n');
    assert.match(git(ws, "log", "-1", "--format=%s"), /^Merge branch 'opencode\/feature-b'/);
    assert.equal(await env.ask("!oc merge", { threadRoot: root }), "Nothing to merge: `opencode/feature-b` has no changes that `main` lacks.");
    const plain = await newThread("just a plain session");
    assert.equal(await env.ask("!oc merge", { threadRoot: plain }), "This thread's session does not work in a worktree. `!oc worktree <name>` at the top level starts one.");
    assert.match(await env.ask("!oc worktree ../escape"), /^`\.\.\/escape` cannot be a branch name here/);
  });
});

describe("the queue", () => {
  test("queue, list and clear during a turn; the queue survives a bot crash and runs in order", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    // A turn that waits for a permission answer runs for as long as the test needs.
    const root = await alice.sendText(env.roomId, "!oc bash: echo held-for-the-queue");
    await env.waitForBot("the permission request", (e) => (e.content["m.relates_to"] as { event_id?: string })?.event_id === root && body(e).includes("Permission needed"));
    const mark = async (text: string, key: string): Promise<string> => {
      const id = await alice.sendText(env.roomId, text, { threadRoot: root });
      await alice.waitForRoomEvent({
        roomId: env.roomId,
        sender: env.botUserId,
        type: "m.reaction",
        match: (e) => (e.content["m.relates_to"] as { event_id?: string; key?: string }).event_id === id && (e.content["m.relates_to"] as { key?: string }).key === key,
        description: `the queue mark ${key} on ${text}`,
      });
      return id;
    };
    await mark("!oc queue first queued words", "🕐 1");
    await mark("second queued words . queue", "🕐 2");
    assert.match(await env.ask("!oc queue", { threadRoot: root }), /^\*\*Queued in this session\*\* \(2\) — A turn is running\.\n\n1\. \[alice-power-\w+\] first queued words\n2\. \[alice-power-\w+\] second queued words$/);
    assert.match(await env.ask("!oc queue"), /^\*\*Queued prompts in this room\*\* \(2\):/);
    assert.equal(await env.ask("!oc queue clear", { threadRoot: root }), "🗑️ Removed 2 queued prompts.");
    assert.equal(await env.ask("!oc queue", { threadRoot: root }), "Nothing is queued in this session. A turn is running.");
    const q1 = await mark("!oc queue kept across a crash", "🕐 1");
    const q2 = await mark("and this one too . queue", "🕐 2");
    assert.equal(env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n, 2);

    await env.restartBot("SIGKILL");
    await alice.sendText(env.roomId, "!oc allow", { threadRoot: root });
    const first = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(first.body).text, "▶️ bash `echo held-for-the-queue` ✓\n\nCommand finished: held-for-the-queue");
    const r1 = await waitForFinalReply(env, root, q1, sentAt);
    const r2 = await waitForFinalReply(env, root, q2, sentAt);
    assert.equal(splitFooter(r1.body).text, "Echo: kept across a crash");
    assert.equal(splitFooter(r2.body).text, "Echo: and this one too");
    assert.ok(r1.finalSeenAfterMs < r2.finalSeenAfterMs, "in order");
    const texts = (await env.modelRequests()).filter((r) => r.kind === "chat").map((r) => r.lastUserText);
    assert.equal(texts.filter((t) => /first queued words|second queued words/.test(t)).length, 0, "cleared prompts never reached OpenCode");
    assert.equal(texts.filter((t) => /kept across a crash/.test(t)).length, 1, "sent once");
    assert.ok(texts.some((t) => /^\[alice-power-\w+\] and this one too$/.test(t)), "the ` . queue` marker is not sent");
    assert.equal(env.query<{ n: number }>("SELECT COUNT(*) AS n FROM turn_queue")[0]?.n, 0);
  });
});

describe("OpenCode's own commands", () => {
  test("`!oc commands` lists them; `!oc /<name> [args]` runs one at the top level or in a thread", async () => {
    const list = await env.ask("!oc commands");
    assert.match(list, /^\*\*OpenCode commands for this project\*\* \(\d+\):\n\n/);
    assert.match(list, /^- `!oc \/shout` — Shout the words back$/m);
    assert.match(list, /^- `!oc \/init` — /m);
    assert.match(list, /Run one with `!oc \/<name> \[args\]`\.$/);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc /shout banana split");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.equal(splitFooter(reply.body).text, "Echo: Please echo these words: banana split");
    assert.equal(await say(root, "!oc /shout cherry pie"), "Echo: Please echo these words: cherry pie");
    assert.match(await env.ask("!oc /nope"), /^OpenCode has no command `\/nope` for this project\. `!oc commands` lists the \d+ it has\.$/);
    assert.match(await env.ask("!oc help"), /`!oc \/<name> \[args\]` — run one of OpenCode's own commands/);
  });

  test("restart-server: operators only, and only for a server the bot started", async () => {
    assert.equal(await env.ask("!oc restart-server", { as: "bob" }), "`!oc restart-server` is for the bot's operators (access.admins).");
    assert.equal(
      await env.ask("!oc restart-server"),
      `The OpenCode server at ${server.url} was not started by this bot, so the bot cannot restart it. Restart it where it runs; the bot reconnects by itself.`,
    );
  });
});

describe("restart-server on the embedded server", () => {
  let embedded: TestEnv;
  let configPath: string;
  before(async () => {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, "restart-"));
    configPath = join(dir, "opencode.json");
    writeFileSync(configPath, JSON.stringify(testOpencodeConfig(stack.model.baseUrl)));
    embedded = await TestEnv.create({
      name: "restart",
      botEnv: {
        BOT_ADMINS: "@alice-restart-*:localhost",
        ...embeddedServerEnv(dir, join(dir, "workspace"), configPath),
      },
    });
  });
  after(async () => {
    await embedded?.close();
  });

  test("a changed opencode.json takes effect after `!oc restart-server`, on the same URL", async (t) => {
    const health = async (): Promise<{ ok: boolean; opencode: Array<{ url: string }> }> =>
      (await (await fetch(`http://127.0.0.1:${embedded.bot.httpPort}/health`)).json()) as { ok: boolean; opencode: Array<{ url: string }> };
    const url = (await health()).opencode[0]?.url;
    assert.doesNotMatch(await embedded.ask("!oc commands"), /greet/);
    const config = testOpencodeConfig(embedded.stack.model.baseUrl, "ask", { command: { greet: { template: "Say hi to $ARGUMENTS", description: "Greets someone by name" } } });
    writeFileSync(configPath, JSON.stringify(config));
    const t0 = performance.now();
    const answer = await embedded.ask("!oc restart-server");
    t.diagnostic(`restart-server answered after ${(performance.now() - t0).toFixed(0)} ms`);
    const m = /^🔄 Restarted the OpenCode server \(pid (\d+) → (\d+)\) in [\d.]+ s and re-subscribed to its events; a changed `opencode\.json` is in effect now\.$/.exec(answer);
    assert.ok(m, answer);
    assert.notEqual(m[1], m[2]);
    assert.throws(() => process.kill(Number(m[1]), 0), "the old server process is gone");
    assert.match(await embedded.ask("!oc commands"), /^- `!oc \/greet` — Greets someone by name$/m);
    const sentAt = performance.now();
    const root = await embedded.users.alice.sendText(embedded.roomId, "!oc /greet Bob");
    assert.equal(splitFooter((await waitForFinalReply(embedded, root, root, sentAt)).body).text, "Echo: Say hi to Bob");
    const after = await health();
    assert.equal(after.opencode[0]?.url, url, "the same URL");
    assert.equal(after.ok, true);
  });

  test("worktree in a project that is not a git repository says so plainly", async () => {
    assert.match(
      await embedded.ask("!oc worktree no-git-here"),
      /^⚠️ Could not create a worktree of `[^`]+\/workspace`: .+\. The room's project must be a git repository with at least one commit\.$/,
    );
  });
});

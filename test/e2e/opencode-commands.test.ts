import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, ftruncateSync, mkdirSync, openSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// Session commands, team use and rendering, each as the people in the room see it.

let env: TestEnv;
let oc: ReturnType<typeof createOpencodeClient>;
before(async () => {
  env = await TestEnv.create({ name: "cmds", botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "600000" } });
  oc = createOpencodeClient({ baseUrl: env.stack.opencode.url, directory: env.stack.workspaceDir });
});
after(async () => {
  await env?.close();
});

const sessionOf = (root: string): string =>
  env.query<{ session_id: string }>("SELECT session_id FROM threads WHERE root_event_id = ?", root)[0]?.session_id ?? "";

async function newThread(prompt: string): Promise<string> {
  const sentAt = performance.now();
  const root = await env.users.alice.sendText(env.roomId, `!oc ${prompt}`);
  await waitForFinalReply(env, root, root, sentAt);
  return root;
}

describe("session commands", () => {
  test("abort stops a streaming turn and the reply says so", async () => {
    const { alice } = env.users;
    const sentAt = performance.now();
    const root = await alice.sendText(env.roomId, "!oc something slow to stop");
    await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? "").includes("slow3"),
      description: "the reply streaming",
    });
    assert.equal(await env.ask("!oc abort", { threadRoot: root }), "⏹️ Aborting…");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    const { text } = splitFooter(reply.body);
    assert.match(text, /^slow1 slow2 slow3/);
    assert.match(text, /⏹️ Aborted\.$/);
    assert.doesNotMatch(text, /slow40/);
  });

  test("prompts sent during a turn are queued in order, marked with their position, and attributed", async () => {
    const { alice, bob } = env.users;
    const root = await alice.sendText(env.roomId, "!oc take it slow");
    await alice.waitForRoomEvent({ roomId: env.roomId, sender: env.botUserId, match: (e) => (e.content["m.relates_to"] as { event_id?: string })?.event_id === root, description: "first reply" });
    const sentAt = performance.now();
    const q1 = await bob.sendText(env.roomId, "first queued from bob", { threadRoot: root });
    const q2 = await alice.sendText(env.roomId, "second queued from alice", { threadRoot: root });
    for (const [id, key] of [[q1, "🕐 1"], [q2, "🕐 2"]] as const) {
      await alice.waitForRoomEvent({
        roomId: env.roomId,
        sender: env.botUserId,
        type: "m.reaction",
        match: (e) => {
          const rel = e.content["m.relates_to"] as { event_id?: string; key?: string };
          return rel.event_id === id && rel.key === key;
        },
        description: `the queue mark ${key}`,
      });
    }
    const r1 = await waitForFinalReply(env, root, q1, sentAt);
    const r2 = await waitForFinalReply(env, root, q2, sentAt);
    assert.equal(splitFooter(r1.body).text, "Echo: first queued from bob");
    assert.equal(splitFooter(r2.body).text, "Echo: second queued from alice");
    assert.ok(r1.finalSeenAfterMs < r2.finalSeenAfterMs, "answered in order");
    const texts = (await env.modelRequests()).filter((r) => r.kind === "chat").map((r) => r.lastUserText);
    assert.ok(texts.some((t) => /^\[bob-cmds-\w+\] first queued from bob$/.test(t)), "bob's prompt reached OpenCode attributed to bob");
  });

  test("attach maps a session started elsewhere to a new thread and streams its work there", async () => {
    const created = await oc.session.create({ title: "started in the TUI" });
    const id = created.data?.id ?? "";
    // attach answers with a new thread root of its own, not with a reply.
    await env.users.alice.sendText(env.roomId, `!oc attach ${id}`);
    const root = await env.waitForBot("the attached thread's root", (e) => String(e.content.body).startsWith("📎 **started in the TUI**"));
    await oc.session.promptAsync({ sessionID: id, parts: [{ type: "text", text: "typed in the terminal" }] });
    const reply = await waitForFinalReply(env, root.event_id, root.event_id, performance.now());
    assert.equal(splitFooter(reply.body).text, "Echo: typed in the terminal");
    const sentAt = performance.now();
    const followUp = await env.users.alice.sendText(env.roomId, "and from Matrix", { threadRoot: root.event_id });
    const r2 = await waitForFinalReply(env, root.event_id, followUp, sentAt);
    assert.match(splitFooter(r2.body).text, /^Echo: and from Matrix$/);
    assert.match(await env.ask("!oc attach ses_doesnotexist123"), /^There is no session `ses_doesnotexist123` on the OpenCode server/);
    assert.equal(await env.ask("!oc attach not-an-id"), "`not-an-id` is not a session id (they look like `ses_…`). Usage: `!oc attach <session-id> [move]` — map an existing session (e.g. one started in the TUI) to a new thread and stream it there; `move` (operators) takes it from another room.");
    assert.match(await env.ask(`!oc attach ${id}`), /already has \[a thread here\]/);
  });

  test("file shows workspace files and refuses paths that lead outside, links and .. included", async () => {
    const ws = env.stack.workspaceDir;
    mkdirSync(join(ws, "docs"), { recursive: true });
    writeFileSync(join(ws, "docs", "note.md"), "# Note\nhello from the workspace\n");
    try {
      symlinkSync("/etc", join(ws, "etc-link"));
    } catch {
      /* exists from an earlier run */
    }
    assert.equal(await env.ask("!oc file docs/note.md"), "`docs/note.md`\n\n```md\n# Note\nhello from the workspace\n```");
    for (const bad of ["../../../../etc/passwd", "/etc/passwd", "etc-link/passwd", "docs/../../outside.txt"]) {
      assert.match(await env.ask(`!oc file ${bad}`), /^⛔ Refused: `.*` (is|leads) outside the workspace\. Only files inside the workspace can be shown\.$/, bad);
    }
    assert.equal(await env.ask("!oc file nope.txt"), "No file `nope.txt` in the workspace.");
    assert.match(await env.ask("!oc file"), /^Which file\? Usage: `!oc file <path>`/);
  });

  test("file refuses a file too large with its size, and a FIFO or a link to /dev/zero at once", async () => {
    const dir = join(env.stack.workspaceDir, "file-limits");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // What the agent can leave behind: a 3.2 GB log (sparse, so the test costs no disk), a
    // FIFO no one writes to, a link to an endless device.
    const fd = openSync(join(dir, "big.log"), "w");
    ftruncateSync(fd, Math.round(3.2 * 1024 ** 3));
    closeSync(fd);
    execFileSync("mkfifo", [join(dir, "pipe")]);
    symlinkSync("/dev/zero", join(dir, "zero"));
    assert.equal(
      await env.ask("!oc file file-limits/big.log"),
      "`file-limits/big.log` is 3.2 GB; the limit is 10 MB. Ask the agent for the part you need (e.g. the last lines, or the lines that match).",
    );
    assert.equal(await env.ask("!oc file file-limits/pipe"), "`file-limits/pipe` is a named pipe (FIFO), not a regular file: only files can be shown.");
    assert.match(await env.ask("!oc file file-limits/zero"), /^⛔ Refused: `file-limits\/zero` leads outside the workspace\./);
    assert.equal(await env.ask("!oc file file-limits"), "`file-limits` is a directory, not a regular file: only files can be shown.");
    const health = await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`);
    assert.equal(health.status, 200, "the bot is still up");
  });

  test("sessions, status and diff describe the room's work", async () => {
    const root = await newThread("Create hello.py that prints hello");
    const sessions = await env.ask("!oc sessions");
    assert.match(sessions, /^\*\*Sessions in this room\*\* \(\d+\):/);
    assert.match(sessions, new RegExp(`\\*\\*Create hello.py that prints hello\\*\\* — \`${sessionOf(root)}\` · idle · \\d+s ago · \\[thread\\]\\(https://matrix.to/#/`));
    const status = await env.ask("!oc status", { threadRoot: root });
    assert.match(status, /^\*\*Create hello\.py that prints hello\*\* — `ses_\w+`\nState: idle · model: fake\/fake-model · agent: build\nLast turn: ✅ done after \d+ s\nTokens: [\d,]+ · cost: \$0\.0000\nChanged files: /);
    const diff = await env.ask("!oc diff", { threadRoot: root });
    assert.match(diff, /^(\*\*Changed files\*\* \(\d+\):\n[AMD] `hello\.py` \+\d+ −\d+|No changed files in this session\.)/);
    assert.match(await env.ask("!oc status"), /^\*\*This room\*\* — \d+ OpenCode sessions?\nProject: `/);
    assert.equal(await env.ask("!oc diff"), "`!oc diff` works inside a session thread: write it as a reply in the thread of the session.");
  });

  test("model and agent are validated and stored for the thread or the room", async () => {
    const root = await newThread("settings check");
    assert.equal(await env.ask("!oc model fake/fake-model", { threadRoot: root }), "Model for this thread: `fake/fake-model`.");
    assert.equal(env.query<{ model: string }>("SELECT model FROM threads WHERE root_event_id = ?", root)[0]?.model, "fake/fake-model");
    assert.equal(await env.ask("!oc model nope/none"), "Unknown model `nope/none`. Available: `fake/fake-model`.");
    assert.match(await env.ask("!oc model gpt4"), /^`gpt4` is not of the form provider\/model\. Usage: `!oc model <provider\/model>`/);
    assert.equal(await env.ask("!oc agent plan"), "Default agent for new prompts in this room: `plan`.");
    assert.match(await env.ask("!oc agent wizard"), /^Unknown agent `wizard`\. Available: .*`build`/);
    assert.equal(await env.ask("!oc agent build"), "Default agent for new prompts in this room: `build`.");
  });

  test("new posts an empty session's thread; forget unmaps it; project needs a moderator", async () => {
    const headline = env.users.alice.sendText(env.roomId, "!oc new Refactor the parser");
    await headline;
    const root = await env.waitForBot("the new session's thread root", (e) => String(e.content.body).startsWith("🧵 **Refactor the parser**"));
    const sentAt = performance.now();
    const prompt = await env.users.alice.sendText(env.roomId, "first words", { threadRoot: root.event_id });
    assert.equal(splitFooter((await waitForFinalReply(env, root.event_id, prompt, sentAt)).body).text, "Echo: first words");
    assert.match(await env.ask("!oc forget", { threadRoot: root.event_id }), /^This thread is no longer linked to `ses_\w+`/);
    assert.equal(env.query("SELECT 1 FROM threads WHERE root_event_id = ?", root.event_id).length, 0);
    assert.equal(await env.ask("!oc project docs", { as: "bob" }), "`!oc project <directory>` needs room moderator rights (power level ≥ 50).");
    assert.match(await env.ask("!oc project docs"), /^New sessions in this room work in `.*\/workspace\/docs`\.$/);
    assert.match(await env.ask("!oc project /etc"), /^⛔ `\/etc` is outside the allowed project roots/);
    assert.match(await env.ask("!oc project ."), /^New sessions in this room work in `.*\/workspace`\.$/);
  });

  test("a file sent into a session thread reaches OpenCode as a file part", async () => {
    const root = await newThread("about to send a file");
    const { alice } = env.users;
    const mxc = await alice.uploadFile(Buffer.from("line one\nline two\n"), "text/plain", "notes.txt");
    const sentAt = performance.now();
    const id = await alice.sendEvent(env.roomId, "m.room.message", {
      msgtype: "m.file",
      body: "notes.txt",
      filename: "notes.txt",
      url: mxc,
      info: { mimetype: "text/plain", size: 18 },
      "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } },
    });
    const reply = await waitForFinalReply(env, root, id, sentAt);
    assert.match(splitFooter(reply.body).text, /^Echo: .*sent notes\.txt/);
    const messages = (await oc.session.messages({ sessionID: sessionOf(root) })).data ?? [];
    const files = messages.flatMap((m) => m.parts).filter((p) => p.type === "file");
    assert.equal(files.length, 1);
    assert.equal((files[0] as { filename?: string }).filename, "notes.txt");
  });

  test("a model error is shown plainly, with what to do, and mentions who asked", async () => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc please fail 400");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /⚠️ \*\*APIError:\*\* .+\n\nThe model provider answered with an error\. Write a follow-up in this thread to try again/);
    const notice = await env.waitForBot("the failure notice", (e) => String(e.content.body).startsWith("⚠️") && (e.content["m.relates_to"] as { event_id?: string }).event_id === root);
    assert.deepEqual(notice.content["m.mentions"], { user_ids: [env.users.alice.userId] });
  });

  test("reasoning the model sends is shown, clearly marked", async () => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc reason about this first");
    const reply = await waitForFinalReply(env, root, root, sentAt);
    assert.match(splitFooter(reply.body).text, /^> 💭 _Thinking about: .*_\n\nEcho: reason about this first$/);
  });

  test("an answer too long for one message continues in further replies, nothing cut", async () => {
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc long 2500");
    // The footer ends the last piece, which is a continuation reply.
    await env.users.alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => {
        const body = String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? e.content.body);
        return /word2500\n\n— fake\/fake-model/.test(body);
      },
      description: "the last piece of the long answer",
      timeoutMs: 60_000,
    });
    void sentAt;
    const replies = (await env.botReplies(root)).filter((e) => !(e.content["m.relates_to"] as { rel_type?: string }).rel_type?.includes("replace"));
    assert.ok(replies.length >= 2, `expected continuation replies, got ${replies.length}`);
    const bodies = await Promise.all(replies.map(async (r) => (await env.users.alice.latestBody(env.roomId, r.event_id)).body));
    const joined = bodies.map((b) => b.replace(/\n\n_\(continued below\)_$/, "")).join("\n");
    const { text } = splitFooter(joined);
    const expected = Array.from({ length: 2500 }, (_, i) => `word${i + 1}`).join(" ");
    assert.equal(text.replace(/\s+/g, " "), expected);
    for (const b of bodies) assert.ok(Buffer.byteLength(b) <= 8100, "each piece fits a Matrix event");
  });
});

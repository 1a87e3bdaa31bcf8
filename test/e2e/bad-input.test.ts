import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";
import { seededRandom } from "../harness/seeded-random.ts";

// Garbage in, clear answers out: hundreds of malformed messages (every command with odd
// arguments, Unicode tricks, control characters, huge words, whitespace, a ~60 KB message,
// unknown session ids), sent at a bounded rate. Each one addressed to the bot gets an answer in
// its thread (or a new thread, for `new`); each one not addressed to it is ignored, as
// documented; and afterwards the bot is healthy and answers a normal prompt.
// Seeded, so a failure can be replayed: FUZZ_SEED=<n>.

const { seed, int, pick } = seededRandom(7_331);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const commands = ["new", "sessions", "attach", "abort", "status", "forget", "allow", "deny", "reject", "diff", "file", "model", "agent", "project", "help", "prompt"];
// Commands that do something harmless with any argument inside a session thread (no forget: it unmaps the thread).
const threadCommands = ["status", "diff", "abort", "allow", "deny", "reject", "model", "agent", "file", "sessions", "help", "attach", "new", "project"];
const junkArgs = [
  "", " ", "   \t  ", "\u200b", "\u200f\u202e", "\ufeff", "\u202egnp.exe", "🎉", "👨‍👩‍👧‍👦 🏳️‍🌈", "Z̴̡̛a̸l̵g̷o̶", "עברית", "العربية", "中文字符",
  "\\0", "\\x00", "%00", "\\u0000", "\u0000", "nul\u0000inside", "\u0007\u001b[31mred", "\ud800", "\udc00lone", "\uffff\ufffe",
  "x".repeat(1000), "a/".repeat(300), `${"../".repeat(50)}etc/passwd`, "/etc/passwd", "~/.ssh/id_rsa", "/", "$(rm -rf /)", "`rm -rf /`",
  "; DROP TABLE threads; --", "' OR 1=1 --", "ses_", `ses_${"A".repeat(500)}`, "ses_../../../x", "SES_ABC", "ses_doesnotexist000", "ses_0",
  "fake/", "/fake-model", "a/b/c/d", "provider/model with spaces", "always", "ALWAYS", "once", "never", "always always", "-1", "NaN", "1e309",
  "{}", "[]", "null", "<script>alert(1)</script>", "**bold** _it_ `code` ```", "[link](javascript:alert(1))", "@room", "@mallory:localhost",
  "!oc help", "!oc !oc !oc", "\n\n\n", "line1\nline2\n> quoted", "| a | b |\n|---|---|", "# heading",
];
// Prompt-like garbage that cannot start with a command word.
const junkPrompts = [
  "🎉", "👨‍👩‍👧‍👦", "\u202edlrow olleh", "\u200f\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "Z̴̡̛a̸l̵g̷o̶ text", "中文 提示", "\\0\\x00%00",
  "1000 words? no: " + "y".repeat(1000), "¿qué?", "😀".repeat(200), "```\nunclosed fence", "> > > > nested quotes", "<b>html</b> & entities &amp;",
  // Nested thousands of levels deep: the markdown renderer recurses once per level.
  `deep quotes\n${">".repeat(5000)}`, `deep list\n${"1. ".repeat(2600)}`,
];

type Expect = "reply" | "new-thread" | "ignored";
interface Input { body: string; expect: Expect; thread?: boolean; prompt?: boolean; msgtype?: string; what: string }

function variant(cmd: string): string {
  switch (int(5)) {
    case 0: return cmd.toUpperCase();
    case 1: return `${cmd.slice(0, 1)}\u200b${cmd.slice(1)}`; // a zero-width space inside the word
    case 2: return `\u200e${cmd}`;
    default: return cmd;
  }
}

function build(): Input[] {
  const inputs: Input[] = [];
  const add = (i: Input): void => void inputs.push(i);
  // Every command with each kind of odd argument, at the top level.
  for (const cmd of commands) {
    const n = cmd === "new" ? 3 : cmd === "prompt" ? 4 : 9;
    for (let i = 0; i < n; i++) {
      const args = pick(junkArgs);
      const body = `!oc ${variant(cmd)} ${args}`;
      const isPrompt = cmd === "prompt" && args.replace(/[\s\p{Cf}]/gu, "") !== "";
      add({ body, expect: cmd === "new" ? "new-thread" : "reply", prompt: isPrompt, what: `${cmd} + junk` });
    }
  }
  // Commands in a session thread.
  for (let i = 0; i < 30; i++) add({ body: `!oc ${variant(pick(threadCommands))} ${pick(junkArgs)}`, expect: "reply", thread: true, what: "thread command + junk" });
  // Unknown session ids.
  for (const id of ["ses_nonexistent123", `ses_${"z".repeat(200)}`, "SES_UPPER", "ses_", "ses_-1", "sess_typo", "ses_\u200bzero"]) add({ body: `!oc attach ${id}`, expect: "reply", what: "unknown session id" });
  // Words that look like mistyped commands, and odd single words.
  for (const w of ["sesions", "statsu", "halp", "frobnicate", "a", "-", "--", "?", "-h", "--help", "HELP", "x".repeat(24), "q".repeat(25)]) {
    // A single unknown word is taken for a mistyped command, unless it cannot be one: then it is a prompt.
    add({ body: `!oc ${w}`, expect: "reply", prompt: w === "-" || w === "--" || w.length > 24, what: "single word" });
  }
  // Only the prefix, or the prefix and whitespace: help.
  for (const b of ["!oc", "!oc ", "!oc \t\t ", "!OC", "  !oc  ", "\u200f!oc", "\ufeff!oc help", "\u202e!oc help", "!oc\u200bhelp", "!oc\u00a0help"]) add({ body: b, expect: "reply", what: "prefix only / invisible separators" });
  // Prompt-like garbage: each one a session and a turn, so only a handful.
  for (const p of junkPrompts) add({ body: `!oc ${p}`, expect: "reply", prompt: true, what: "garbage prompt" });
  // Not addressed to the bot: ignored, as documented.
  for (const b of ["hello there", "!ocfoo help", "!oc-help", "oc help", "! oc help", "!o c help", "   ", "\u200b", "🎉🎉🎉", "!oc\u0000help", "!letta help", "> !oc help quoted"]) {
    add({ body: b, expect: "ignored", what: "not addressed" });
  }
  // Other message types: an emote is heard; a notice (what bots send) is not.
  add({ body: "!oc help", msgtype: "m.emote", expect: "reply", what: "emote" });
  add({ body: "!oc help", msgtype: "m.notice", expect: "ignored", what: "notice" });
  add({ body: "!oc help", msgtype: "m.location", expect: "ignored", what: "location" });
  add({ body: "!oc help", msgtype: "", expect: "ignored", what: "empty msgtype" });
  // A message just under Synapse's 64 KiB event limit.
  const big = Array.from({ length: 11_000 }, (_, i) => `w${i}`).join(" ").slice(0, 60_000).replace(/ \S*$/, "");
  add({ body: `!oc ${big}`, expect: "reply", prompt: true, what: "60 KB prompt" });
  add({ body: `!oc file ${"f".repeat(59_000)}`, expect: "reply", what: "60 KB file argument" });
  add({ body: `!oc model ${"m/".repeat(29_000)}`, expect: "reply", what: "60 KB model argument" });
  add({ body: `!oc attach ses_${"q".repeat(59_000)}`, expect: "reply", what: "60 KB session id" });
  // Shuffle, so each kind meets the bot in different states.
  for (let i = inputs.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [inputs[i], inputs[j]] = [inputs[j] as Input, inputs[i] as Input];
  }
  return inputs;
}

let env: TestEnv;
let sessionRoot = "";
before(async () => {
  env = await TestEnv.create({ name: "garbage", editWindowMs: 500, botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "600000" } });
  const sentAt = performance.now();
  sessionRoot = await env.users.alice.sendText(env.roomId, "!oc a session to throw garbage at");
  await waitForFinalReply(env, sessionRoot, sessionRoot, sentAt);
});
after(async () => {
  await env?.close();
});

type Rel = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const relOf = (e: MatrixEvent): Rel => (e.content["m.relates_to"] ?? {}) as Rel;
const newBody = (e: MatrixEvent): string => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? e.content.body ?? "");

const health = async (): Promise<number> => (await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`)).status;

describe("garbage input", () => {
  const sent: Array<Input & { id: string }> = [];
  let refused: string[] = [];

  test(`hundreds of malformed messages each get a clear answer or are ignored as documented; the bot stays up (seed ${seed})`, async (t) => {
    const { alice } = env.users;
    const inputs = build();
    const startedNewThreads = alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && newBody(e).startsWith("🧵")).length;
    const t0 = performance.now();
    let slowest = 0;
    // Three senders side by side, each pausing between messages: a bounded rate (well under
    // 100 messages a second), fast enough to keep the bot busy with several at once.
    const queue = [...inputs];
    const lane = async (): Promise<void> => {
      for (let input = queue.shift(); input; input = queue.shift()) {
        const s0 = performance.now();
        const opts = { ...(input.thread ? { threadRoot: sessionRoot } : {}), ...(input.msgtype !== undefined ? { msgtype: input.msgtype } : {}) };
        try {
          sent.push({ ...input, id: await alice.sendText(env.roomId, input.body, opts) });
        } catch (err) {
          // Synapse itself refuses some bodies (lone surrogates, for one): they never reach the bot.
          if (!/HTTP [45]\d\d/.test(String(err))) throw err;
          refused.push(`${input.what}: ${JSON.stringify(input.body.slice(0, 40))} (${String(err).slice(0, 120)})`);
        }
        slowest = Math.max(slowest, performance.now() - s0);
        await sleep(30);
      }
    };
    await Promise.all([lane(), lane(), lane()]);
    const sendMs = performance.now() - t0;

    // Wait (bounded) until every message that expects a reply has one.
    const replyOf = new Map<string, MatrixEvent>();
    const deadline = performance.now() + 90_000;
    const wanted = sent.filter((s) => s.expect === "reply");
    while (performance.now() < deadline) {
      for (const e of alice.seenEvents(env.roomId)) {
        if (e.sender !== env.botUserId || e.type !== "m.room.message" || relOf(e).rel_type === "m.replace") continue;
        const to = relOf(e)["m.in_reply_to"]?.event_id;
        if (to && !replyOf.has(to)) replyOf.set(to, e);
      }
      if (wanted.every((s) => replyOf.has(s.id))) break;
      await sleep(250);
    }
    const unanswered = wanted.filter((s) => !replyOf.has(s.id)).map((s) => `${s.what}: ${JSON.stringify(s.body.slice(0, 60))}`);
    assert.deepEqual(unanswered, [], `${unanswered.length} messages got no answer`);

    // Every prompt's turn ended (the reply reached its final state).
    const prompts = sent.filter((s) => s.prompt);
    const turnDeadline = performance.now() + 90_000;
    let running: string[] = [];
    while (performance.now() < turnDeadline) {
      running = prompts.filter((p) => env.query<{ status: string }>("SELECT status FROM turns WHERE prompt_event_id = ?", p.id).some((r) => r.status === "running")).map((p) => p.what);
      if (running.length === 0) break;
      await sleep(500);
    }
    assert.deepEqual(running, [], "turns still running");
    const turns = prompts.map((p) => env.query<{ status: string }>("SELECT status FROM turns WHERE prompt_event_id = ?", p.id)[0]?.status ?? "none");
    assert.ok(turns.every((s) => s === "done"), `every garbage prompt became a finished turn: ${turns.join(",")}`);

    // `new` answers with a thread of its own: one per `new` that reached the bot.
    const news = sent.filter((s) => s.expect === "new-thread").length;
    const threadsDeadline = performance.now() + 30_000;
    let newThreads = 0;
    while (performance.now() < threadsDeadline) {
      newThreads = alice.seenEvents(env.roomId).filter((e) => e.sender === env.botUserId && relOf(e).rel_type === undefined && newBody(e).startsWith("🧵")).length - startedNewThreads;
      if (newThreads >= news) break;
      await sleep(250);
    }
    assert.equal(newThreads, news, "each `new` opened one thread");

    // A clear answer is not an internal error and not empty.
    const answers = wanted.map((s) => ({ s, body: newBody(replyOf.get(s.id) as MatrixEvent) }));
    const unclear = answers.filter(({ body }) => body.trim() === "" || /failed: |TypeError|ReferenceError|at \S+ \(file:/.test(body)).map(({ s, body }) => `${s.what}: ${JSON.stringify(s.body.slice(0, 50))} → ${body.slice(0, 160)}`);
    assert.deepEqual(unclear, [], "answers that are internal errors");

    // Ignored means ignored: a final marker proves the bot got past them, and nothing answered them.
    const markerAt = performance.now();
    const markerId = await alice.sendText(env.roomId, "!oc a normal prompt after the garbage");
    const reply = await waitForFinalReply(env, markerId, markerId, markerAt, 60_000);
    assert.equal(splitFooter(reply.body).text, "Echo: a normal prompt after the garbage");
    const answeredIgnored = sent
      .filter((s) => s.expect === "ignored")
      .filter((s) => alice.seenEvents(env.roomId).some((e) => e.sender === env.botUserId && (relOf(e).event_id === s.id || relOf(e)["m.in_reply_to"]?.event_id === s.id)))
      .map((s) => `${s.what}: ${JSON.stringify(s.body)}`);
    assert.deepEqual(answeredIgnored, [], "messages that should have been ignored got an answer");
    assert.equal(env.query<{ n: number }>("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'")[0]?.n, 0, "no message left unprocessed");

    // Still up and healthy.
    assert.equal(env.bot.proc.exitCode, null, "the bot is still running");
    assert.equal(await health(), 200);
    const errors = env.bot.lines.filter((l) => l.includes('"level":50') || l.includes('"level":60'));
    const byMsg = new Map<string, number>();
    for (const l of errors) {
      const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 80);
      byMsg.set(msg, (byMsg.get(msg) ?? 0) + 1);
    }
    t.diagnostic(
      `${inputs.length} inputs (${refused.length} refused by Synapse) sent in ${(sendMs / 1000).toFixed(1)} s (slowest send ${slowest.toFixed(0)} ms); ${wanted.length} answered, ` +
        `${prompts.length} prompts finished, ${news} new threads, ${sent.filter((s) => s.expect === "ignored").length} ignored; ` +
        `error log lines: ${[...byMsg].map(([m, n]) => `${n}× ${m}`).join("; ") || "none"}`,
    );
    if (refused.length > 0) t.diagnostic(`refused by Synapse: ${refused.join(" | ")}`);
    refused = [];
  });

  test(
    "a ~60 KB answer can be read in full: in the thread's pieces or as an attached file",
    async () => {
      const big = sent.find((s) => s.what === "60 KB prompt");
      assert.ok(big, "the 60 KB prompt was sent");
      const { alice } = env.users;
      const events = await alice.threadEvents(env.roomId, big.id);
      const pieces = events.filter((e) => e.sender === env.botUserId && relOf(e).rel_type === "m.thread" && relOf(e)["m.in_reply_to"]?.event_id === big.id && e.content.msgtype === "m.notice");
      const files = events.filter((e) => e.sender === env.botUserId && e.content.msgtype === "m.file");
      const text = (await Promise.all(pieces.map(async (p) => (await alice.latestBody(env.roomId, p.event_id)).body))).join(" ");
      const lastWord = big.body.split(" ").at(-1) ?? "";
      assert.ok(files.length > 0 || new RegExp(`\\b${lastWord}\\b`).test(text), `the end of the answer (${lastWord}) is nowhere: ${pieces.length} pieces with ${text.length} characters, ${files.length} files`);
    },
  );
});

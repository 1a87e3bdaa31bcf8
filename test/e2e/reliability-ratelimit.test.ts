import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { MatrixEvent } from "../harness/matrix-user.ts";
import { cacheDir, loadStackInfo } from "../harness/stack.ts";
import { startSynapse, type SynapseHandle } from "../harness/synapse.ts";
import { TestEnv, splitFooter, waitForFinalReply } from "./env.ts";

// A homeserver with Synapse's DEFAULT message limits (rc_message: 0.2/s, burst 10): a long
// streamed answer with a small edit window runs into 429s. The reply must still end in the
// exact final text, the waits must be honoured, and stale states dropped rather than queued.

let synapse: SynapseHandle | undefined;
let env: TestEnv;

before(async () => {
  const stack = loadStackInfo();
  synapse = await startSynapse({ cacheDir, workDir: mkdtempSync(join(stack.workDir, "synapse-ratelimit-")), rateLimits: "default" });
  env = await TestEnv.create({
    name: "rlimit",
    synapse,
    editWindowMs: 300,
    // Always post the completion notice: a send that is retried after a 429 (not dropped).
    botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "0" },
  });
  // Only the bot meets the limits; the people's sends would just slow the test down.
  const people = [env.users.alice, env.users.bob, env.users.mallory];
  for (const u of people) await synapse.exemptFromRateLimits(u.userId);
});
after(async () => {
  await env?.close();
  await synapse?.stop();
});

interface Parsed {
  msg?: string;
  waitMs?: number;
  local?: boolean;
  time?: number;
}

const logLines = (): Parsed[] =>
  env.bot.lines.flatMap((l) => {
    if (!l.startsWith("{")) return [];
    try {
      return [JSON.parse(l) as Parsed];
    } catch {
      return [];
    }
  });

type Relation = { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
const relOf = (e: MatrixEvent): Relation => (e.content["m.relates_to"] ?? {}) as Relation;
const newBody = (e: MatrixEvent): string => String((e.content["m.new_content"] as { body?: string } | undefined)?.body ?? e.content.body ?? "");

/** Counters from GET /metrics, when the bot has that endpoint. */
async function metrics(port: number): Promise<Record<string, number> | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
  if (!res?.ok) return undefined;
  const out: Record<string, number> = {};
  for (const line of (await res.text()).split("\n")) {
    const m = /^(bot_matrix_[a-z_]+)(?:\{[^}]*\})?\s+([\d.eE+-]+)$/.exec(line.trim());
    if (m?.[1] && m[2]) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

/** How far a state of a scripted answer got: its words, plus a half for the footer of the final state. */
const progress = (state: string): number => (state.match(/\b(?:word|slow)\d+\b/g)?.length ?? 0) + (/\n— \S/.test(state) ? 0.5 : 0);
const unwrap = (body: string): string => body.replace(/\n\n_\(continued below\)_$/, "");

/**
 * Checks one streamed answer as alice reads it: the pieces join to exactly `expected` plus a
 * footer, every edit carries a newer state than the one before (nothing stale sent late), and
 * the completion notice came exactly once. Returns the number of pieces and edits.
 */
async function checkAnswer(root: string, expected: string): Promise<{ pieces: number; edits: number }> {
  const { alice } = env.users;
  const inThread = (await alice.threadEvents(env.roomId, root)).filter((e) => e.sender === env.botUserId);
  // The reply and its continuations answer the prompt; notices about other things answer the reply.
  const pieces = inThread.filter((e) => e.content.msgtype === "m.notice" && relOf(e).rel_type === "m.thread" && relOf(e)["m.in_reply_to"]?.event_id === root);
  const notices = inThread.filter((e) => String(e.content.body).startsWith("✅"));
  assert.equal(notices.length, 1, "the completion notice (a retried send) arrived exactly once");
  const bodies: string[] = [];
  let edits = 0;
  for (const piece of pieces) {
    const latest = await alice.latestBody(env.roomId, piece.event_id);
    bodies.push(unwrap(latest.body));
    edits += latest.editCount;
    const history = (await alice.edits(env.roomId, piece.event_id))
      .filter((e) => e.sender === env.botUserId)
      .toSorted((a, b) => a.origin_server_ts - b.origin_server_ts);
    const states = [String(piece.content.body), ...history.map(newBody)].map(unwrap);
    for (let i = 1; i < states.length; i++) {
      const [prev, cur] = [progress(states[i - 1] ?? ""), progress(states[i] ?? "")];
      assert.ok(cur > prev, `piece ${piece.event_id}: edit ${i} (progress ${cur}) is not newer than the state before it (progress ${prev})`);
    }
    assert.equal(states.at(-1), unwrap(latest.body), "the newest edit is the final state");
  }
  // Pieces are cut between words; the space at a cut goes with the message boundary.
  const { text, footer } = splitFooter(bodies.join(" "));
  assert.equal(text, expected, "the thread holds exactly the streamed answer");
  assert.match(footer, /^— fake\/fake-model · [\d,]+ tokens · \d+\.\ds$/);
  return { pieces: pieces.length, edits };
}

const waitForNotice = (root: string): Promise<{ receivedAt: number }> =>
  env.users.alice.waitForRoomEvent({
    roomId: env.roomId,
    sender: env.botUserId,
    match: (e) => relOf(e).event_id === root && String(e.content.body).startsWith("✅"),
    description: `the completion notice in ${root}`,
    timeoutMs: 90_000,
  });

describe("a homeserver with its default rate limits", () => {
  test("two answers streamed at once (one long) end with their exact final text; 429s are waited out and stale edits dropped", async (t) => {
    const { alice, bob } = env.users;
    const words = 1500;
    const longText = Array.from({ length: words }, (_, i) => `word${i + 1}`).join(" ");
    const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
    const before = await metrics(env.bot.httpPort);
    const sentAt = performance.now();
    // Both replies share the bot's one message budget (0.2/s after a burst of 10).
    const [longRoot, slowRoot] = await Promise.all([
      alice.sendText(env.roomId, `!oc long ${words}`),
      bob.sendText(env.roomId, "!oc something slow, please"),
    ]);
    // The completion notice is sent after a reply's final state.
    const notices = await Promise.all([waitForNotice(longRoot), waitForNotice(slowRoot)]);
    const doneMs = Math.max(...notices.map((n) => n.receivedAt)) - sentAt;

    const long = await checkAnswer(longRoot, longText);
    const slow = await checkAnswer(slowRoot, slowText);
    assert.ok(long.pieces >= 2, `a ${words}-word answer continues in a second reply (got ${long.pieces})`);

    // The homeserver said 429, and the bot waited as told.
    const lines = logLines();
    const retried = lines.filter((l) => l.msg === "homeserver rate limit; waiting");
    const onLive = lines.filter((l) => l.msg?.startsWith("homeserver rate limit on a live message"));
    // `local`: the bot held a reply back because of an earlier 429, without asking the server.
    const dropped = onLive.filter((l) => l.local !== true);
    const heldBack = onLive.length - dropped.length;
    const limited = retried.length + dropped.length;
    assert.ok(limited >= 1, "Synapse's default limits were hit (otherwise this test proves nothing)");
    for (const l of [...retried, ...dropped]) assert.ok((l.waitMs ?? 0) > 0, "each 429 carried a wait that the bot used");

    // Stale states are dropped, not queued: ~240 streamed chunks became a few edits, and the bot
    // did not hammer the server (a 429 per successful send at most, plus a few collisions).
    const sent = await alice.roomMessages(env.roomId, 200);
    // The room is this suite's own: every event of the bot in it but its join is one of these sends.
    const successes = sent.filter((e) => e.sender === env.botUserId && e.type !== "m.room.member").length;
    const edits = long.edits + slow.edits;
    assert.ok(edits < 40, `${edits} edits: intermediate states were queued instead of dropped`);
    assert.ok(limited <= successes + 5, `${limited} 429s for ${successes} successful sends: the waits were not honoured`);

    const afterMetrics = await metrics(env.bot.httpPort);
    const m = before && afterMetrics
      ? ` · /metrics: requests +${(afterMetrics.bot_matrix_requests_total ?? 0) - (before.bot_matrix_requests_total ?? 0)}, rate limited +${(afterMetrics.bot_matrix_rate_limited_total ?? 0) - (before.bot_matrix_rate_limited_total ?? 0)}`
      : "";
    t.diagnostic(
      `long ${words} + slow: both final after ${(doneMs / 1000).toFixed(1)} s; long: ${long.pieces} pieces, ${long.edits} edits; slow: ${slow.edits} edits; ` +
        `${successes} successful sends + ${limited} answered 429 (${dropped.length} live-message, ${retried.length} retried; ` +
        `${heldBack} updates held back without a request; ` +
        `waits ${[...retried, ...dropped].map((l) => l.waitMs).join(",")} ms) = ${successes + limited} requests${m}`,
    );
  });

  test("a prompt after the limited answers is answered normally", async () => {
    const { alice } = env.users;
    const root = await alice.sendText(env.roomId, "!oc still answering after the limits");
    const final = await alice.waitForRoomEvent({
      roomId: env.roomId,
      sender: env.botUserId,
      match: (e) => /^Echo: still answering after the limits\n\n— /.test(newBody(e)),
      description: "the answer to the next prompt",
      timeoutMs: 60_000,
    });
    assert.ok(final);
    void root;
  });
});

describe("twenty answers streaming at once under the default rate limits", () => {
  test("every thread ends with its exact answer, no edit goes backwards, and the edit window widened instead of queueing", async (t) => {
    // A bot of its own (its own message budget), without completion notices: 20 × (👀, reply,
    // final) is already 60 sends at Synapse's default 0.2/s after a burst of 10.
    const many = await TestEnv.create({ name: "rl20", synapse, editWindowMs: 300, botEnv: { BOT_COMPLETION_NOTICE_AFTER_MS: "3600000" } });
    try {
      const { alice } = many.users;
      await synapse?.exemptFromRateLimits(alice.userId);
      const slowText = Array.from({ length: 40 }, (_, i) => `slow${i + 1}`).join(" ");
      const sentAt = performance.now();
      const roots = await Promise.all(Array.from({ length: 20 }, (_, i) => alice.sendText(many.roomId, `!oc slow stream ${i + 1}`)));
      const finals = await Promise.all(roots.map((root) => waitForFinalReply(many, root, root, sentAt, 600_000)));
      let edits = 0;
      for (const [i, root] of roots.entries()) {
        assert.equal(splitFooter(finals[i]?.body ?? "").text, slowText, `thread ${i + 1}: the exact answer`);
        const reply = (await alice.threadEvents(many.roomId, root)).find((e) => e.sender === many.botUserId && e.content.msgtype === "m.notice");
        assert.ok(reply, `thread ${i + 1}: a reply`);
        const history = (await alice.edits(many.roomId, reply.event_id)).toSorted((a, b) => a.origin_server_ts - b.origin_server_ts);
        const states = [String(reply.content.body), ...history.map(newBody)];
        for (let k = 1; k < states.length; k++) assert.ok(progress(states[k] ?? "") > progress(states[k - 1] ?? ""), `thread ${i + 1}: edit ${k} is newer than the state before it`);
        edits += history.length;
      }
      // With a fixed 300 ms window each 4 s answer would want ~13 edits (260 in all); the budget
      // widens the window under the 429s, so most answers go out as a first post and a final.
      assert.ok(edits <= 60, `${edits} edits for 20 answers: the window did not widen under the rate limit`);
      const limited = many.bot.lines.filter((l) => l.includes("homeserver rate limit")).length;
      assert.ok(limited >= 1, "the default limits were hit (otherwise this test proves nothing)");
      t.diagnostic(`20 answers final after ${((performance.now() - sentAt) / 1000).toFixed(1)} s; ${edits} edits in all; ${limited} rate-limit log lines`);
    } finally {
      await many.close();
    }
  });
});

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { Event, Message, Part } from "@opencode-ai/sdk/v2";
import { LettaTranslator } from "../../src/letta/events.ts";
import { OpencodeTranslator } from "../../src/opencode/events.ts";
import type { TurnEvent } from "../../src/turns/events.ts";
import { renderTurn } from "../../src/turns/render.ts";
import { TurnState } from "../../src/turns/state.ts";

// The shared renderer on streams recorded from real servers (test/harness/record-streams.ts):
// OpenCode 1.18.33's events and Letta 0.16.8's answer streams, replayed as the backends feed
// them to the engine. Each replay also checks what people must never see: a live text shorter
// than the one before it.

const lines = (path: string): Array<Record<string, unknown>> =>
  readFileSync(join(import.meta.dirname, "../fixtures", path), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);

const body = (text: string): string => text.replace(/\n\n— .*$/s, "");

class Replay {
  readonly state = new TurnState();
  readonly shown: string[] = [];
  private readonly working: string;
  constructor(working: string) {
    this.working = working;
  }
  push(events: TurnEvent[]): void {
    let changed = false;
    for (const e of events) changed = this.state.apply(e) || changed;
    if (changed) this.shown.push(renderTurn(this.state, { final: false, durationMs: 0, working: this.working }));
  }
  final(ms = 1500): string {
    return renderTurn(this.state, { final: true, durationMs: ms, working: this.working });
  }
  /** Live texts never get shorter, except where the placeholder or a retry line gives way. */
  assertNeverShorter(): void {
    const content = this.shown.filter((t) => !t.startsWith("⏳"));
    for (let i = 1; i < content.length; i++) {
      const before = (content[i - 1] as string).replace(/\n\n⏳ _.*$/s, "");
      assert.ok((content[i] as string).length >= before.length, `live text ${i} is shorter than the one before:\n${content[i - 1]}\n---\n${content[i]}`);
    }
  }
}

/** Replays an OpenCode fixture as the tracker does: events while it runs, the server's record at the end. */
function opencode(name: string): { r: Replay; tr: OpencodeTranslator } {
  const r = new Replay("⏳ Working…");
  const tr = new OpencodeTranslator("/tmp/opencode-record/project");
  for (const l of lines(`opencode/${name}.jsonl`).slice(1)) {
    if ("snapshot" in l) r.push(tr.load(l.snapshot as Array<{ info: Message; parts: Part[] }>));
    else r.push(tr.apply(l as unknown as Event));
  }
  const err = tr.error;
  if (err?.name === "MessageAbortedError") r.push([{ type: "end", reason: "aborted" }]);
  else if (err) r.push([{ type: "error", title: err.name, message: err.message }]);
  else r.push([{ type: "end", reason: "done" }]);
  return { r, tr };
}

function letta(name: string): Replay {
  const r = new Replay("⏳ _pal is thinking…_");
  const tr = new LettaTranslator("pal");
  for (const l of lines(`letta/${name}.jsonl`).slice(1)) {
    if ("thrown" in l) {
      const e = (l.thrown as { error?: { message?: string; detail?: string } }).error;
      r.push(tr.fail([e?.message, e?.detail].filter(Boolean).join(" — ")));
    } else r.push(tr.events(l));
  }
  r.push(tr.end());
  return r;
}

test("OpenCode: a streamed answer grows in place and ends with model, tokens and time", () => {
  const { r } = opencode("hello");
  assert.equal(r.shown[0], "⏳ Working…");
  assert.ok(r.shown.includes("Echo: hello there"));
  assert.match(r.final(), /^Echo: hello there\n\n— \S+\/\S+ · [\d,]+ tokens · 1\.5s$/);
  r.assertNeverShorter();
});

test("OpenCode: reasoning is a quoted 💭 line before the answer", () => {
  const { r } = opencode("reasoning");
  assert.match(r.final(), /^> 💭 _.+_\n\n.+\n\n— /s);
  r.assertNeverShorter();
});

test("OpenCode: a permitted bash call is one line through its states, then the answer", () => {
  const { r } = opencode("bash");
  assert.ok(r.shown.includes("▶️ bash `echo hi` …") || r.shown.some((t) => t.startsWith("▶️ bash `echo hi` …")));
  assert.equal(body(r.final()), "▶️ bash `echo hi` ✓\n\nCommand finished: hi");
  r.assertNeverShorter();
});

test("OpenCode: a rejected call says why on its line", () => {
  const { r } = opencode("bash-rejected");
  assert.match(r.final(), /^▶️ bash `rm -rf \.\/build` ✗ The user rejected permission/);
});

test("OpenCode: a written file is in the footer", () => {
  const { r } = opencode("write");
  assert.match(r.final(), /^✏️ write hello\.py ✓/);
  assert.match(r.final(), / · changed hello\.py$/);
});

test("OpenCode: while the model fails the reply says OpenCode is retrying; the error ends it", () => {
  const { r } = opencode("fail");
  assert.ok(r.shown.some((t) => /^⏳ _Scripted failure; retry 1 in \d+ s…_$/.test(t)), r.shown.join("\n|"));
  assert.ok(r.shown.some((t) => /retry 2/.test(t)));
  assert.match(r.final(), /^⚠️ \*\*APIError:\*\* Scripted failure\n\n— /);
});

test("OpenCode: an abort keeps the words already streamed, though the server's record lost them", () => {
  const { r } = opencode("abort");
  const streamed = r.shown.filter((t) => !t.startsWith("⏳") && !t.includes("⏹️")).at(-1) ?? "";
  assert.ok(streamed.length > 0, "text was streamed before the abort");
  assert.equal(body(r.final()), `${streamed}\n\n⏹️ Aborted.`);
  r.assertNeverShorter();
});

test("OpenCode: the question tool shows as its own line", () => {
  const { r } = opencode("question");
  assert.match(r.final(), /^❓ question .*✓/);
});

test("Letta: reasoning, then the answer; the footer has the agent, steps, tokens and time", () => {
  const r = letta("hello");
  assert.match(r.final(), /^> 💭 _.+_\n\n.+\n\n— letta pal · 1 step · [\d,]+ tokens · 1\.5s$/s);
  r.assertNeverShorter();
});

test("Letta: a memory tool call is one line, its return marks it ✓", () => {
  const r = letta("tool");
  assert.match(r.final(), /^🔧 memory_insert ✓\n\nNoted: likes tests\n\n— letta pal/);
});

test("Letta: a model failure shows Letta's error once, with its detail", () => {
  const r = letta("error");
  assert.match(r.final(), /^⚠️ \*\*Letta error:\*\* An error occurred with the LLM request\. — INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500 - \{.*'code': 'scripted_failure'\}\}\n\n— letta pal · [\d.]+s$/);
  assert.ok(r.state.failed);
});

test("after a restart the reply continues from what was shown: the server's shorter record takes nothing back", () => {
  const rec = lines("opencode/abort.jsonl").slice(1);
  const first = new Replay("⏳ Working…");
  const tr1 = new OpencodeTranslator("/tmp/opencode-record/project");
  for (const l of rec) if (!("snapshot" in l)) first.push(tr1.apply(l as unknown as Event));
  const shownBefore = first.shown.at(-1) ?? "";
  const saved = JSON.parse(JSON.stringify(first.state.save())) as ReturnType<TurnState["save"]>;

  // A new process: the saved state, then the server's own record (which kept an empty text part).
  const second = new Replay("⏳ Working…");
  second.state.restore(saved);
  const tr2 = new OpencodeTranslator("/tmp/opencode-record/project");
  const snapshot = rec.find((l) => "snapshot" in l)?.snapshot as Array<{ info: Message; parts: Part[] }>;
  second.push(tr2.load(snapshot));
  const after = renderTurn(second.state, { final: false, durationMs: 0, working: "⏳ Working…" });
  assert.ok(after.length >= shownBefore.length && after.startsWith(shownBefore.slice(0, 20)), `after a restart:\n${after}\nbefore:\n${shownBefore}`);
});

test("a block the agent's record lacks stays where it was; a shorter text never replaces a longer one", () => {
  const s = new TurnState();
  s.apply({ type: "text", id: "a", delta: "first part" });
  s.apply({ type: "tool", id: "t", tool: { name: "bash", subject: "`ls`", status: "running" } });
  s.apply({ type: "text", id: "b", delta: "second part, longer" });
  const restored = new TurnState();
  restored.restore(JSON.parse(JSON.stringify(s.save())) as ReturnType<TurnState["save"]>);
  restored.apply({ type: "snapshot", blocks: [{ type: "tool", id: "t", tool: { name: "bash", subject: "`ls`", status: "done" } }, { type: "text", id: "b", text: "second" }] });
  assert.equal(renderTurn(restored, { final: false, durationMs: 0, working: "" }), "first part\n\n▶️ bash `ls` ✓\n\nsecond part, longer");
});

test("a graceful stop waits for the pushes still owed (one waiting out a 429), up to its limit", async () => {
  const { TurnEngine } = await import("../../src/turns/engine.ts");
  const { createLogger } = await import("../../src/log.ts");
  const sent: string[] = [];
  const sender = { send: async (_room: string, content: { body?: unknown }) => { sent.push(String(content.body)); return `$e${sent.length}`; }, sendFile: async () => "$f" };
  let release: () => void = () => {};
  const notices = {
    turnEnded: () => new Promise<void>((r) => (release = () => { sent.push("push"); r(); })),
  };
  const engine = new TurnEngine({ sender: sender as never, log: createLogger("silent"), editWindowMs: 10, notices });
  // The engine's timers do not hold the process open (a running bot has its sockets); the test's must.
  const alive = setInterval(() => {}, 1000);
  const turn = engine.open({ target: { roomId: "!r", threadRoot: "$root", replyTo: "$root" }, replyEventId: null, onPosted: () => {}, working: "⏳", promptedBy: "@alice:x" });
  turn.push({ type: "text", id: "a", delta: "hi" });
  void turn.finish();
  assert.equal(await engine.settle(50), 1, "the push is still owed at a short limit");
  setTimeout(() => release(), 20);
  assert.equal(await engine.settle(2000), 0, "then it went out before the stop ended");
  assert.equal(sent.at(-1), "push");
  clearInterval(alive);
});

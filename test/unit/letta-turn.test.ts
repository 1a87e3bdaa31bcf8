import { test } from "node:test";
import assert from "node:assert/strict";
import { LettaTranslator } from "../../src/letta/events.ts";
import { renderTurn } from "../../src/turns/render.ts";
import { TurnState } from "../../src/turns/state.ts";

// Events as Letta 0.16.8 streams them (see test/harness/LETTA-NOTES.md), trimmed to what matters.
const ping = { id: "ping-1", message_type: "ping" };
const text = (id: string, content: string) => ({ id, message_type: "assistant_message", content });
const reasoning = (id: string, r: string) => ({ id, message_type: "reasoning_message", reasoning: r });
const stop = (reason = "end_turn") => ({ message_type: "stop_reason", stop_reason: reason });
const usage = (steps: number, tokens: number) => ({ message_type: "usage_statistics", step_count: steps, total_tokens: tokens, prompt_tokens: tokens - 5, completion_tokens: 5 });

/** Letta's stream through the translator into the turn engine's state, as a turn runs it. */
class View {
  readonly tr = new LettaTranslator("pal");
  readonly state = new TurnState();
  apply(e: unknown): boolean {
    let changed = false;
    for (const t of this.tr.events(e)) changed = this.state.apply(t) || changed;
    return changed;
  }
  get hasOutput(): boolean {
    return this.state.hasOutput;
  }
  render(opts: { final: boolean; durationMs: number }): string {
    if (opts.final) for (const t of this.tr.end()) this.state.apply(t);
    return renderTurn(this.state, { ...opts, working: "⏳ _pal is thinking…_" });
  }
}

function play(events: unknown[]): View {
  const view = new View();
  for (const e of events) view.apply(e);
  return view;
}

test("before any output the reply says the agent is thinking", () => {
  const view = play([ping]);
  assert.equal(view.render({ final: false, durationMs: 0 }), "⏳ _pal is thinking…_");
  assert.equal(view.hasOutput, false);
});

test("token deltas of one message join into one block; the footer has steps, tokens and time", () => {
  const view = play([ping, text("m1", "Echo"), text("m1", ": he"), text("m1", "llo"), stop(), usage(1, 1525)]);
  assert.equal(view.render({ final: false, durationMs: 100 }), "Echo: hello");
  assert.equal(view.render({ final: true, durationMs: 1234 }), "Echo: hello\n\n— letta pal · 1 step · 1,525 tokens · 1.2s");
});

test("reasoning is a quoted 💭 line before the text it led to", () => {
  const view = play([reasoning("m1", "Thinking abou"), reasoning("m1", "t tea"), text("m1", "Tea!"), stop(), usage(1, 10)]);
  assert.equal(view.render({ final: true, durationMs: 0 }), "> 💭 _Thinking about tea_\n\nTea!\n\n— letta pal · 1 step · 10 tokens · 0.0s");
});

test("a tool call is one compact line: running, then ✓ or ✗ with the error", () => {
  const call = (id: string, name: string | undefined, callId: string | undefined, args = "") => ({
    id,
    message_type: "tool_call_message",
    tool_call: { name, arguments: args, tool_call_id: callId },
  });
  const ret = (callId: string, status: "success" | "error", out: string) => ({ id: `r-${callId}`, message_type: "tool_return_message", tool_call_id: callId, status, tool_return: out });
  const view = new View();
  view.apply(call("t1", "memory_insert", "call_1"));
  view.apply(call("t1", undefined, undefined, '{"label":"human"}'));
  assert.equal(view.render({ final: false, durationMs: 0 }), "🔧 memory_insert …");
  view.apply(ret("call_1", "success", "ok"));
  view.apply(call("t2", "conversation_search", "call_2"));
  view.apply(ret("call_2", "error", "Block field human does not exist\nTraceback …"));
  view.apply(text("m3", "Done."));
  view.apply(stop());
  view.apply(usage(3, 99));
  assert.equal(
    view.render({ final: true, durationMs: 2000 }),
    "🔧 memory_insert ✓\n🔧 conversation_search ✗ Block field human does not exist…\n\nDone.\n\n— letta pal · 3 steps · 99 tokens · 2.0s",
  );
});

test("a stop other than end_turn is said plainly; an error message is shown with its detail", () => {
  assert.equal(
    play([text("m1", "Partial"), stop("max_steps"), usage(50, 1000)]).render({ final: true, durationMs: 0 }),
    "Partial\n\n⚠️ The agent stopped at its step limit before it finished.\n\n— letta pal · 50 steps · 1,000 tokens · 0.0s",
  );
  assert.equal(play([text("m1", "x"), stop("tool_rule")]).render({ final: true, durationMs: 0 }), "x\n\n⚠️ Letta stopped: tool rule.\n\n— letta pal · 0.0s");
  const failed = play([
    ping,
    stop("llm_api_error"),
    { message_type: "error_message", run_id: "run-1", error_type: "llm_error", message: "An error occurred with the LLM request.", detail: "INVALID_ARGUMENT: Bad request" },
  ]);
  assert.equal(failed.render({ final: true, durationMs: 0 }), "⚠️ **Letta error:** An error occurred with the LLM request. — INVALID_ARGUMENT: Bad request\n\n— letta pal · 0.0s");
});

test("unknown and malformed events change nothing", () => {
  const view = new View();
  for (const e of [null, 42, "x", {}, { message_type: "something_new" }, { message_type: "assistant_message", id: "m", content: "" }]) assert.equal(view.apply(e), false);
  assert.equal(view.hasOutput, false);
});

test("assistant content given as parts is read as text", () => {
  const view = play([{ id: "m1", message_type: "assistant_message", content: [{ type: "text", text: "Hi " }, { type: "text", text: "there" }] }]);
  assert.equal(view.render({ final: false, durationMs: 0 }), "Hi there");
});

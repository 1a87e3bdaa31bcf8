import { test } from "node:test";
import assert from "node:assert/strict";
import type { Event, ToolPart } from "@opencode-ai/sdk/v2";
import { OpencodeTranslator } from "../../src/opencode/events.ts";
import { toolInfo } from "../../src/opencode/tool-line.ts";
import type { TurnEvent } from "../../src/turns/events.ts";
import { renderTurn, toolLine as engineToolLine } from "../../src/turns/render.ts";
import { TurnState } from "../../src/turns/state.ts";

const toolLine = (part: ToolPart, ws: string): string => engineToolLine(toolInfo(part, ws));

/** OpenCode's events through the translator into the engine's state, as the turn runner does. */
class TurnView {
  readonly tr: OpencodeTranslator;
  readonly state = new TurnState();
  constructor(ws: string, parent: string) {
    this.tr = new OpencodeTranslator(ws, parent);
  }
  private fold(events: TurnEvent[]): boolean {
    let changed = false;
    for (const e of events) changed = this.state.apply(e) || changed;
    return changed;
  }
  apply(e: Event): boolean {
    return this.fold(this.tr.apply(e));
  }
  load(m: Parameters<OpencodeTranslator["load"]>[0]): void {
    this.fold(this.tr.load(m));
  }
  render(opts: { final: boolean; durationMs: number }): string {
    if (opts.final && this.tr.interrupted()) this.fold([{ type: "end", reason: "interrupted" }]);
    return renderTurn(this.state, { ...opts, working: "⏳ Working…" });
  }
}

const ws = "/work/ws";
const tool = (toolName: string, state: ToolPart["state"]): ToolPart => ({ id: "p1", sessionID: "s", messageID: "m", type: "tool", callID: "c", tool: toolName, state });

test("tool calls are one compact line through their states", () => {
  const input = { filePath: "/work/ws/src/app.ts", content: "x" };
  assert.equal(toolLine(tool("write", { status: "pending", input: {}, raw: "" }), ws), "✏️ write ⏳");
  assert.equal(toolLine(tool("write", { status: "running", input, time: { start: 1 } }), ws), "✏️ write src/app.ts …");
  assert.equal(toolLine(tool("write", { status: "completed", input, output: "", title: "", metadata: {}, time: { start: 1, end: 2 } }), ws), "✏️ write src/app.ts ✓");
  const bash = { command: "npm test", description: "run" };
  assert.equal(toolLine(tool("bash", { status: "completed", input: bash, output: "", title: "", metadata: { exit: 1 }, time: { start: 1, end: 2 } }), ws), "▶️ bash `npm test` ✗ exit 1");
  assert.equal(toolLine(tool("bash", { status: "error", input: bash, error: "The user rejected permission\nmore", time: { start: 1, end: 2 } }), ws), "▶️ bash `npm test` ✗ The user rejected permission…");
  assert.equal(toolLine(tool("grep", { status: "completed", input: { pattern: "TODO" }, output: "", title: "", metadata: {}, time: { start: 1, end: 2 } }), ws), "🔍 grep TODO ✓");
  assert.equal(toolLine(tool("mystery", { status: "running", input: {}, time: { start: 1 } }), ws), "🔧 mystery …");
});

test("the todo list is shown under its tool line", () => {
  const todos = [{ content: "write tests", status: "completed" }, { content: "fix bug", status: "in_progress" }, { content: "ship", status: "pending" }];
  assert.equal(
    toolLine(tool("todowrite", { status: "completed", input: { todos }, output: "", title: "", metadata: {}, time: { start: 1, end: 2 } }), ws),
    "📝 todowrite ✓\n  ☑ write tests\n  ▸ fix bug\n  ☐ ship",
  );
});

test("a turn renders text, reasoning and tools in order; the prompt's own text is not shown", () => {
  const view = new TurnView(ws, "msg_user");
  const ev = (e: unknown): Event => e as Event;
  view.apply(ev({ type: "message.updated", properties: { sessionID: "s", info: { id: "msg_user", role: "user" } } }));
  assert.equal(view.apply(ev({ type: "message.part.updated", properties: { sessionID: "s", part: { id: "u1", messageID: "msg_user", type: "text", text: "[Alice] hi" } } })), false);
  view.apply(ev({ type: "message.updated", properties: { sessionID: "s", info: { id: "msg_a", role: "assistant", parentID: "msg_user", providerID: "p", modelID: "m", tokens: { input: 10, output: 5, reasoning: 0, cache: { read: 0, write: 0 } }, cost: 0, time: { created: 1 } } } }));
  view.apply(ev({ type: "message.part.updated", properties: { sessionID: "s", part: { id: "r1", messageID: "msg_a", type: "reasoning", text: "thinking hard", time: { start: 1 } } } }));
  view.apply(ev({ type: "message.part.updated", properties: { sessionID: "s", part: { id: "t1", messageID: "msg_a", type: "text", text: "" } } }));
  view.apply(ev({ type: "message.part.delta", properties: { sessionID: "s", messageID: "msg_a", partID: "t1", field: "text", delta: "Hello" } }));
  view.apply(ev({ type: "message.part.delta", properties: { sessionID: "s", messageID: "msg_a", partID: "t1", field: "text", delta: " world" } }));
  view.apply(ev({ type: "message.part.updated", properties: { sessionID: "s", part: { id: "x1", messageID: "msg_a", type: "patch", hash: "h", files: ["/work/ws/a.ts"] } } }));
  assert.equal(view.render({ final: false, durationMs: 0 }), "> 💭 _thinking hard_\n\nHello world");
  view.apply(ev({ type: "message.updated", properties: { sessionID: "s", info: { id: "msg_a", role: "assistant", parentID: "msg_user", providerID: "p", modelID: "m", tokens: { input: 10, output: 5, reasoning: 0, cache: { read: 0, write: 0 } }, cost: 0, finish: "stop", time: { created: 1, completed: 2 } } } }));
  assert.equal(view.render({ final: true, durationMs: 1500 }), "> 💭 _thinking hard_\n\nHello world\n\n— p/m · 15 tokens · 1.5s · changed a.ts");
});

test("an assistant message that never finished is marked as cut short", () => {
  const view = new TurnView(ws, "u");
  view.load([
    { info: { id: "u", role: "user" } as never, parts: [] },
    { info: { id: "a", role: "assistant", parentID: "u", providerID: "p", modelID: "m", tokens: { input: 1, output: 1, reasoning: 0, cache: { read: 0, write: 0 } }, cost: 0, time: { created: 1 } } as never, parts: [{ id: "t", messageID: "a", sessionID: "s", type: "text", text: "partial" }] },
  ]);
  assert.match(view.render({ final: true, durationMs: 10 }), /^partial\n\n⚠️ The answer stopped before it was complete/);
});

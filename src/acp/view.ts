import type { PlanEntry, SessionUpdate, ToolCallContent, ToolCallStatus, ToolKind } from "@agentclientprotocol/sdk";

// What one ACP turn looks like in Matrix, built from the agent's `session/update`s: its text as
// it streams, thoughts as a quoted 💭 line, each tool call as one compact line (like OpenCode's),
// the plan as a checklist, and a footer once the turn is over. Pure: replayed in unit tests
// from recorded sessions of real agents.

type Block =
  | { kind: "text"; text: string }
  | { kind: "thought"; text: string }
  | { kind: "tool"; id: string; name: string; toolKind: ToolKind | undefined; title: string; input: Record<string, unknown>; status: ToolCallStatus; error: string | undefined; exit: number | undefined };

const kindIcons: Partial<Record<ToolKind, string>> = {
  read: "📖", edit: "✏️", delete: "🗑️", move: "📦", search: "🔍", execute: "▶️", think: "💭", fetch: "🌐",
};
// Agents that name their tools the way OpenCode does get OpenCode's icons.
const nameIcons: Record<string, string> = {
  write: "✏️", edit: "✏️", patch: "✏️", read: "📖", bash: "▶️", glob: "🔍", grep: "🔍", list: "📂", webfetch: "🌐", todowrite: "📝", task: "🤖",
};

const stopNotes: Record<string, string> = {
  max_tokens: "⚠️ The answer was cut off at the model's token limit.",
  max_turn_requests: "⚠️ The agent stopped at its limit of model requests for one turn.",
  refusal: "⚠️ The agent refused to go on.",
  cancelled: "⏹️ Stopped.",
};

export const clip = (s: string, n: number): string => {
  const line = (s.split("\n").find((l) => l.trim()) ?? "").trim();
  return line.length > n || s.trim().includes("\n") ? `${line.slice(0, n).trimEnd()}…` : line;
};

const record = (v: unknown): Record<string, unknown> => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const str = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);

function contentText(content: ReadonlyArray<ToolCallContent> | null | undefined): string {
  return (content ?? []).map((c) => (c.type === "content" && c.content.type === "text" ? c.content.text : "")).join("");
}

export class AcpTurnView {
  readonly agentName: string;
  private readonly blocks: Block[] = [];
  private readonly tools = new Map<string, Extract<Block, { kind: "tool" }>>();
  private plan: PlanEntry[] = [];
  stopReason: string | undefined;
  tokens: number | undefined;
  error: string | undefined;
  hasOutput = false;

  constructor(agentName: string) {
    this.agentName = agentName;
  }

  /** The name a tool call started under (OpenCode titles it `bash`, then retitles it with the command). */
  toolName(toolCallId: string): string | undefined {
    return this.tools.get(toolCallId)?.name;
  }

  /** Applies one update; returns whether anything visible changed. */
  apply(u: SessionUpdate): boolean {
    switch (u.sessionUpdate) {
      case "agent_message_chunk":
      case "agent_thought_chunk": {
        if (u.content.type !== "text" || !u.content.text) return false;
        const kind = u.sessionUpdate === "agent_message_chunk" ? "text" : "thought";
        const last = this.blocks[this.blocks.length - 1];
        if (last?.kind === kind) last.text += u.content.text;
        else this.blocks.push({ kind, text: u.content.text });
        this.hasOutput = true;
        return true;
      }
      case "tool_call": {
        const known = this.tools.get(u.toolCallId);
        if (known) return this.updateTool(known, u);
        const block: Block = {
          kind: "tool", id: u.toolCallId, name: u.name ?? u.title, toolKind: u.kind, title: u.title, input: record(u.rawInput), status: u.status ?? "pending", error: undefined, exit: undefined,
        };
        this.updateTool(block, u);
        this.tools.set(u.toolCallId, block);
        this.blocks.push(block);
        this.hasOutput = true;
        return true;
      }
      case "tool_call_update": {
        const known = this.tools.get(u.toolCallId);
        return known ? this.updateTool(known, u) : false;
      }
      case "plan":
        this.plan = u.entries;
        this.hasOutput = true;
        return true;
      default:
        return false;
    }
  }

  private updateTool(t: Extract<Block, { kind: "tool" }>, u: Extract<SessionUpdate, { sessionUpdate: "tool_call" | "tool_call_update" }>): boolean {
    const before = JSON.stringify(t);
    if (u.kind) t.toolKind = u.kind;
    if (u.title) t.title = u.title;
    if (u.status) t.status = u.status;
    const input = record(u.rawInput);
    if (Object.keys(input).length > 0) t.input = { ...t.input, ...input };
    const exit = record(record(u.rawOutput).metadata).exit;
    if (typeof exit === "number") t.exit = exit;
    if (t.status === "failed") t.error = clip(contentText(u.content) || str(record(u.rawOutput).error) || t.error || "", 80) || undefined;
    return JSON.stringify(t) !== before;
  }

  render(opts: { final: boolean; durationMs: number; note?: string | undefined }): string {
    const out: string[] = [];
    for (const b of this.blocks) {
      const text = renderBlock(b);
      if (text) out.push(text);
    }
    if (this.plan.length > 0) out.push(planText(this.plan));
    if (this.error) out.push(`⚠️ **${this.agentName} error:** ${clip(this.error, 300)}`);
    else if (opts.final && this.stopReason && this.stopReason !== "end_turn") out.push(stopNotes[this.stopReason] ?? `⚠️ The agent stopped: ${this.stopReason.replace(/_/g, " ")}.`);
    if (opts.note) out.push(opts.note);
    if (!opts.final) {
      if (out.length === 0) out.push(`⏳ _${this.agentName} is working…_`);
      return joinBlocks(out);
    }
    if (out.length === 0) out.push("_(no text in the answer)_");
    out.push(this.footer(opts.durationMs));
    return joinBlocks(out);
  }

  footer(durationMs: number): string {
    const parts = [this.agentName];
    if (this.tokens !== undefined) parts.push(`${this.tokens.toLocaleString("en-US")} tokens`);
    parts.push(`${(durationMs / 1000).toFixed(1)}s`);
    return `— ${parts.join(" · ")}`;
  }
}

/** Tool lines in a row stay together; everything else is its own paragraph. */
function joinBlocks(parts: string[]): string {
  let out = "";
  for (const [i, p] of parts.entries()) {
    const tight = i > 0 && isToolLine(parts[i - 1] as string) && isToolLine(p);
    out += i === 0 ? p : tight ? `\n${p}` : `\n\n${p}`;
  }
  return out;
}
const isToolLine = (s: string): boolean => toolLinePattern.test(s);
const toolLinePattern = /^(?:📖|✏️|🗑️|📦|🔍|▶️|💭|🌐|🔧|📂|📝|🤖) \S/u;

function renderBlock(b: Block): string | undefined {
  switch (b.kind) {
    case "text":
      return b.text.trim() || undefined;
    case "thought": {
      const text = b.text.trim();
      if (!text) return undefined;
      const short = text.length > 400 ? `${text.slice(0, 400)}…` : text;
      return short.split("\n").map((l, i) => (i === 0 ? `> 💭 _${l}_` : `> _${l}_`)).join("\n");
    }
    case "tool":
      return toolLine(b);
  }
}

/** `▶️ bash \`echo hi\` ✓`: icon, tool, what it acts on, outcome. */
export function toolLine(t: Extract<Block, { kind: "tool" }>): string {
  const icon = nameIcons[t.name] ?? (t.toolKind ? kindIcons[t.toolKind] : undefined) ?? "🔧";
  const command = str(t.input.command);
  const path = str(t.input.filePath) ?? str(t.input.path) ?? str(t.input.file_path);
  let what = command !== undefined ? `\`${clip(command, 60).replace(/`/g, "'")}\`` : path ?? str(t.input.pattern) ?? str(t.input.url) ?? "";
  if (!what && t.title !== t.name) what = clip(t.title, 60);
  const outcome = t.status === "pending" ? "⏳" : t.status === "in_progress" ? "…" : t.status === "failed" ? `✗ ${t.error ?? ""}`.trimEnd() : t.exit ? `✗ exit ${t.exit}` : "✓";
  return [icon, clip(t.name, 40), what, outcome].filter((s) => s.length > 0).join(" ");
}

function planText(entries: PlanEntry[]): string {
  const lines = entries.map((e) => `  ${e.status === "completed" ? "☑" : e.status === "in_progress" ? "▸" : "☐"} ${clip(e.content, 80)}`);
  return ["📝 plan", ...lines].join("\n");
}

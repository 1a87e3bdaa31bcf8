import type { PlanEntry, ToolInfo } from "./events.ts";
import { codeBlock, tail } from "../render/code-block.ts";
import type { Verbosity } from "./settings.ts";
import type { Block, TurnState } from "./state.ts";

// How every backend's turn reads in Matrix: text as written, reasoning as a quoted 💭 line,
// one compact line per tool call (lines in a row kept together), the plan as a checklist, then
// how it ended and a footer. One pure function of the turn's state, so that OpenCode, Letta
// and ACP agents read alike on a phone and are tested on recorded streams.

export interface RenderOptions {
  final: boolean;
  durationMs: number;
  /** The placeholder while nothing is shown yet: `⏳ Working…`, `⏳ _pal is thinking…_`. */
  working: string;
  /** quiet: the answer and the footer; normal: compact tool lines; verbose: tool outputs and diffs too. */
  verbosity?: Verbosity | undefined;
}

const quietHides = new Set<Block["kind"]>(["tool", "reasoning", "approval"]);

const icons: Record<string, string> = {
  write: "✏️", edit: "✏️", patch: "✏️", multiedit: "✏️", read: "📖", bash: "▶️", glob: "🔍", grep: "🔍", list: "📂",
  webfetch: "🌐", todowrite: "📝", todoread: "📝", task: "🤖", question: "❓", skill: "🧩",
};
// ACP's tool kinds, for agents whose tool names are not OpenCode's.
const kindIcons: Record<string, string> = {
  read: "📖", edit: "✏️", delete: "🗑️", move: "📦", search: "🔍", execute: "▶️", think: "💭", fetch: "🌐",
};
const toolIcons = new Set([...Object.values(icons), ...Object.values(kindIcons), "🔧", "🔐"]);

const stopNotes: Record<string, string> = {
  aborted: "⏹️ Aborted.",
  interrupted: "⚠️ The answer stopped before it was complete (the agent was interrupted). Write a follow-up to continue.",
  stopped: "⏹️ Stopped.",
};

/** The first non-empty line, cut to `n` characters; `…` marks anything left out. */
export function clip(s: string, n: number): string {
  const line = (s.split("\n").find((l) => l.trim()) ?? "").trim();
  return line.length > n || s.trim().includes("\n") ? `${line.slice(0, n).trimEnd()}…` : line;
}

/** `✏️ write src/app.ts ✓`, `▶️ bash \`npm test\` ✗ exit 1`: icon, tool, what it acts on, outcome. */
export function toolLine(t: ToolInfo): string {
  const icon = icons[t.name] ?? (t.kind ? kindIcons[t.kind] : undefined) ?? "🔧";
  const outcome =
    t.status === "pending" ? "⏳" : t.status === "running" ? "…" : t.status === "failed" ? `✗ ${clip(t.error ?? "", 80)}`.trimEnd() : t.exit ? `✗ exit ${t.exit}` : "✓";
  const head = [icon, clip(t.name, 40), t.subject ?? "", outcome].filter((s) => s.length > 0).join(" ");
  return t.detail && t.detail.length > 0 ? [head, ...t.detail].join("\n") : head;
}

export function renderTurn(state: TurnState, opts: RenderOptions): string {
  if (state.rejected !== undefined) return state.rejected;
  const verbosity = opts.verbosity ?? "normal";
  const out: string[] = [];
  for (const b of state.blocks) {
    if (verbosity === "quiet" && quietHides.has(b.kind)) continue;
    const text = renderBlock(b, verbosity === "verbose");
    if (text) out.push(text);
  }
  if (state.plan.length > 0 && verbosity !== "quiet") out.push(planText(state.plan));
  const end = state.end;
  if (end && (end.note || (end.reason !== "done" && end.reason !== "limit"))) out.push(end.note ?? stopNotes[end.reason] ?? "");
  if (state.error) out.push(`⚠️ **${state.error.title}:** ${state.error.message}${state.error.advice ? `\n\n${state.error.advice}` : ""}`);
  if (!opts.final) {
    const r = state.retry;
    if (r) out.push(`⏳ _${r.message.replace(/\.$/, "")}; retry ${r.attempt}${r.of ? ` of ${r.of}` : ""}${r.nextInMs !== undefined ? ` in ${Math.ceil(r.nextInMs / 1000)} s` : ""}…_`);
    else if (out.length === 0) out.push(opts.working);
    return joinBlocks(out);
  }
  if (out.length === 0) out.push("_(no text in the answer)_");
  out.push(footer(state, opts.durationMs));
  return joinBlocks(out);
}

/** `— scripted/scripted-model · 3 steps · 1,234 tokens · $0.0012 · 4.2s · changed a.py`. */
export function footer(state: TurnState, durationMs: number): string {
  const u = state.usage;
  const parts = [u.label ?? "unknown model"];
  if (u.steps !== undefined) parts.push(`${u.steps} ${u.steps === 1 ? "step" : "steps"}`);
  if (u.tokens !== undefined) parts.push(`${u.tokens.toLocaleString("en-US")} tokens`);
  if (u.cost !== undefined && u.cost > 0) parts.push(`$${u.cost.toFixed(4)}`);
  parts.push(`${(durationMs / 1000).toFixed(1)}s`);
  const f = state.files;
  if (f.length > 0) parts.push(`changed ${f.slice(0, 5).join(", ")}${f.length > 5 ? ` +${f.length - 5} more` : ""}`);
  return `— ${parts.join(" · ")}`;
}

function renderBlock(b: Block, verbose: boolean): string | undefined {
  switch (b.kind) {
    case "text":
      return b.text.trim() || undefined;
    case "reasoning": {
      if (b.hidden) return "> 💭 _(reasoning hidden by the model)_";
      const text = b.text.trim();
      if (!text) return undefined;
      const max = verbose ? 4000 : 400;
      const short = text.length > max ? `${text.slice(0, max)}…` : text;
      return short.split("\n").map((l, i) => (i === 0 ? `> 💭 _${l}_` : `> _${l}_`)).join("\n");
    }
    case "tool": {
      const line = toolLine(b.tool);
      if (!verbose) return line;
      // What a tool printed is the agent's (and the world's) text: shown fenced, its end kept.
      if (b.tool.diff?.trim()) return `${line}\n${codeBlock(tail(b.tool.diff, 40, 3000), "diff")}`;
      if (b.tool.output?.trim()) return `${line}\n${codeBlock(tail(b.tool.output, 20, 1500))}`;
      return line;
    }
    case "approval":
      return `🔐 ${b.tool} ${b.state === "asked" ? "needs approval" : b.state === "allowed" ? "allowed" : "denied"}`;
    case "note":
      return b.text;
  }
}

function planText(entries: PlanEntry[]): string {
  const lines = entries.map((e) => `  ${e.status === "completed" ? "☑" : e.status === "in_progress" ? "▸" : "☐"} ${clip(e.content, 80)}`);
  return ["📝 plan", ...lines].join("\n");
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

function isToolLine(s: string): boolean {
  const icon = [...s][0] ?? "";
  const withVariation = s.startsWith(`${icon}\uFE0F`) ? `${icon}\uFE0F` : icon;
  return (toolIcons.has(withVariation) || toolIcons.has(icon)) && !s.startsWith("> ");
}

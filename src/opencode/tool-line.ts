import { relative, isAbsolute } from "node:path";
import type { ToolPart } from "@opencode-ai/sdk/v2";

const icons: Record<string, string> = {
  write: "✏️", edit: "✏️", patch: "✏️", multiedit: "✏️", read: "📖", bash: "▶️", glob: "🔍", grep: "🔍", list: "📂",
  webfetch: "🌐", todowrite: "📝", todoread: "📝", task: "🤖", question: "❓", skill: "🧩",
};

const clip = (s: string, n: number): string => {
  const line = s.split("\n")[0] ?? "";
  return line.length > n || s.includes("\n") ? `${line.slice(0, n).trimEnd()}…` : line;
};

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 ? v : undefined;
}

/** What the tool acts on, in a few words: a path relative to the workspace, a command, a pattern. */
function target(part: ToolPart, workspaceDir: string): string {
  const input = part.state.input;
  const path = str(input.filePath) ?? str(input.path);
  if (path !== undefined) return isAbsolute(path) ? relative(workspaceDir, path) || "." : path;
  const command = str(input.command);
  if (command !== undefined) return `\`${clip(command, 60).replace(/`/g, "'")}\``;
  const other = str(input.pattern) ?? str(input.url) ?? str(input.description) ?? str(input.name);
  return other !== undefined ? clip(other, 60) : "";
}

function outcome(part: ToolPart): string {
  const s = part.state;
  switch (s.status) {
    case "pending":
      return "⏳";
    case "running":
      return "…";
    case "completed": {
      const exit = s.metadata.exit;
      return typeof exit === "number" && exit !== 0 ? `✗ exit ${exit}` : "✓";
    }
    case "error":
      return `✗ ${clip(s.error, 80)}`;
  }
}

interface Todo {
  content?: string;
  status?: string;
}

function todoLines(part: ToolPart): string[] {
  const todos = part.state.input.todos;
  if (!Array.isArray(todos)) return [];
  return (todos as Todo[]).map((t) => {
    const mark = t.status === "completed" ? "☑" : t.status === "in_progress" ? "▸" : "☐";
    return `  ${mark} ${clip(t.content ?? "", 80)}`;
  });
}

/** `✏️ write src/app.ts ✓`, `▶️ bash \`npm test\` ✗ exit 1`: one compact line per tool call. */
export function toolLine(part: ToolPart, workspaceDir: string): string {
  const icon = icons[part.tool] ?? "🔧";
  const what = target(part, workspaceDir);
  const head = [icon, part.tool, what, outcome(part)].filter((s) => s.length > 0).join(" ");
  return part.tool === "todowrite" ? [head, ...todoLines(part)].join("\n") : head;
}

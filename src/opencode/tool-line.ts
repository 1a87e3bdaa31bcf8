import { relative, isAbsolute } from "node:path";
import type { ToolPart } from "@opencode-ai/sdk/v2";
import type { ToolInfo } from "../turns/events.ts";

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

const statuses = { pending: "pending", running: "running", completed: "done", error: "failed" } as const;

/** One OpenCode tool part as the engine shows it: `✏️ write src/app.ts ✓`, `▶️ bash \`npm test\` ✗ exit 1`. */
export function toolInfo(part: ToolPart, workspaceDir: string): ToolInfo {
  const s = part.state;
  const exit = s.status === "completed" ? s.metadata.exit : undefined;
  return {
    name: part.tool,
    subject: target(part, workspaceDir),
    status: statuses[s.status],
    error: s.status === "error" ? s.error : undefined,
    exit: typeof exit === "number" ? exit : undefined,
    detail: part.tool === "todowrite" ? todoLines(part) : undefined,
    output: s.status === "completed" ? s.output : undefined,
    diff: s.status === "completed" && typeof s.metadata.diff === "string" ? s.metadata.diff : undefined,
  };
}

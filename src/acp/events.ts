import type { SessionUpdate, ToolCallContent } from "@agentclientprotocol/sdk";
import type { TurnEvent } from "../turns/events.ts";
import { clip } from "../turns/render.ts";

// Translates an ACP agent's `session/update`s into the turn engine's events. It remembers
// each tool call's name and input, since updates send only what changed (OpenCode titles a
// call `bash`, then retitles it with the command).

const stopNotes: Record<string, string> = {
  max_tokens: "⚠️ The answer was cut off at the model's token limit.",
  max_turn_requests: "⚠️ The agent stopped at its limit of model requests for one turn.",
  refusal: "⚠️ The agent refused to go on.",
};

interface ToolMemo {
  name: string;
  kind: string | undefined;
  title: string;
  input: Record<string, unknown>;
  error: string | undefined;
}

const record = (v: unknown): Record<string, unknown> => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const str = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);

function contentText(content: ReadonlyArray<ToolCallContent> | null | undefined): string {
  return (content ?? []).map((c) => (c.type === "content" && c.content.type === "text" ? c.content.text : "")).join("");
}

const statuses = { pending: "pending", in_progress: "running", completed: "done", failed: "failed" } as const;

export class AcpTranslator {
  private readonly tools = new Map<string, ToolMemo>();
  /** Consecutive chunks of one kind form one block; a new block starts when the kind changes. */
  private block = 0;
  private lastKind: string | undefined;

  /** The name a tool call started under, for its permission request. */
  toolName(toolCallId: string): string | undefined {
    return this.tools.get(toolCallId)?.name;
  }

  events(u: SessionUpdate): TurnEvent[] {
    switch (u.sessionUpdate) {
      case "agent_message_chunk":
      case "agent_thought_chunk": {
        if (u.content.type !== "text" || !u.content.text) return [];
        const kind = u.sessionUpdate === "agent_message_chunk" ? "text" : "reasoning";
        if (this.lastKind !== kind) this.block++;
        this.lastKind = kind;
        return [{ type: kind, id: `b${this.block}`, delta: u.content.text }];
      }
      case "tool_call":
      case "tool_call_update": {
        let t = this.tools.get(u.toolCallId);
        if (!t) {
          if (u.sessionUpdate === "tool_call_update") return [];
          t = { name: u.name ?? u.title, kind: undefined, title: u.title, input: {}, error: undefined };
          this.tools.set(u.toolCallId, t);
          this.lastKind = "tool";
        }
        if (u.kind) t.kind = u.kind;
        if (u.title) t.title = u.title;
        const input = record(u.rawInput);
        if (Object.keys(input).length > 0) t.input = { ...t.input, ...input };
        const exit = record(record(u.rawOutput).metadata).exit;
        const status = u.status ? statuses[u.status] : u.sessionUpdate === "tool_call" ? "pending" : undefined;
        if (u.status === "failed") t.error = clip(contentText(u.content) || str(record(u.rawOutput).error) || t.error || "", 80) || undefined;
        const printed = contentText(u.content) || str(record(u.rawOutput).output);
        return [{ type: "tool", id: u.toolCallId, tool: { name: t.name, kind: t.kind, subject: subject(t), status, error: t.error, exit: typeof exit === "number" ? exit : undefined, output: printed } }];
      }
      case "plan":
        return [{ type: "plan", entries: u.entries.map((e) => ({ content: e.content, status: e.status })) }];
      default:
        return [];
    }
  }

  /** The end of `session/prompt`: why it stopped and what it cost. */
  end(agentName: string, stopReason: string, usage: { totalTokens?: unknown } | undefined): TurnEvent[] {
    const out: TurnEvent[] = [{ type: "usage", usage: { label: agentName, tokens: typeof usage?.totalTokens === "number" ? usage.totalTokens : undefined } }];
    if (stopReason === "end_turn") out.push({ type: "end", reason: "done" });
    else if (stopReason === "cancelled") out.push({ type: "end", reason: "stopped" });
    else out.push({ type: "end", reason: "limit", note: stopNotes[stopReason] ?? `⚠️ The agent stopped: ${stopReason.replace(/_/g, " ")}.` });
    return out;
  }
}

/** What the call acts on: the command, else a path, pattern or URL, else its title. */
function subject(t: ToolMemo): string {
  const command = str(t.input.command);
  const path = str(t.input.filePath) ?? str(t.input.path) ?? str(t.input.file_path);
  const what = command !== undefined ? `\`${clip(command, 60).replace(/`/g, "'")}\`` : path ?? str(t.input.pattern) ?? str(t.input.url) ?? "";
  return what || (t.title !== t.name ? clip(t.title, 60) : "");
}

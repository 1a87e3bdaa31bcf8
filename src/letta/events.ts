import type { TurnEvent } from "../turns/events.ts";
import { clip } from "../turns/render.ts";
import type { ApprovalCall } from "./approval-store.ts";

// Translates the events of a Letta answer stream (0.16.8: assistant, reasoning, tool call and
// return, approval request, stop reason, usage, error) into the turn engine's events.

const stopNotes: Record<string, string> = {
  max_steps: "⚠️ The agent stopped at its step limit before it finished.",
  max_tokens_exceeded: "⚠️ The answer was cut off at the model's token limit.",
  requires_approval: "⏸️ Waiting for approval: the agent asks to run a tool (the request is below).",
  insufficient_credits: "⚠️ Letta stopped: insufficient credits.",
  context_window_overflow_in_system_prompt: "⚠️ Letta stopped: the agent's system prompt overflows the model's context window.",
};

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((p: unknown) => (p && typeof p === "object" && "text" in p && typeof p.text === "string" ? p.text : "")).join("");
}

interface ToolCallDelta {
  name?: string | null;
  tool_call_id?: string | null;
  arguments?: string | null;
}

/** What a turn that stopped for approval asks: Letta's request message, its run, the calls. */
export interface PendingApproval {
  requestMessageId: string;
  runId: string | undefined;
  calls: ApprovalCall[];
}

interface ToolMemo {
  key: string;
  name: string;
  callId: string | undefined;
  running: boolean;
}

export class LettaTranslator {
  readonly label: string;
  stopReason: string | undefined;
  steps: number | undefined;
  tokens: number | undefined;
  /** An error Letta reported inside the stream (the model failed, a tool broke the loop). */
  error: string | undefined;
  private readonly tools: ToolMemo[] = [];
  private readonly seen = new Set<string>();
  /** The calls of the approval request, put together from its deltas (name and id first, then the arguments). */
  private approval: PendingApproval | undefined;

  constructor(agentName: string) {
    this.label = `letta ${agentName}`;
  }

  events(event: unknown): TurnEvent[] {
    if (!event || typeof event !== "object") return [];
    const e = event as Record<string, unknown> & { message_type?: string; id?: string };
    const key = `${e.message_type}:${e.id ?? ""}`;
    switch (e.message_type) {
      case "assistant_message": {
        const delta = textOf(e.content);
        return delta ? [{ type: "text", id: key, delta }] : [];
      }
      case "reasoning_message":
        return typeof e.reasoning === "string" && e.reasoning ? [{ type: "reasoning", id: key, delta: e.reasoning }] : [];
      case "hidden_reasoning_message":
        return [{ type: "reasoning", id: key, hidden: true }];
      case "tool_call_message": {
        const calls = e.tool_calls;
        const call = (e.tool_call ?? (Array.isArray(calls) ? calls[0] : calls) ?? {}) as ToolCallDelta;
        let t = this.tools.find((m) => m.key === key);
        if (!t) {
          t = { key, name: call.name || "tool", callId: call.tool_call_id ?? undefined, running: true };
          this.tools.push(t);
          return [{ type: "tool", id: key, tool: { name: t.name, status: "running" } }];
        }
        if (!t.callId && call.tool_call_id) t.callId = call.tool_call_id;
        if (call.name && t.name === "tool") t.name = call.name;
        return [{ type: "tool", id: key, tool: { name: t.name } }];
      }
      case "tool_return_message": {
        const callId = typeof e.tool_call_id === "string" ? e.tool_call_id : undefined;
        const t =
          this.tools.find((m) => callId !== undefined && m.callId === callId) ??
          this.tools.find((m) => m.running && m.name === e.name) ??
          this.tools.find((m) => m.running);
        if (!t) return [];
        t.running = false;
        const failed = e.status === "error";
        const error = failed ? clip(typeof e.tool_return === "string" ? e.tool_return : JSON.stringify(e.tool_return ?? ""), 80) : undefined;
        const output = typeof e.tool_return === "string" ? e.tool_return : undefined;
        return [{ type: "tool", id: t.key, tool: { status: failed ? "failed" : "done", error, output } }];
      }
      case "approval_request_message": {
        const deltas = (Array.isArray(e.tool_calls) ? e.tool_calls : [e.tool_calls ?? e.tool_call ?? {}]) as ToolCallDelta[];
        this.approval ??= { requestMessageId: e.id ?? "", runId: typeof e.run_id === "string" ? e.run_id : undefined, calls: [] };
        for (const d of deltas) this.addApprovalDelta(d);
        if (this.seen.has(key)) return [];
        this.seen.add(key);
        return [{ type: "approval", id: key, tool: deltas[0]?.name ?? "a tool", state: "asked" }];
      }
      case "stop_reason":
        this.stopReason = typeof e.stop_reason === "string" ? e.stop_reason : undefined;
        return [];
      case "usage_statistics":
        if (typeof e.step_count === "number") this.steps = e.step_count;
        if (typeof e.total_tokens === "number") this.tokens = e.total_tokens;
        return [{ type: "usage", usage: { label: this.label, steps: this.steps, tokens: this.tokens } }];
      case "error_message":
        return this.fail([e.message, e.detail].filter((s) => typeof s === "string" && s).join(" — "));
      default:
        return [];
    }
  }

  private addApprovalDelta(d: ToolCallDelta): void {
    const calls = (this.approval as PendingApproval).calls;
    const id = d.tool_call_id ?? calls[calls.length - 1]?.id;
    if (!id) return;
    let call = calls.find((c) => c.id === id);
    if (!call) calls.push((call = { id, name: d.name ?? "", arguments: "" }));
    if (d.name && !call.name) call.name = d.name;
    if (d.arguments) call.arguments += d.arguments;
  }

  /** The request the turn stopped for, once Letta said so (stop reason requires_approval). */
  pendingApproval(): PendingApproval | undefined {
    const a = this.approval;
    if (this.stopReason !== "requires_approval" || this.error !== undefined || !a || a.calls.length === 0) return undefined;
    return a.requestMessageId ? a : { ...a, requestMessageId: (a.calls[0] as ApprovalCall).id };
  }

  /**
   * A turn that continues after an answer starts with the calls it answered: the approved ones
   * run, and their returns (which come without a call message) update these lines.
   */
  answered(calls: ApprovalCall[], approve: boolean): TurnEvent[] {
    const out: TurnEvent[] = [];
    for (const c of calls) {
      out.push({ type: "approval", id: `answer:${c.id}`, tool: c.name || "tool", state: approve ? "allowed" : "denied" });
      if (!approve) continue;
      const key = `approved:${c.id}`;
      this.tools.push({ key, name: c.name || "tool", callId: c.id, running: true });
      out.push({ type: "tool", id: key, tool: { name: c.name || "tool", status: "running" } });
    }
    return out;
  }

  /** An error of the turn (in the stream, or the connection's): shown once, the first one wins. */
  fail(message: string): TurnEvent[] {
    if (this.error !== undefined) return [];
    this.error = message;
    // Letta takes nothing while the agent waits for an answer to its approval request (HTTP 409).
    const advice = /waiting for approval/i.test(message) ? "Answer the agent's pending approval request first (✅ or ❌ on it), then send this message again." : undefined;
    return [{ type: "error", title: "Letta error", message: clip(message, 300), advice }];
  }

  /**
   * A finished run as Letta kept it (after a restart, read instead of the lost stream): its
   * messages are those of the stream, each whole. Becomes one snapshot (what was streamed before
   * the restart is matched by message id, and never shown shorter) and the run's usage.
   */
  record(run: { messages: unknown[]; stopReason: string | undefined; steps: number | undefined; tokens: number | undefined }): TurnEvent[] {
    const blocks = new Map<string, Extract<TurnEvent, { type: "snapshot" }>["blocks"][number]>();
    const others: TurnEvent[] = [];
    for (const m of run.messages) {
      for (const e of this.events(m)) {
        if (e.type === "text" || e.type === "reasoning") {
          const known = blocks.get(e.id);
          const text = (known && known.type === e.type ? (known.text ?? "") : "") + (e.delta ?? e.text ?? "");
          blocks.set(e.id, e.type === "text" ? { type: "text", id: e.id, text } : { type: "reasoning", id: e.id, text, hidden: e.hidden });
        } else if (e.type === "tool") {
          const known = blocks.get(e.id);
          blocks.set(e.id, { type: "tool", id: e.id, tool: { ...(known?.type === "tool" ? known.tool : {}), ...e.tool } });
        } else others.push(e);
      }
    }
    this.stopReason = run.stopReason;
    if (run.steps !== undefined) this.steps = run.steps;
    if (run.tokens !== undefined) this.tokens = run.tokens;
    return [{ type: "snapshot", blocks: [...blocks.values()] }, ...others, { type: "usage", usage: { label: this.label, steps: this.steps, tokens: this.tokens } }];
  }

  /** How the turn ended, once the stream is over. */
  end(): TurnEvent[] {
    const out: TurnEvent[] = [{ type: "usage", usage: { label: this.label } }];
    const r = this.stopReason;
    if (this.error !== undefined || r === undefined || r === "end_turn") out.push({ type: "end", reason: "done" });
    else if (r === "cancelled") out.push({ type: "end", reason: "aborted", note: "⏹️ The run was cancelled." });
    else out.push({ type: "end", reason: "limit", note: stopNotes[r] ?? `⚠️ Letta stopped: ${r.replace(/_/g, " ")}.` });
    return out;
  }
}

import { APIError } from "@letta-ai/letta-client";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { SplitLiveMessage, attachAnswerFile } from "../render/split-live-message.ts";
import { describeLettaError, type LettaApi, type LettaStream, type RetryNotice } from "./api.ts";
import type { LettaTurnRow, LettaTurnStore } from "./store.ts";

type Block =
  | { kind: "text"; text: string }
  | { kind: "reasoning"; text: string }
  | { kind: "hidden" }
  | { kind: "tool"; name: string; callId: string | undefined; status: "running" | "success" | "error"; error: string | undefined }
  | { kind: "approval"; name: string };

export interface LettaRenderOptions {
  final: boolean;
  durationMs: number;
}

const clip = (s: string, n: number): string => {
  const line = (s.split("\n").find((l) => l.trim()) ?? "").trim();
  return line.length > n || s.trim().includes("\n") ? `${line.slice(0, n).trimEnd()}…` : line;
};

const stopNotes: Record<string, string> = {
  max_steps: "⚠️ The agent stopped at its step limit before it finished.",
  max_tokens_exceeded: "⚠️ The answer was cut off at the model's token limit.",
  requires_approval: "⏸️ The agent asks for approval to run a tool; approving from Matrix is not supported yet.",
  cancelled: "⏹️ The run was cancelled.",
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
}

/**
 * What one Letta turn looks like, built from the events of its answer stream: assistant text,
 * reasoning as a quoted 💭 line, each tool call as one compact line, and a footer with the
 * agent, steps, tokens and time once the turn is over.
 */
export class LettaTurnView {
  readonly agentName: string;
  private readonly blocks: Block[] = [];
  private readonly byKey = new Map<string, Block>();
  stopReason: string | undefined;
  steps: number | undefined;
  tokens: number | undefined;
  /** An error Letta reported inside the stream (the model failed, a tool broke the loop). */
  error: string | undefined;
  /** Whether any agent output (text, reasoning, tool call) has arrived. */
  hasOutput = false;

  constructor(agentName: string) {
    this.agentName = agentName;
  }

  /** Applies one stream event; returns whether anything visible changed. */
  apply(event: unknown): boolean {
    if (!event || typeof event !== "object") return false;
    const e = event as Record<string, unknown> & { message_type?: string; id?: string };
    const key = `${e.message_type}:${e.id ?? ""}`;
    switch (e.message_type) {
      case "assistant_message":
        return this.appendText("text", key, textOf(e.content));
      case "reasoning_message":
        return this.appendText("reasoning", key, typeof e.reasoning === "string" ? e.reasoning : "");
      case "hidden_reasoning_message":
        if (this.byKey.has(key)) return false;
        this.add(key, { kind: "hidden" });
        return true;
      case "tool_call_message": {
        const calls = e.tool_calls;
        const call = (e.tool_call ?? (Array.isArray(calls) ? calls[0] : calls) ?? {}) as ToolCallDelta;
        const known = this.byKey.get(key);
        if (known?.kind === "tool") {
          let changed = false;
          if (!known.callId && call.tool_call_id) known.callId = call.tool_call_id;
          if (call.name && known.name === "tool") {
            known.name = call.name;
            changed = true;
          }
          return changed;
        }
        this.add(key, { kind: "tool", name: call.name || "tool", callId: call.tool_call_id ?? undefined, status: "running", error: undefined });
        return true;
      }
      case "tool_return_message": {
        const callId = typeof e.tool_call_id === "string" ? e.tool_call_id : undefined;
        const tools = this.blocks.filter((b): b is Extract<Block, { kind: "tool" }> => b.kind === "tool");
        const tool =
          tools.find((t) => callId !== undefined && t.callId === callId) ??
          tools.find((t) => t.status === "running" && t.name === e.name) ??
          tools.find((t) => t.status === "running");
        if (!tool) return false;
        tool.status = e.status === "error" ? "error" : "success";
        if (tool.status === "error") tool.error = clip(typeof e.tool_return === "string" ? e.tool_return : JSON.stringify(e.tool_return ?? ""), 80);
        return true;
      }
      case "approval_request_message": {
        if (this.byKey.has(key)) return false;
        const call = (e.tool_call ?? {}) as ToolCallDelta;
        this.add(key, { kind: "approval", name: call.name ?? "a tool" });
        return true;
      }
      case "stop_reason":
        this.stopReason = typeof e.stop_reason === "string" ? e.stop_reason : undefined;
        return false;
      case "usage_statistics":
        if (typeof e.step_count === "number") this.steps = e.step_count;
        if (typeof e.total_tokens === "number") this.tokens = e.total_tokens;
        return false;
      case "error_message":
        this.error = [e.message, e.detail].filter((s) => typeof s === "string" && s).join(" — ");
        return true;
      default:
        return false;
    }
  }

  private appendText(kind: "text" | "reasoning", key: string, delta: string): boolean {
    if (!delta) return false;
    const block = this.byKey.get(key);
    if (block && (block.kind === "text" || block.kind === "reasoning")) block.text += delta;
    else this.add(key, { kind, text: delta });
    return true;
  }

  private add(key: string, block: Block): void {
    this.byKey.set(key, block);
    this.blocks.push(block);
    this.hasOutput = true;
  }

  render(opts: LettaRenderOptions & { note?: string | undefined }): string {
    const out: string[] = [];
    for (const b of this.blocks) {
      const text = renderBlock(b);
      if (text) out.push(text);
    }
    if (this.error) out.push(`⚠️ **Letta error:** ${clip(this.error, 300)}`);
    else if (opts.final && this.stopReason && stopNotes[this.stopReason]) out.push(stopNotes[this.stopReason] as string);
    else if (opts.final && this.stopReason && this.stopReason !== "end_turn") out.push(`⚠️ Letta stopped: ${this.stopReason.replace(/_/g, " ")}.`);
    if (opts.note) out.push(opts.note);
    if (!opts.final) {
      if (out.length === 0) out.push(`⏳ _${this.agentName} is thinking…_`);
      return out.join("\n\n");
    }
    if (out.length === 0) out.push("_(no text in the answer)_");
    out.push(this.footer(opts.durationMs));
    return out.join("\n\n");
  }

  footer(durationMs: number): string {
    const parts = [`letta ${this.agentName}`];
    if (this.steps !== undefined) parts.push(`${this.steps} ${this.steps === 1 ? "step" : "steps"}`);
    if (this.tokens !== undefined) parts.push(`${this.tokens.toLocaleString("en-US")} tokens`);
    parts.push(`${(durationMs / 1000).toFixed(1)}s`);
    return `— ${parts.join(" · ")}`;
  }
}

function renderBlock(b: Block): string | undefined {
  switch (b.kind) {
    case "text":
      return b.text.trim() || undefined;
    case "reasoning": {
      const text = b.text.trim();
      if (!text) return undefined;
      const short = text.length > 400 ? `${text.slice(0, 400)}…` : text;
      return short.split("\n").map((l, i) => (i === 0 ? `> 💭 _${l}_` : `> _${l}_`)).join("\n");
    }
    case "hidden":
      return "> 💭 _(reasoning hidden by the model)_";
    case "tool":
      return `🔧 ${b.name} ${b.status === "running" ? "…" : b.status === "success" ? "✓" : `✗ ${b.error ?? ""}`.trimEnd()}`;
    case "approval":
      return `🔐 ${b.name} needs approval`;
  }
}

export interface TurnJob {
  row: LettaTurnRow;
  agentId: string;
  agentName: string;
  /** What is sent to the agent (attributed: "[Alice] …"). */
  text: string;
  target: ThreadTarget;
}

export interface TurnDeps {
  api: LettaApi;
  sender: MatrixSender;
  turns: LettaTurnStore;
  log: Logger;
  editWindowMs: number;
  timeoutMs: number;
}

export interface TurnOutcome {
  status: "done" | "failed";
  /** ms from sending to the first agent output. */
  firstOutputMs: number | undefined;
  totalMs: number;
  replyId: string | null;
}

/**
 * Runs one turn: posts the reply at once, sends the message (retrying only while Letta cannot
 * have processed it), streams the answer into the reply with coalesced edits, and ends with
 * the exact final text. A failure before the answer began is one line.
 */
export async function runTurn(deps: TurnDeps, job: TurnJob, stop: AbortSignal): Promise<TurnOutcome> {
  const { row } = job;
  const t0 = Date.now();
  const view = new LettaTurnView(job.agentName);
  const live = new SplitLiveMessage({
    sender: deps.sender,
    target: job.target,
    windowMs: deps.editWindowMs,
    log: deps.log,
    eventId: row.replyEventId,
    onPosted: (id) => deps.turns.setReply(row.id, id),
    attach: attachAnswerFile(deps.sender, job.target),
  });
  live.update(view.render({ final: false, durationMs: 0 }));

  const abort = new AbortController();
  const onStop = (): void => abort.abort();
  stop.addEventListener("abort", onStop, { once: true });
  let firstOutputAt: number | undefined;
  let idle = false;
  let brokeOff: string | undefined;
  let stream: LettaStream | undefined;
  let failure: string | undefined;
  const onRetry = (n: RetryNotice): void => {
    const why = describeLettaError(n.error, deps.api.baseUrl).replace(/\.$/, "");
    live.update(`⏳ _${why}; retry ${n.attempt} of ${n.of} in ${(n.delayMs / 1000).toFixed(1)} s…_`);
  };
  let acceptedMs: number | undefined;
  try {
    stream = await deps.api.sendStreaming(job.agentId, job.text, row.otid, { signal: abort.signal, onRetry });
    acceptedMs = Date.now() - t0;
  } catch (err) {
    failure = stop.aborted ? "⏹️ Not sent: the bot is shutting down." : `⚠️ ${describeLettaError(err, deps.api.baseUrl)}`;
  }

  if (stream) {
    let lastEventAt = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastEventAt > deps.timeoutMs) {
        idle = true;
        abort.abort();
      }
    }, Math.min(1000, deps.timeoutMs));
    try {
      for await (const event of stream) {
        lastEventAt = Date.now();
        if (!view.apply(event)) continue;
        if (firstOutputAt === undefined && view.hasOutput) firstOutputAt = Date.now();
        live.update(view.render({ final: false, durationMs: Date.now() - t0 }));
      }
    } catch (err) {
      // An error event from Letta (the model failed) or a connection that broke mid-answer.
      if (err instanceof APIError && err.status === undefined && !view.error) view.error = describeLettaError(err, deps.api.baseUrl);
      else if (!(err instanceof APIError)) brokeOff = (err as Error).message;
    } finally {
      clearInterval(watchdog);
    }
    if (!view.error && view.stopReason === undefined) {
      // The stream ended without Letta saying why: we stopped it, or it broke off. Never re-sent.
      if (idle) view.error = `no data from Letta for ${Math.round(deps.timeoutMs / 1000)} s; the message was not sent again.`;
      else if (stop.aborted) view.error = "the bot stopped while the answer was streaming; Letta may still finish it.";
      else view.error = `the connection to Letta broke off mid-answer${brokeOff ? ` (${clip(brokeOff, 80)})` : ""}; the message was not sent again.`;
    }
  }
  stop.removeEventListener("abort", onStop);

  const totalMs = Date.now() - t0;
  const failed = failure !== undefined || view.error !== undefined;
  const text = failure ?? view.render({ final: true, durationMs: totalMs });
  try {
    await live.finish(text);
  } catch (err) {
    deps.log.error({ err, roomId: row.roomId }, "could not post the final Letta reply");
  }
  const firstOutputMs = firstOutputAt === undefined ? undefined : firstOutputAt - t0;
  deps.turns.finish(row.id, failed ? "failed" : "done", { steps: view.steps, tokens: view.tokens, firstTokenMs: firstOutputMs });
  deps.log.info(
    { roomId: row.roomId, agentId: job.agentId, turn: row.id, status: failed ? "failed" : "done", acceptedMs, firstOutputMs, totalMs, steps: view.steps, tokens: view.tokens, edits: live.edits },
    "letta turn finished",
  );
  return { status: failed ? "failed" : "done", firstOutputMs, totalMs, replyId: live.firstId };
}

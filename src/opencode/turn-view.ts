import type { AssistantMessage, Event, Message, Part, ToolPart } from "@opencode-ai/sdk/v2";
import { isAbsolute, relative } from "node:path";
import { toolLine } from "./tool-line.ts";

interface MessageState {
  info?: AssistantMessage;
  parts: Map<string, Part>;
}

export interface RenderOptions {
  final: boolean;
  durationMs: number;
  /** Shown instead of the footer when the turn ended badly. */
  error?: string;
  aborted?: boolean;
}

export interface SessionErrorInfo {
  name: string;
  message: string;
}

/**
 * What one turn of a session looks like: the assistant messages that answer one prompt, built
 * from live events and, when the turn ends, replaced by the server's own record of it.
 */
export class TurnView {
  private readonly messages = new Map<string, MessageState>();
  private readonly workspaceDir: string;
  private readonly userMessageIds = new Set<string>();
  /** The user message of this turn; assistant messages answering others are not ours. */
  parentMessageId: string | undefined;
  error: SessionErrorInfo | undefined;

  constructor(workspaceDir: string, parentMessageId?: string) {
    this.workspaceDir = workspaceDir;
    this.parentMessageId = parentMessageId;
  }

  /** Applies one event of this turn's session; returns whether anything visible changed. */
  apply(event: Event): boolean {
    switch (event.type) {
      case "message.updated": {
        const info = event.properties.info;
        if (info.role === "user") this.userMessageIds.add(info.id);
        if (info.role !== "assistant" || !this.ours(info)) return false;
        this.state(info.id).info = info;
        return true;
      }
      case "message.part.updated": {
        const part = event.properties.part;
        if (!this.knows(part.messageID)) return false;
        this.state(part.messageID).parts.set(part.id, part);
        return true;
      }
      case "message.part.delta": {
        const { messageID, partID, field, delta } = event.properties;
        if (!this.knows(messageID)) return false;
        const parts = this.state(messageID).parts;
        const part = parts.get(partID) ?? ({ id: partID, messageID, sessionID: event.properties.sessionID, type: "text", text: "" } as Part);
        const record = part as unknown as Record<string, unknown>;
        record[field] = String(record[field] ?? "") + delta;
        parts.set(partID, part);
        return true;
      }
      case "session.error": {
        const err = event.properties.error;
        if (!err) return false;
        const data = (err as { data?: { message?: string } }).data;
        this.error = { name: err.name, message: data?.message ?? err.name };
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * Takes the server's messages for this turn as the truth. Where the server kept less than was
   * streamed (a server killed mid-answer never saved the text it had sent), the streamed
   * text stays: people must not see words disappear.
   */
  load(messages: Array<{ info: Message; parts: Part[] }>): void {
    const streamed = new Map(this.messages);
    this.messages.clear();
    let parent = this.parentMessageId;
    if (parent === undefined) parent = [...messages].reverse().find((m) => m.info.role === "user")?.info.id;
    this.parentMessageId = parent;
    for (const m of messages) {
      if (m.info.role !== "assistant" || m.info.parentID !== parent) continue;
      const parts = new Map(m.parts.map((p) => [p.id, p]));
      for (const [id, old] of streamed.get(m.info.id)?.parts ?? []) {
        const now = parts.get(id);
        if (!now || (old.type === "text" && now.type === "text" && old.text.length > now.text.length)) parts.set(id, old);
      }
      this.messages.set(m.info.id, { info: m.info, parts });
    }
    for (const [id, old] of streamed) if (!this.messages.has(id) && old.info?.parentID === parent) this.messages.set(id, old);
  }

  get assistantInfos(): AssistantMessage[] {
    return [...this.messages.values()].flatMap((m) => (m.info ? [m.info] : []));
  }

  render(opts: RenderOptions): string {
    const blocks: string[] = [];
    for (const m of this.messages.values()) {
      for (const part of m.parts.values()) {
        const block = this.renderPart(part);
        if (block) blocks.push(block);
      }
    }
    if (opts.aborted) blocks.push("⏹️ Aborted.");
    else if (opts.final && !opts.error && this.interrupted()) {
      blocks.push("⚠️ The answer stopped before it was complete (the OpenCode server was interrupted). Write a follow-up to continue.");
    }
    if (opts.error) blocks.push(opts.error);
    if (!opts.final) {
      if (blocks.length === 0) blocks.push("⏳ Working…");
      return blocks.join("\n\n");
    }
    if (blocks.length === 0) blocks.push("_(no text in the answer)_");
    blocks.push(this.footer(opts.durationMs));
    return blocks.join("\n\n");
  }

  private renderPart(part: Part): string | undefined {
    switch (part.type) {
      case "text":
        return part.synthetic || part.ignored ? undefined : part.text.trim() || undefined;
      case "reasoning": {
        const text = part.text.trim();
        if (!text) return undefined;
        const short = text.length > 400 ? `${text.slice(0, 400)}…` : text;
        return short.split("\n").map((l, i) => (i === 0 ? `> 💭 _${l}_` : `> _${l}_`)).join("\n");
      }
      case "tool":
        return toolLine(part as ToolPart, this.workspaceDir);
      default:
        return undefined;
    }
  }

  /** The last assistant message never finished: the server stopped in the middle of it. */
  private interrupted(): boolean {
    const last = this.assistantInfos.at(-1);
    return last !== undefined && last.finish === undefined && last.time.completed === undefined && last.error === undefined;
  }

  private footer(durationMs: number): string {
    const infos = this.assistantInfos;
    const last = infos[infos.length - 1];
    const model = last ? `${last.providerID}/${last.modelID}` : "unknown model";
    let tokens = 0;
    let cost = 0;
    for (const i of infos) {
      tokens += i.tokens.input + i.tokens.output + i.tokens.reasoning;
      cost += i.cost;
    }
    const parts = [model, `${tokens.toLocaleString("en-US")} tokens`];
    if (cost > 0) parts.push(`$${cost.toFixed(4)}`);
    parts.push(`${(durationMs / 1000).toFixed(1)}s`);
    const files = this.changedFiles();
    if (files.length > 0) parts.push(`changed ${files.slice(0, 5).join(", ")}${files.length > 5 ? ` +${files.length - 5} more` : ""}`);
    return `— ${parts.join(" · ")}`;
  }

  /** Files this turn changed, from OpenCode's patch parts, relative to the workspace. */
  changedFiles(): string[] {
    const files = new Set<string>();
    for (const m of this.messages.values()) {
      for (const p of m.parts.values()) {
        if (p.type !== "patch") continue;
        for (const f of p.files) files.add(isAbsolute(f) ? relative(this.workspaceDir, f) || f : f);
      }
    }
    return [...files];
  }

  private ours(info: AssistantMessage): boolean {
    return this.parentMessageId === undefined || info.parentID === this.parentMessageId;
  }

  private knows(messageId: string): boolean {
    // Parts can arrive before their message.updated; accept them only if not known to be another turn's.
    if (this.messages.has(messageId)) return true;
    return this.parentMessageId === undefined && !this.userMessageIds.has(messageId);
  }

  private state(id: string): MessageState {
    let s = this.messages.get(id);
    if (!s) {
      s = { parts: new Map() };
      this.messages.set(id, s);
    }
    return s;
  }
}

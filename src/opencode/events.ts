import type { AssistantMessage, Event, Message, Part, ToolPart } from "@opencode-ai/sdk/v2";
import { isAbsolute, relative } from "node:path";
import type { ContentEvent, TurnEvent } from "../turns/events.ts";
import { toolInfo } from "./tool-line.ts";

interface MessageState {
  info?: AssistantMessage;
  parts: Map<string, Part>;
}

export interface SessionErrorInfo {
  name: string;
  message: string;
}

/**
 * Translates one turn of an OpenCode session into the engine's events: the assistant
 * messages that answer one prompt, from live events and, when the turn ends, from the
 * server's own record of it. It keeps OpenCode's message and part model because parts can
 * arrive before their message and events of other turns share the stream; what it emits is a
 * snapshot of the turn's blocks in the server's order (the engine keeps longer texts).
 */
export class OpencodeTranslator {
  private readonly messages = new Map<string, MessageState>();
  private readonly workspaceDir: string;
  private readonly userMessageIds = new Set<string>();
  /**
   * Streaming parts whose text has a hole: OpenCode records a text part as empty until it ends,
   * so a part read from the record mid-stream, or streaming while the event stream was down,
   * lacks words that its next deltas do not bring back. Their deltas are not shown (the text
   * would read from the middle); the part's whole text comes with its end.
   */
  private readonly holed = new Set<string>();
  /** The turn may have started before these events: a part first met by a delta began earlier. */
  private joinedLate: boolean;
  /** The user message of this turn; assistant messages answering others are not ours. */
  parentMessageId: string | undefined;
  error: SessionErrorInfo | undefined;

  constructor(workspaceDir: string, parentMessageId?: string, opts: { joinedLate?: boolean } = {}) {
    this.workspaceDir = workspaceDir;
    this.parentMessageId = parentMessageId;
    this.joinedLate = opts.joinedLate === true;
  }

  /** The event stream dropped: deltas of the parts streaming now may have fallen into the gap. */
  markGap(): void {
    this.joinedLate = true;
    for (const m of this.messages.values()) for (const p of m.parts.values()) if (streaming(p)) this.holed.add(p.id);
  }

  /** Events for one event of this turn's session; none when nothing people see changed. */
  apply(event: Event): TurnEvent[] {
    switch (event.type) {
      case "message.updated": {
        const info = event.properties.info;
        if (info.role === "user") this.userMessageIds.add(info.id);
        if (info.role !== "assistant" || !this.ours(info)) return [];
        this.state(info.id).info = info;
        return [this.usage()];
      }
      case "message.part.updated": {
        const part = event.properties.part;
        if (!this.knows(part.messageID)) return [];
        this.state(part.messageID).parts.set(part.id, part);
        // The stream's own copy of the part is whole up to this point: its next deltas follow on.
        this.holed.delete(part.id);
        return part.type === "patch" ? [{ type: "files", paths: this.changedFiles() }] : [this.snapshot()];
      }
      case "message.part.delta": {
        const { messageID, partID, field, delta } = event.properties;
        if (!this.knows(messageID)) return [];
        const parts = this.state(messageID).parts;
        if (this.holed.has(partID)) return [];
        if (!parts.has(partID) && this.joinedLate) {
          this.holed.add(partID);
          return [];
        }
        const part = parts.get(partID) ?? ({ id: partID, messageID, sessionID: event.properties.sessionID, type: "text", text: "" } as Part);
        const record = part as unknown as Record<string, unknown>;
        record[field] = String(record[field] ?? "") + delta;
        parts.set(partID, part);
        return [this.snapshot()];
      }
      case "session.status": {
        const s = event.properties.status;
        if (s.type !== "retry") return [];
        return [{ type: "retry", attempt: s.attempt, nextInMs: Math.max(0, s.next - Date.now()), message: s.action?.message ?? s.message }];
      }
      case "session.error": {
        const err = event.properties.error;
        if (!err) return [];
        const data = (err as { data?: { message?: string } }).data;
        this.error = { name: err.name, message: data?.message ?? err.name };
        return [];
      }
      default:
        return [];
    }
  }

  /**
   * Takes the server's messages for this turn as the truth. Where the server kept less than was
   * streamed (a server killed mid-answer never saved the text it had sent), the streamed
   * text stays: people must not see words disappear.
   */
  load(messages: Array<{ info: Message; parts: Part[] }>): TurnEvent[] {
    const streamed = new Map(this.messages);
    const streamedHoled = new Set(this.holed);
    this.messages.clear();
    let parent = this.parentMessageId;
    if (parent === undefined) parent = [...messages].reverse().find((m) => m.info.role === "user")?.info.id;
    this.parentMessageId = parent;
    for (const m of messages) {
      if (m.info.role !== "assistant" || m.info.parentID !== parent) continue;
      const parts = new Map(m.parts.map((p) => [p.id, p]));
      for (const p of m.parts) {
        if (streaming(p)) this.holed.add(p.id);
        else this.holed.delete(p.id); // ended: the record has its whole text
      }
      for (const [id, old] of streamed.get(m.info.id)?.parts ?? []) {
        const now = parts.get(id);
        const wholeCopy = !streamedHoled.has(id);
        // The streamed copy when longer, or when whole and the record's is still streaming (empty).
        if (!now || (textLike(old) && textLike(now) && (old.text.length > now.text.length || (wholeCopy && streaming(now))))) {
          parts.set(id, old);
          if (wholeCopy) this.holed.delete(id);
        }
      }
      this.messages.set(m.info.id, { info: m.info, parts });
    }
    for (const [id, old] of streamed) if (!this.messages.has(id) && old.info?.parentID === parent) this.messages.set(id, old);
    return [this.snapshot(), this.usage(), { type: "files", paths: this.changedFiles() }];
  }

  /** Every answer of this turn is recorded as finished (completed or failed) and at least one exists. */
  complete(): boolean {
    const infos = this.assistantInfos();
    return infos.length > 0 && infos.every((m) => m.time.completed !== undefined || m.error !== undefined);
  }

  /** The last assistant message never finished: the server stopped in the middle of it. */
  interrupted(): boolean {
    const last = this.assistantInfos().at(-1);
    return last !== undefined && last.finish === undefined && last.time.completed === undefined && last.error === undefined;
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

  private snapshot(): TurnEvent {
    const blocks: ContentEvent[] = [];
    for (const m of this.messages.values()) {
      for (const p of m.parts.values()) {
        if (p.type === "text" && !p.synthetic && !p.ignored) blocks.push({ type: "text", id: p.id, text: p.text });
        else if (p.type === "reasoning") blocks.push({ type: "reasoning", id: p.id, text: p.text });
        else if (p.type === "tool") blocks.push({ type: "tool", id: p.id, tool: toolInfo(p as ToolPart, this.workspaceDir) });
      }
    }
    return { type: "snapshot", blocks };
  }

  private usage(): TurnEvent {
    const infos = this.assistantInfos();
    const last = infos.at(-1);
    let tokens = 0;
    let cost = 0;
    for (const i of infos) {
      tokens += i.tokens.input + i.tokens.output + i.tokens.reasoning;
      cost += i.cost;
    }
    return { type: "usage", usage: { label: last ? `${last.providerID}/${last.modelID}` : "unknown model", tokens, cost } };
  }

  private assistantInfos(): AssistantMessage[] {
    return [...this.messages.values()].flatMap((m) => (m.info ? [m.info] : []));
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

/** A text or reasoning part that has not ended: its recorded text may be behind the stream. */
function streaming(p: Part): boolean {
  return textLike(p) && p.time?.end === undefined;
}

function textLike(p: Part): p is Extract<Part, { type: "text" | "reasoning" }> {
  return p.type === "text" || p.type === "reasoning";
}

import type { ContentEvent, EndReason, PlanEntry, ToolInfo, TurnEvent, Usage } from "./events.ts";

/** `restored`: shown before a restart; kept even if the agent's record no longer has it. */
export type Block = (
  | { kind: "text"; id: string; text: string }
  | { kind: "reasoning"; id: string; text: string; hidden: boolean }
  | { kind: "tool"; id: string; tool: ToolInfo }
  | { kind: "approval"; id: string; tool: string; state: "asked" | "allowed" | "denied" }
  | { kind: "note"; id: string; text: string }
) & { restored?: boolean };

/** What is kept of a turn across a restart of the bot. */
export interface SavedState {
  blocks: Block[];
  plan: PlanEntry[];
  usage: Usage;
  files: string[];
}

export interface RetryState {
  attempt: number;
  of: number | undefined;
  nextInMs: number | undefined;
  message: string;
}

/**
 * Everything one turn has shown, folded from its events. Pure and synchronous: the same events
 * give the same state, which is what the recorded-stream tests replay.
 */
export class TurnState {
  blocks: Block[] = [];
  private byId = new Map<string, Block>();
  plan: PlanEntry[] = [];
  usage: Usage = {};
  files: string[] = [];
  error: { title: string; message: string; advice?: string | undefined } | undefined;
  end: { reason: EndReason; note?: string | undefined } | undefined;
  retry: RetryState | undefined;
  rejected: string | undefined;
  /** Whether the agent has shown anything of its own (text, reasoning, a tool, a plan). */
  hasOutput = false;
  private notes = 0;

  /** Folds one event in; returns whether anything people see changed. */
  apply(e: TurnEvent): boolean {
    switch (e.type) {
      case "text":
      case "reasoning":
      case "tool": {
        const changed = this.content(e, this.blocks, this.byId);
        if (changed) {
          this.hasOutput = true;
          this.retry = undefined;
        }
        return changed;
      }
      case "snapshot":
        return this.snapshot(e.blocks);
      case "plan":
        this.plan = e.entries;
        this.hasOutput = true;
        return true;
      case "approval": {
        const key = `approval:${e.id}`;
        const known = this.byId.get(key);
        if (known?.kind === "approval") {
          if (known.state === e.state) return false;
          known.state = e.state;
          return true;
        }
        this.add(this.blocks, this.byId, { kind: "approval", id: key, tool: e.tool, state: e.state });
        return true;
      }
      case "retry":
        this.retry = { attempt: e.attempt, of: e.of, nextInMs: e.nextInMs, message: e.message };
        return true;
      case "usage": {
        const before = JSON.stringify(this.usage);
        this.usage = { ...this.usage, ...definedOnly(e.usage) };
        return JSON.stringify(this.usage) !== before;
      }
      case "files": {
        const n = this.files.length;
        this.files = [...new Set([...this.files, ...e.paths])];
        return this.files.length !== n;
      }
      case "note":
        this.add(this.blocks, this.byId, { kind: "note", id: `note:${this.notes++}`, text: e.text });
        return true;
      case "error":
        this.error = { title: e.title, message: e.message, advice: e.advice };
        this.retry = undefined;
        return true;
      case "end":
        this.end = { reason: e.reason, note: e.note };
        this.retry = undefined;
        return true;
      case "rejected":
        this.rejected = e.text;
        return true;
    }
  }

  save(): SavedState {
    return { blocks: this.blocks, plan: this.plan, usage: this.usage, files: this.files };
  }

  /** Takes back what a previous run of the bot showed, so that nothing shown is taken back. */
  restore(saved: SavedState): void {
    this.blocks = saved.blocks.map((b) => ({ ...b, restored: true }));
    this.byId = new Map(this.blocks.map((b) => [b.id, b]));
    this.plan = saved.plan;
    this.usage = saved.usage;
    this.files = saved.files;
    this.hasOutput = this.blocks.some((b) => b.kind !== "note" && b.kind !== "approval") || this.plan.length > 0;
  }

  /** The assistant's own words, for pushes and for a delegating agent: the text blocks joined. */
  answerText(): string {
    return this.blocks
      .filter((b): b is Extract<Block, { kind: "text" }> => b.kind === "text")
      .map((b) => b.text.trim())
      .filter((t) => t.length > 0)
      .join("\n\n");
  }

  get failed(): boolean {
    return this.error !== undefined || this.rejected !== undefined;
  }

  private content(e: ContentEvent, blocks: Block[], byId: Map<string, Block>): boolean {
    const key = `${e.type === "tool" ? "tool" : "content"}:${e.id}`;
    const known = byId.get(key);
    if (e.type === "tool") {
      if (known?.kind === "tool") {
        const before = JSON.stringify(known.tool);
        known.tool = { ...known.tool, ...definedOnly(e.tool) };
        return JSON.stringify(known.tool) !== before;
      }
      this.add(blocks, byId, { kind: "tool", id: key, tool: { name: "tool", status: "running", ...definedOnly(e.tool) } });
      return true;
    }
    if (known && (known.kind === "text" || known.kind === "reasoning")) {
      const next = e.text !== undefined ? longer(known.text, e.text) : known.text + (e.delta ?? "");
      const hidden = e.type === "reasoning" && e.hidden === true;
      if (next === known.text && (known.kind !== "reasoning" || known.hidden === hidden)) return false;
      known.text = next;
      if (known.kind === "reasoning") known.hidden = hidden;
      return true;
    }
    const text = e.text ?? e.delta ?? "";
    if (text === "" && !(e.type === "reasoning" && e.hidden)) return false;
    this.add(blocks, byId, e.type === "text" ? { kind: "text", id: key, text } : { kind: "reasoning", id: key, text, hidden: e.hidden === true });
    return true;
  }

  private snapshot(events: ContentEvent[]): boolean {
    const before = JSON.stringify(this.blocks);
    const blocks: Block[] = [];
    const byId = new Map<string, Block>();
    // Blocks shown before a restart that the record lacks (a server killed mid-answer never
    // saved them) stay, in their place among the others.
    const keys = new Set(events.map((e) => `${e.type === "tool" ? "tool" : "content"}:${e.id}`));
    const restored = this.blocks.filter((b) => b.restored === true && b.kind !== "note" && b.kind !== "approval");
    let r = 0;
    const flushRestoredBefore = (key: string | undefined): void => {
      while (r < restored.length && (restored[r] as Block).id !== key) {
        const b = restored[r++] as Block;
        if (!keys.has(b.id) && !byId.has(b.id)) this.add(blocks, byId, b);
      }
      if (r < restored.length) r++;
    };
    for (const e of events) {
      const key = `${e.type === "tool" ? "tool" : "content"}:${e.id}`;
      if (restored.some((b) => b.id === key)) flushRestoredBefore(key);
      const old = this.byId.get(key);
      if (old && !byId.has(key)) this.add(blocks, byId, structuredClone(old));
      this.content(e, blocks, byId);
    }
    flushRestoredBefore(undefined);
    // The bot's own lines and approvals are not in the agent's record; they stay where they were.
    for (const b of this.blocks) if ((b.kind === "note" || b.kind === "approval") && !byId.has(b.id)) this.add(blocks, byId, b);
    this.blocks = blocks;
    this.byId = byId;
    if (blocks.some((b) => b.kind !== "note" && b.kind !== "approval")) this.hasOutput = true;
    return JSON.stringify(blocks) !== before;
  }

  private add(blocks: Block[], byId: Map<string, Block>, b: Block): void {
    blocks.push(b);
    byId.set(b.id, b);
  }
}

/** Words once shown are never taken back: of two versions of a text, the longer one stays. */
function longer(shown: string, next: string): string {
  return next.length >= shown.length ? next : shown;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

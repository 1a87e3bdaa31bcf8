import type { PromptRequest } from "../commands/backend.ts";
import type { Db } from "../store/db.ts";
import { TurnQueue, type QueuedTurn } from "../turns/queue.ts";

export interface PromptOptions {
  model?: { providerID: string; modelID: string } | undefined;
  agent?: string | undefined;
  directory: string;
}

/** An OpenCode `/command` run as a turn instead of a plain prompt. */
export interface CommandCall {
  name: string;
  args: string;
}

export interface QueuedPrompt {
  id: number;
  sessionId: string;
  roomId: string;
  rootEventId: string;
  req: PromptRequest;
  opts: PromptOptions;
  command: CommandCall | undefined;
  queuedAt: number;
}

interface Payload {
  opts: PromptOptions;
  /** The name of an OpenCode `/command`; its arguments are the queued text. */
  command: string | null;
}

const toQueued = (q: QueuedTurn<Payload>): QueuedPrompt => ({
  id: q.id,
  sessionId: q.key,
  roomId: q.roomId,
  rootEventId: q.rootEventId,
  req: q.req,
  opts: q.payload.opts,
  command: q.payload.command ? { name: q.payload.command, args: q.req.text } : undefined,
  queuedAt: q.queuedAt,
});

/**
 * OpenCode's prompts waiting for the running turn of their session: the shared durable turn
 * queue, keyed by session, with the session options and the `/command` of each prompt.
 */
export class PromptQueue {
  private readonly q: TurnQueue<Payload>;

  constructor(db: Db) {
    this.q = new TurnQueue<Payload>(db, "opencode");
  }

  /** Appends a prompt; returns its row id. */
  add(t: { sessionId: string; roomId: string; rootEventId: string }, req: PromptRequest, opts: PromptOptions, command?: CommandCall, front = false): number {
    return this.q.add({ key: t.sessionId, roomId: t.roomId, rootEventId: t.rootEventId }, command ? { ...req, text: command.args } : req, { opts, command: command?.name ?? null }, { front });
  }

  /** The place of a queued prompt in its session's queue (1 = next), 0 when it is no longer queued. */
  position(sessionId: string, id: number): number {
    return this.q.position(sessionId, id);
  }

  next(sessionId: string): QueuedPrompt | undefined {
    const n = this.q.next(sessionId);
    return n && toQueued(n);
  }

  list(sessionId: string): QueuedPrompt[] {
    return this.q.list(sessionId).map(toQueued);
  }

  inRoom(roomId: string): QueuedPrompt[] {
    return this.q.inRoom(roomId).map(toQueued);
  }

  count(sessionId: string): number {
    return this.q.count(sessionId);
  }

  remove(id: number): boolean {
    return this.q.remove(id);
  }

  clear(sessionId: string): number {
    return this.q.clear(sessionId).length;
  }

  /** Sessions that have prompts waiting (checked at start-up, after the turns are reconciled). */
  sessions(): string[] {
    return this.q.keys();
  }
}

import type { PromptRequest } from "../commands/backend.ts";
import type { Db } from "../store/db.ts";

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

interface Raw {
  id: number;
  session_id: string;
  room_id: string;
  root_event_id: string;
  prompt_event_id: string;
  sender: string;
  text: string;
  command: string | null;
  files_json: string | null;
  options_json: string;
  queued_at: number;
}

type StoredFile = { mime: string; filename: string; data: string };

const toQueued = (r: Raw): QueuedPrompt => {
  const files = r.files_json ? (JSON.parse(r.files_json) as StoredFile[]).map((f) => ({ ...f, data: Buffer.from(f.data, "base64") })) : undefined;
  return {
    id: r.id,
    sessionId: r.session_id,
    roomId: r.room_id,
    rootEventId: r.root_event_id,
    req: { roomId: r.room_id, eventId: r.prompt_event_id, sender: r.sender, text: r.text, ...(files ? { files } : {}) },
    opts: JSON.parse(r.options_json) as PromptOptions,
    command: r.command === null ? undefined : { name: r.command, args: r.text },
    queuedAt: r.queued_at,
  };
};

/**
 * Prompts waiting for the running turn of their session, in SQLite so that a restart keeps
 * them. Order is the insertion order (the autoincrement id).
 */
export class PromptQueue {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Appends a prompt; returns its row id. */
  add(t: { sessionId: string; roomId: string; rootEventId: string }, req: PromptRequest, opts: PromptOptions, command?: CommandCall): number {
    const files = req.files?.length ? JSON.stringify(req.files.map((f) => ({ mime: f.mime, filename: f.filename, data: f.data.toString("base64") }))) : null;
    const info = this.db
      .prepare(
        `INSERT INTO queued_prompts (session_id, room_id, root_event_id, prompt_event_id, sender, text, command, files_json, options_json, queued_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(t.sessionId, t.roomId, t.rootEventId, req.eventId, req.sender, command ? command.args : req.text, command?.name ?? null, files, JSON.stringify(opts), Date.now());
    return Number(info.lastInsertRowid);
  }

  /** The place of a queued prompt in its session's queue (1 = next), 0 when it is no longer queued. */
  position(sessionId: string, id: number): number {
    const r = this.db
      .prepare("SELECT (SELECT COUNT(*) FROM queued_prompts WHERE session_id = ? AND id <= ?) AS n, EXISTS (SELECT 1 FROM queued_prompts WHERE id = ?) AS present")
      .get(sessionId, id, id) as { n: number; present: number };
    return r.present ? r.n : 0;
  }

  next(sessionId: string): QueuedPrompt | undefined {
    const r = this.db.prepare("SELECT * FROM queued_prompts WHERE session_id = ? ORDER BY id LIMIT 1").get(sessionId) as Raw | undefined;
    return r && toQueued(r);
  }

  list(sessionId: string): QueuedPrompt[] {
    return (this.db.prepare("SELECT * FROM queued_prompts WHERE session_id = ? ORDER BY id").all(sessionId) as Raw[]).map(toQueued);
  }

  inRoom(roomId: string): QueuedPrompt[] {
    return (this.db.prepare("SELECT * FROM queued_prompts WHERE room_id = ? ORDER BY id").all(roomId) as Raw[]).map(toQueued);
  }

  count(sessionId: string): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM queued_prompts WHERE session_id = ?").get(sessionId) as { n: number }).n;
  }

  remove(id: number): boolean {
    return this.db.prepare("DELETE FROM queued_prompts WHERE id = ?").run(id).changes > 0;
  }

  clear(sessionId: string): number {
    return this.db.prepare("DELETE FROM queued_prompts WHERE session_id = ?").run(sessionId).changes;
  }

  /** Sessions that have prompts waiting (checked at start-up, after the turns are reconciled). */
  sessions(): string[] {
    return (this.db.prepare("SELECT session_id FROM queued_prompts GROUP BY session_id ORDER BY MIN(id)").all() as Array<{ session_id: string }>).map((r) => r.session_id);
  }
}

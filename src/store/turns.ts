import type { Db } from "./db.ts";

export interface TurnRow {
  id: number;
  roomId: string;
  rootEventId: string;
  sessionId: string;
  promptEventId: string;
  promptMessageId: string | null;
  promptedBy: string;
  promptText: string;
  replyEventId: string | null;
  status: "running" | "done" | "failed" | "aborted";
  startedAt: number;
  finishedAt: number | null;
}

interface RawTurn {
  id: number;
  room_id: string;
  root_event_id: string;
  session_id: string;
  prompt_event_id: string;
  prompt_message_id: string | null;
  prompted_by: string;
  prompt_text: string;
  reply_event_id: string | null;
  status: TurnRow["status"];
  started_at: number;
  finished_at: number | null;
}

const toRow = (r: RawTurn): TurnRow => ({
  id: r.id,
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  sessionId: r.session_id,
  promptEventId: r.prompt_event_id,
  promptMessageId: r.prompt_message_id,
  promptedBy: r.prompted_by,
  promptText: r.prompt_text,
  replyEventId: r.reply_event_id,
  status: r.status,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
});

/** Turns in flight and done: what lets a restarted bot finish the reply it was writing. */
export class TurnStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** `promptJson`: what a re-send after a restart needs (files, options, command); dropped when the turn ends. */
  start(t: Pick<TurnRow, "roomId" | "rootEventId" | "sessionId" | "promptEventId" | "promptMessageId" | "promptedBy" | "promptText"> & { promptJson?: string }): TurnRow {
    const now = Date.now();
    const info = this.db
      .prepare(
        `INSERT INTO turns (room_id, root_event_id, session_id, prompt_event_id, prompt_message_id, prompted_by, prompt_text, prompt_json, status, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)`,
      )
      .run(t.roomId, t.rootEventId, t.sessionId, t.promptEventId, t.promptMessageId, t.promptedBy, t.promptText, t.promptJson ?? null, now);
    const { promptJson: _stored, ...row } = t;
    return { ...row, id: Number(info.lastInsertRowid), replyEventId: null, status: "running", startedAt: now, finishedAt: null };
  }

  promptOf(id: number): string | null {
    return (this.db.prepare("SELECT prompt_json FROM turns WHERE id = ?").get(id) as { prompt_json: string | null } | undefined)?.prompt_json ?? null;
  }

  setReply(id: number, replyEventId: string): void {
    this.db.prepare("UPDATE turns SET reply_event_id = ? WHERE id = ?").run(replyEventId, id);
  }

  finish(id: number, status: "done" | "failed" | "aborted"): void {
    this.db.prepare("UPDATE turns SET status = ?, finished_at = ?, prompt_json = NULL WHERE id = ?").run(status, Date.now(), id);
  }

  get(id: number): TurnRow | undefined {
    const r = this.db.prepare("SELECT * FROM turns WHERE id = ?").get(id) as RawTurn | undefined;
    return r && toRow(r);
  }

  running(): TurnRow[] {
    return (this.db.prepare("SELECT * FROM turns WHERE status = 'running' ORDER BY id").all() as RawTurn[]).map(toRow);
  }

  runningForSession(sessionId: string): TurnRow | undefined {
    const r = this.db.prepare("SELECT * FROM turns WHERE status = 'running' AND session_id = ? ORDER BY id DESC LIMIT 1").get(sessionId) as
      | RawTurn
      | undefined;
    return r && toRow(r);
  }

  lastForThread(roomId: string, rootEventId: string): TurnRow | undefined {
    const r = this.db
      .prepare("SELECT * FROM turns WHERE room_id = ? AND root_event_id = ? ORDER BY id DESC LIMIT 1")
      .get(roomId, rootEventId) as RawTurn | undefined;
    return r && toRow(r);
  }
}

import type { Db } from "../store/db.ts";

export type AcpTurnStatus = "queued" | "running" | "done" | "failed";

export interface AcpTurnRow {
  id: number;
  agent: string;
  roomId: string;
  rootEventId: string;
  sessionId: string;
  promptEventId: string;
  promptedBy: string;
  replyEventId: string | null;
  status: AcpTurnStatus;
}

interface Raw {
  id: number;
  agent: string;
  room_id: string;
  root_event_id: string;
  session_id: string;
  prompt_event_id: string;
  prompted_by: string;
  reply_event_id: string | null;
  status: AcpTurnStatus;
}

const toRow = (r: Raw): AcpTurnRow => ({
  id: r.id,
  agent: r.agent,
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  sessionId: r.session_id,
  promptEventId: r.prompt_event_id,
  promptedBy: r.prompted_by,
  replyEventId: r.reply_event_id,
  status: r.status,
});

/** Prompts sent (or waiting to be sent) to ACP agents (migrations/007_acp.sql). */
export class AcpTurnStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  add(t: Pick<AcpTurnRow, "agent" | "roomId" | "rootEventId" | "sessionId" | "promptEventId" | "promptedBy">, status: "queued" | "running", now = Date.now()): AcpTurnRow {
    const info = this.db
      .prepare(
        `INSERT INTO acp_turns (agent, room_id, root_event_id, session_id, prompt_event_id, prompted_by, status, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(t.agent, t.roomId, t.rootEventId, t.sessionId, t.promptEventId, t.promptedBy, status, now);
    return { ...t, id: Number(info.lastInsertRowid), replyEventId: null, status };
  }

  get(id: number): AcpTurnRow | undefined {
    const r = this.db.prepare("SELECT * FROM acp_turns WHERE id = ?").get(id) as Raw | undefined;
    return r && toRow(r);
  }

  running(id: number, sessionId: string): void {
    this.db.prepare("UPDATE acp_turns SET status = 'running', session_id = ? WHERE id = ?").run(sessionId, id);
  }

  setReply(id: number, replyEventId: string): void {
    this.db.prepare("UPDATE acp_turns SET reply_event_id = ? WHERE id = ?").run(replyEventId, id);
  }

  finish(id: number, status: "done" | "failed", stats: { stopReason?: string | undefined; tokens?: number | undefined } = {}): void {
    this.db
      .prepare("UPDATE acp_turns SET status = ?, finished_at = ?, stop_reason = ?, tokens = ? WHERE id = ?")
      .run(status, Date.now(), stats.stopReason ?? null, stats.tokens ?? null, id);
  }

  /** A thread whose session could not be resumed continues in a new one. */
  moveThread(roomId: string, rootEventId: string, sessionId: string): void {
    this.db.prepare("UPDATE threads SET session_id = ? WHERE room_id = ? AND root_event_id = ?").run(sessionId, roomId, rootEventId);
  }

  /** Turns of `agent` a previous process left running or waiting, oldest first. */
  open(agent: string): AcpTurnRow[] {
    return (this.db.prepare("SELECT * FROM acp_turns WHERE agent = ? AND status IN ('queued', 'running') ORDER BY id").all(agent) as Raw[]).map(toRow);
  }
}

import type { Db } from "../store/db.ts";

/** One tool call a Letta agent asks approval for, as its stream gave it. */
export interface ApprovalCall {
  /** The tool_call_id the answer names. */
  id: string;
  name: string;
  /** The arguments as the model wrote them (JSON text, usually). */
  arguments: string;
}

export type ApprovalStatus = "pending" | "allowed" | "denied";

export interface ApprovalRow {
  id: number;
  agentId: string;
  agentName: string;
  requestMessageId: string;
  runId: string | null;
  calls: ApprovalCall[];
  roomId: string;
  rootEventId: string;
  askedOf: string;
  replyEventId: string | null;
  messageEventId: string | null;
  status: ApprovalStatus;
  decidedBy: string | null;
  reason: string | null;
}

interface Raw {
  id: number;
  agent_id: string;
  agent_name: string;
  request_message_id: string;
  run_id: string | null;
  calls_json: string;
  room_id: string;
  root_event_id: string;
  asked_of: string;
  reply_event_id: string | null;
  message_event_id: string | null;
  status: ApprovalStatus;
  decided_by: string | null;
  reason: string | null;
}

const toRow = (r: Raw): ApprovalRow => ({
  id: r.id,
  agentId: r.agent_id,
  agentName: r.agent_name,
  requestMessageId: r.request_message_id,
  runId: r.run_id,
  calls: JSON.parse(r.calls_json) as ApprovalCall[],
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  askedOf: r.asked_of,
  replyEventId: r.reply_event_id,
  messageEventId: r.message_event_id,
  status: r.status,
  decidedBy: r.decided_by,
  reason: r.reason,
});

/** Letta's tool approvals asked in threads (migrations/013_letta_approvals.sql). */
export class LettaApprovalStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Records a request; the existing row when this one was recorded before. */
  add(a: Pick<ApprovalRow, "agentId" | "agentName" | "requestMessageId" | "runId" | "calls" | "roomId" | "rootEventId" | "askedOf" | "replyEventId">): ApprovalRow {
    this.db
      .prepare(
        `INSERT OR IGNORE INTO letta_approvals (agent_id, agent_name, request_message_id, run_id, calls_json, room_id, root_event_id, asked_of, reply_event_id, status, asked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
      )
      .run(a.agentId, a.agentName, a.requestMessageId, a.runId, JSON.stringify(a.calls), a.roomId, a.rootEventId, a.askedOf, a.replyEventId, Date.now());
    const r = this.db.prepare("SELECT * FROM letta_approvals WHERE agent_id = ? AND request_message_id = ?").get(a.agentId, a.requestMessageId) as Raw;
    return toRow(r);
  }

  setMessage(id: number, eventId: string): void {
    this.db.prepare("UPDATE letta_approvals SET message_event_id = ? WHERE id = ?").run(eventId, id);
  }

  get(id: number): ApprovalRow | undefined {
    const r = this.db.prepare("SELECT * FROM letta_approvals WHERE id = ?").get(id) as Raw | undefined;
    return r && toRow(r);
  }

  byMessage(eventId: string): ApprovalRow | undefined {
    const r = this.db.prepare("SELECT * FROM letta_approvals WHERE message_event_id = ?").get(eventId) as Raw | undefined;
    return r && toRow(r);
  }

  /** The oldest pending request in a thread: the one `!letta allow` answers. */
  pendingInThread(roomId: string, rootEventId: string): ApprovalRow | undefined {
    const r = this.db
      .prepare("SELECT * FROM letta_approvals WHERE room_id = ? AND root_event_id = ? AND status = 'pending' ORDER BY id LIMIT 1")
      .get(roomId, rootEventId) as Raw | undefined;
    return r && toRow(r);
  }

  pending(): ApprovalRow[] {
    return (this.db.prepare("SELECT * FROM letta_approvals WHERE status = 'pending' ORDER BY id").all() as Raw[]).map(toRow);
  }

  /** Marks a decision; false if it was decided already (two people answering at once). */
  decide(id: number, status: Exclude<ApprovalStatus, "pending">, by: string | null, reason?: string): boolean {
    return (
      this.db
        .prepare("UPDATE letta_approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ? WHERE id = ? AND status = 'pending'")
        .run(status, by, reason ?? null, Date.now(), id).changes > 0
    );
  }
}

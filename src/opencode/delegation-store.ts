// The record of OpenCode work delegated by Letta agents (migrations/009_mcp.sql): where it
// streams, for whom, how it ended, and whether its result reached the agent.
import type { Db } from "../store/db.ts";

export type DelegationOutcome = "done" | "failed" | "aborted" | "running";

export interface DelegationResult {
  sessionId: string;
  title: string;
  outcome: DelegationOutcome;
  finalText: string;
  changedFiles: string[];
  note?: string | undefined;
}

export interface DelegationRow {
  sessionId: string;
  agentId: string;
  agentName: string;
  roomId: string;
  rootEventId: string;
  headlineEventId: string;
  promptedBy: string;
  title: string;
  directory: string;
  status: Exclude<DelegationOutcome, "running"> | "running";
  result: DelegationResult | null;
  delivered: "tool" | "message" | null;
}

type Raw = Record<string, string | number | null>;
const toRow = (r: Raw): DelegationRow => ({
  sessionId: String(r.session_id), agentId: String(r.agent_id), agentName: String(r.agent_name), roomId: String(r.room_id),
  rootEventId: String(r.root_event_id), headlineEventId: String(r.headline_event_id), promptedBy: String(r.prompted_by),
  title: String(r.title), directory: String(r.directory), status: r.status as DelegationRow["status"],
  result: r.result_json ? (JSON.parse(String(r.result_json)) as DelegationResult) : null, delivered: (r.delivered as DelegationRow["delivered"]) ?? null,
});

/** The mcp_delegations table. */
export class DelegationStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  get(sessionId: string): DelegationRow | undefined {
    const r = this.db.prepare("SELECT * FROM mcp_delegations WHERE session_id = ?").get(sessionId) as Raw | undefined;
    return r && toRow(r);
  }

  /** A new task, or a new prompt to a delegated session (it then renders in the caller's thread). */
  start(row: Omit<DelegationRow, "status" | "result" | "delivered">): void {
    this.db
      .prepare(
        `INSERT INTO mcp_delegations (session_id, agent_id, agent_name, room_id, root_event_id, headline_event_id, prompted_by, title, directory, status, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)
         ON CONFLICT (session_id) DO UPDATE SET room_id = excluded.room_id, root_event_id = excluded.root_event_id, headline_event_id = excluded.headline_event_id,
           prompted_by = excluded.prompted_by, status = 'running', result_json = NULL, delivered = NULL, started_at = excluded.started_at, finished_at = NULL`,
      )
      .run(row.sessionId, row.agentId, row.agentName, row.roomId, row.rootEventId, row.headlineEventId, row.promptedBy, row.title, row.directory, Date.now());
  }

  finish(sessionId: string, result: DelegationResult): void {
    this.db
      .prepare("UPDATE mcp_delegations SET status = ?, result_json = ?, finished_at = ? WHERE session_id = ? AND status = 'running'")
      .run(result.outcome, JSON.stringify(result), Date.now(), sessionId);
  }

  /** Claims the delivery of a finished result; false if it went (or goes) the other way already. */
  claim(sessionId: string, how: "tool" | "message"): boolean {
    return this.db.prepare("UPDATE mcp_delegations SET delivered = ? WHERE session_id = ? AND delivered IS NULL AND status <> 'running'").run(how, sessionId).changes > 0;
  }

  running(): DelegationRow[] {
    return (this.db.prepare("SELECT * FROM mcp_delegations WHERE status = 'running' ORDER BY started_at").all() as Raw[]).map(toRow);
  }

  /** Finished results no tool call has taken yet. */
  undelivered(): DelegationRow[] {
    return (this.db.prepare("SELECT * FROM mcp_delegations WHERE status <> 'running' AND delivered IS NULL ORDER BY finished_at").all() as Raw[]).map(toRow);
  }

  inThread(roomId: string, rootEventId: string): DelegationRow[] {
    return (this.db.prepare("SELECT * FROM mcp_delegations WHERE room_id = ? AND root_event_id = ? ORDER BY started_at").all(roomId, rootEventId) as Raw[]).map(toRow);
  }
}

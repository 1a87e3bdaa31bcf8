import type { Db } from "./db.ts";

export type PermissionStatus = "pending" | "once" | "always" | "reject" | "expired";

/** What a request asks, kept as OpenCode sent it. */
export type PermissionSubject =
  | { permission: string; command: string }
  /** Patterns, file paths or URLs: one per line when shown. */
  | { permission: string; items: string[] };

export interface PermissionRow {
  requestId: string;
  sessionId: string;
  roomId: string;
  rootEventId: string;
  messageEventId: string | null;
  /** A short line; what old rows (without a subject) show. */
  summary: string;
  /** What is asked, whole; null for rows from before it was stored. */
  subject: PermissionSubject | null;
  askedOf: string[];
  status: PermissionStatus;
  decidedBy: string | null;
}

interface Raw {
  request_id: string;
  session_id: string;
  room_id: string;
  root_event_id: string;
  message_event_id: string | null;
  summary: string;
  subject_json: string | null;
  asked_of: string;
  status: PermissionStatus;
  decided_by: string | null;
}

/** The stored subject; null for rows from before it was stored (and for anything unreadable). */
function parseSubject(json: string | null): PermissionSubject | null {
  if (json === null) return null;
  try {
    const v = JSON.parse(json) as { permission?: unknown; command?: unknown; items?: unknown };
    if (typeof v.permission !== "string") return null;
    if (typeof v.command === "string") return { permission: v.permission, command: v.command };
    if (Array.isArray(v.items) && v.items.every((i) => typeof i === "string")) return { permission: v.permission, items: v.items as string[] };
  } catch {
    // not JSON: treated like an old row
  }
  return null;
}

const toRow = (r: Raw): PermissionRow => ({
  requestId: r.request_id,
  sessionId: r.session_id,
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  messageEventId: r.message_event_id,
  summary: r.summary,
  subject: parseSubject(r.subject_json),
  askedOf: JSON.parse(r.asked_of) as string[],
  status: r.status,
  decidedBy: r.decided_by,
});

/** Permission requests shown in threads; the pending ones are what reactions and `allow`/`deny` answer. */
export class PermissionStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Records a request; false if it was recorded before (a replayed event). */
  add(p: Omit<PermissionRow, "status" | "decidedBy" | "messageEventId">): boolean {
    return (
      this.db
        .prepare(
          `INSERT OR IGNORE INTO permissions (request_id, session_id, room_id, root_event_id, summary, subject_json, asked_of, status, asked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
        )
        .run(p.requestId, p.sessionId, p.roomId, p.rootEventId, p.summary, p.subject && JSON.stringify(p.subject), JSON.stringify(p.askedOf), Date.now()).changes > 0
    );
  }

  setMessage(requestId: string, eventId: string): void {
    this.db.prepare("UPDATE permissions SET message_event_id = ? WHERE request_id = ?").run(eventId, requestId);
  }

  get(requestId: string): PermissionRow | undefined {
    const r = this.db.prepare("SELECT * FROM permissions WHERE request_id = ?").get(requestId) as Raw | undefined;
    return r && toRow(r);
  }

  byMessage(eventId: string): PermissionRow | undefined {
    const r = this.db.prepare("SELECT * FROM permissions WHERE message_event_id = ?").get(eventId) as Raw | undefined;
    return r && toRow(r);
  }

  /** The oldest pending request in a thread: the one `!oc allow` answers. */
  pendingInThread(roomId: string, rootEventId: string): PermissionRow | undefined {
    const r = this.db
      .prepare("SELECT * FROM permissions WHERE room_id = ? AND root_event_id = ? AND status = 'pending' ORDER BY asked_at LIMIT 1")
      .get(roomId, rootEventId) as Raw | undefined;
    return r && toRow(r);
  }

  pending(): PermissionRow[] {
    return (this.db.prepare("SELECT * FROM permissions WHERE status = 'pending' ORDER BY asked_at").all() as Raw[]).map(toRow);
  }

  /** Marks a decision; false if it was already decided (two people answering at once). */
  decide(requestId: string, status: Exclude<PermissionStatus, "pending">, by: string | null): boolean {
    return (
      this.db
        .prepare("UPDATE permissions SET status = ?, decided_by = ?, decided_at = ? WHERE request_id = ? AND status = 'pending'")
        .run(status, by, Date.now(), requestId).changes > 0
    );
  }
}

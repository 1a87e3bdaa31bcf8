import type { Db } from "../store/db.ts";

export type ScheduleStatus = "held" | "pending" | "firing" | "done" | "cancelled" | "failed";

export interface ScheduledPrompt {
  id: number;
  roomId: string;
  threadRoot: string | null;
  sessionId: string | null;
  text: string;
  notifyOnly: boolean;
  dueAt: number;
  cron: string | null;
  status: ScheduleStatus;
  markerEventId: string | null;
  createdBy: string;
  createdAt: number;
  firedCount: number;
  lastFiredAt: number | null;
  attempts: number;
  lastError: string | null;
}

interface Raw {
  id: number;
  room_id: string;
  thread_root: string | null;
  session_id: string | null;
  text: string;
  notify_only: number;
  due_at: number;
  cron: string | null;
  status: ScheduleStatus;
  marker_event_id: string | null;
  created_by: string;
  created_at: number;
  fired_count: number;
  last_fired_at: number | null;
  attempts: number;
  last_error: string | null;
}

const toRow = (r: Raw): ScheduledPrompt => ({
  id: r.id,
  roomId: r.room_id,
  threadRoot: r.thread_root,
  sessionId: r.session_id,
  text: r.text,
  notifyOnly: r.notify_only !== 0,
  dueAt: r.due_at,
  cron: r.cron,
  status: r.status,
  markerEventId: r.marker_event_id,
  createdBy: r.created_by,
  createdAt: r.created_at,
  firedCount: r.fired_count,
  lastFiredAt: r.last_fired_at,
  attempts: r.attempts,
  lastError: r.last_error,
});

export type NewSchedule = Pick<ScheduledPrompt, "roomId" | "threadRoot" | "sessionId" | "text" | "notifyOnly" | "dueAt" | "cron" | "createdBy"> & {
  status: "held" | "pending";
};

/**
 * How long the `send` CLI may hold a row while it posts the row's message (its requests time out
 * long before). A row held longer was left by a CLI that died mid-send: the bot's scheduler
 * releases it and posts the message itself, with the same transaction id, so the homeserver
 * drops the post if the CLI's went through after all.
 */
export const heldTimeoutMs = 5 * 60_000;

/**
 * Prompts due now or later, shared by the `send` CLI (which inserts) and the bot's scheduler
 * (which claims and fires). Both open the same SQLite file; WAL lets them work side by side.
 */
export class ScheduleStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  insert(p: NewSchedule, now = Date.now()): number {
    const info = this.db
      .prepare(
        `INSERT INTO scheduled_prompts (room_id, thread_root, session_id, text, notify_only, due_at, cron, status, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(p.roomId, p.threadRoot, p.sessionId, p.text, p.notifyOnly ? 1 : 0, p.dueAt, p.cron, p.status, p.createdBy, now);
    return Number(info.lastInsertRowid);
  }

  get(id: number): ScheduledPrompt | undefined {
    const r = this.db.prepare("SELECT * FROM scheduled_prompts WHERE id = ?").get(id) as Raw | undefined;
    return r && toRow(r);
  }

  /** A held row (its message being posted by the CLI) becomes due, with that message as its marker. */
  release(id: number, markerEventId: string): void {
    this.db.prepare("UPDATE scheduled_prompts SET status = 'pending', marker_event_id = ? WHERE id = ? AND status = 'held'").run(markerEventId, id);
  }

  /** Held rows older than `maxHeldMs` (their CLI died while posting) become due; how many. */
  releaseStaleHeld(now = Date.now(), maxHeldMs = heldTimeoutMs): number {
    return this.db.prepare("UPDATE scheduled_prompts SET status = 'pending' WHERE status = 'held' AND created_at <= ?").run(now - maxHeldMs).changes;
  }

  /** The CLI cannot tell whether its post went through: the bot posts it (same transaction id). */
  unhold(id: number): void {
    this.db.prepare("UPDATE scheduled_prompts SET status = 'pending' WHERE id = ? AND status = 'held'").run(id);
  }

  /** The CLI's post failed for certain: the row goes, unless the bot has taken it over meanwhile. */
  deleteHeld(id: number): boolean {
    return this.db.prepare("DELETE FROM scheduled_prompts WHERE id = ? AND status = 'held'").run(id).changes > 0;
  }

  setMarker(id: number, markerEventId: string): void {
    this.db.prepare("UPDATE scheduled_prompts SET marker_event_id = ? WHERE id = ?").run(markerEventId, id);
  }

  /**
   * Claims the due rows in one statement: whichever process runs it first gets each row, and
   * no row is claimed twice.
   */
  claimDue(now = Date.now(), limit = 20): ScheduledPrompt[] {
    const rows = this.db
      .prepare(
        `UPDATE scheduled_prompts SET status = 'firing'
         WHERE id IN (SELECT id FROM scheduled_prompts WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?)
         RETURNING *`,
      )
      .all(now, limit) as Raw[];
    return rows.map(toRow).sort((a, b) => a.dueAt - b.dueAt || a.id - b.id);
  }

  /**
   * Rows a stopped process had claimed but not handed over go back to pending (one bot per
   * database). Firing them again is safe: each step checks what an earlier attempt did.
   */
  recoverFiring(): number {
    return this.db.prepare("UPDATE scheduled_prompts SET status = 'pending' WHERE status = 'firing'").run().changes;
  }

  /** The occurrence was handed over: done, or pending again at `nextDueAt` for a recurring one. */
  fired(id: number, nextDueAt: number | null, now = Date.now()): void {
    this.db
      .prepare(
        `UPDATE scheduled_prompts SET status = ?, due_at = COALESCE(?, due_at), fired_count = fired_count + 1, last_fired_at = ?,
           attempts = 0, last_error = NULL, marker_event_id = NULL
         WHERE id = ? AND status IN ('firing', 'held')`,
      )
      .run(nextDueAt === null ? "done" : "pending", nextDueAt, now, id);
  }

  /** This attempt failed: try again at `dueAt`, or give up (`dueAt` null). */
  failed(id: number, error: string, dueAt: number | null): void {
    this.db
      .prepare("UPDATE scheduled_prompts SET status = ?, due_at = COALESCE(?, due_at), attempts = attempts + 1, last_error = ? WHERE id = ? AND status = 'firing'")
      .run(dueAt === null ? "failed" : "pending", dueAt, error, id);
  }

  /** Pending, held and firing rows of a room, soonest first (`!oc schedule`). */
  active(roomId: string): ScheduledPrompt[] {
    return (
      this.db.prepare("SELECT * FROM scheduled_prompts WHERE room_id = ? AND status IN ('held', 'pending', 'firing') ORDER BY due_at, id").all(roomId) as Raw[]
    ).map(toRow);
  }

  /**
   * Removes a prompt that has not fired, or the rest of a recurring one; false if none such in
   * the room. An occurrence firing right now still arrives, but `fired` then leaves the row cancelled.
   */
  cancel(id: number, roomId: string): boolean {
    return (
      this.db
        .prepare("UPDATE scheduled_prompts SET status = 'cancelled' WHERE id = ? AND room_id = ? AND status IN ('held', 'pending', 'firing')")
        .run(id, roomId).changes > 0
    );
  }

  delete(id: number): void {
    this.db.prepare("DELETE FROM scheduled_prompts WHERE id = ?").run(id);
  }
}

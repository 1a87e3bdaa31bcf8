import type { Db } from "./db.ts";

export interface InboxEvent {
  eventId: string;
  roomId: string;
  event: Record<string, unknown>;
}

/**
 * Matrix events the bot has accepted for processing. `accept` runs synchronously inside the
 * SDK's sync handler, before the sync token is saved: an event is either in here or will be
 * delivered again by the next sync.
 */
export class Inbox {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Returns false when the event was seen before (a replayed sync): the caller must not act on it. */
  accept(roomId: string, event: Record<string, unknown> & { event_id: string }): boolean {
    const info = this.db
      .prepare("INSERT OR IGNORE INTO inbox (event_id, room_id, event_json, status, received_at) VALUES (?, ?, ?, 'pending', ?)")
      .run(event.event_id, roomId, JSON.stringify(event), Date.now());
    return info.changes > 0;
  }

  markDone(eventId: string): void {
    this.db.prepare("UPDATE inbox SET status = 'done', processed_at = ?, event_json = '{}' WHERE event_id = ?").run(Date.now(), eventId);
  }

  isDone(eventId: string): boolean {
    const r = this.db.prepare("SELECT status FROM inbox WHERE event_id = ?").get(eventId) as { status: string } | undefined;
    return r?.status === "done";
  }

  pending(): InboxEvent[] {
    const rows = this.db
      .prepare("SELECT event_id, room_id, event_json FROM inbox WHERE status = 'pending' ORDER BY received_at, rowid")
      .all() as Array<{ event_id: string; room_id: string; event_json: string }>;
    return rows.map((r) => ({ eventId: r.event_id, roomId: r.room_id, event: JSON.parse(r.event_json) as Record<string, unknown> }));
  }

  /** Forget handled events older than the cut-off; a sync never replays events that old. */
  prune(olderThanMs: number): number {
    return this.db.prepare("DELETE FROM inbox WHERE status = 'done' AND processed_at < ?").run(Date.now() - olderThanMs).changes;
  }
}

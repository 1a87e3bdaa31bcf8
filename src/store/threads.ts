import type { Db } from "./db.ts";

/** A backend's own name for its threads ("opencode", "letta", …). */
export type Backend = string;

export interface ThreadRow {
  roomId: string;
  rootEventId: string;
  backend: Backend;
  sessionId: string;
  title: string | null;
  startedBy: string;
  createdAt: number;
  lastActivityAt: number;
  directory: string | null;
  model: string | null;
  agent: string | null;
  /** The OpenCode server the session lives on (opencode.servers); null or absent: the server `default`. */
  server?: string | null;
}

interface RawThread {
  room_id: string;
  root_event_id: string;
  backend: Backend;
  session_id: string;
  title: string | null;
  started_by: string;
  created_at: number;
  last_activity_at: number;
  directory: string | null;
  model: string | null;
  agent: string | null;
  server: string | null;
}

const toRow = (r: RawThread): ThreadRow => ({
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  backend: r.backend,
  sessionId: r.session_id,
  title: r.title,
  startedBy: r.started_by,
  createdAt: r.created_at,
  lastActivityAt: r.last_activity_at,
  directory: r.directory,
  model: r.model,
  agent: r.agent,
  server: r.server,
});

/** Which thread belongs to which agent session. */
export class ThreadStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  insert(
    t: Omit<ThreadRow, "createdAt" | "lastActivityAt" | "directory" | "model" | "agent" | "server"> & Partial<Pick<ThreadRow, "directory" | "model" | "agent" | "server">>,
    now = Date.now(),
  ): ThreadRow {
    const row: ThreadRow = { directory: null, model: null, agent: null, server: null, ...t, createdAt: now, lastActivityAt: now };
    this.db
      .prepare(
        `INSERT INTO threads (room_id, root_event_id, backend, session_id, title, started_by, created_at, last_activity_at, directory, model, agent, server)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(row.roomId, row.rootEventId, row.backend, row.sessionId, row.title, row.startedBy, now, now, row.directory, row.model, row.agent, row.server ?? null);
    return row;
  }

  setSetting(roomId: string, rootEventId: string, key: "model" | "agent", value: string | null): void {
    const column = key === "model" ? "model" : "agent";
    this.db.prepare(`UPDATE threads SET ${column} = ? WHERE room_id = ? AND root_event_id = ?`).run(value, roomId, rootEventId);
  }

  get(roomId: string, rootEventId: string): ThreadRow | undefined {
    const r = this.db.prepare("SELECT * FROM threads WHERE room_id = ? AND root_event_id = ?").get(roomId, rootEventId) as
      | RawThread
      | undefined;
    return r && toRow(r);
  }

  bySession(backend: Backend, sessionId: string): ThreadRow[] {
    const rows = this.db.prepare("SELECT * FROM threads WHERE backend = ? AND session_id = ?").all(backend, sessionId) as RawThread[];
    return rows.map(toRow);
  }

  inRoom(roomId: string): ThreadRow[] {
    const rows = this.db
      .prepare("SELECT * FROM threads WHERE room_id = ? ORDER BY last_activity_at DESC")
      .all(roomId) as RawThread[];
    return rows.map(toRow);
  }

  touch(roomId: string, rootEventId: string, now = Date.now()): void {
    this.db.prepare("UPDATE threads SET last_activity_at = ? WHERE room_id = ? AND root_event_id = ?").run(now, roomId, rootEventId);
  }

  delete(roomId: string, rootEventId: string): boolean {
    return this.db.prepare("DELETE FROM threads WHERE room_id = ? AND root_event_id = ?").run(roomId, rootEventId).changes > 0;
  }
}

import type { Db } from "../store/db.ts";

/** A prompt as a person sent it: the router hands it to a backend, the queue keeps it. */
export interface PromptRequest {
  roomId: string;
  eventId: string;
  sender: string;
  text: string;
  /** Files the person attached (downloaded from the homeserver). */
  files?: Array<{ mime: string; filename: string; data: Buffer }>;
}

export interface QueuedTurn<P> {
  id: number;
  key: string;
  roomId: string;
  rootEventId: string;
  req: PromptRequest;
  payload: P;
  queuedAt: number;
}

interface Raw {
  id: number;
  queue_key: string;
  room_id: string;
  root_event_id: string;
  prompt_event_id: string;
  sender: string;
  text: string;
  files_json: string | null;
  payload_json: string;
  queued_at: number;
}

type StoredFile = { mime: string; filename: string; data: string };

function toQueued<P>(r: Raw): QueuedTurn<P> {
  const files = r.files_json ? (JSON.parse(r.files_json) as StoredFile[]).map((f) => ({ ...f, data: Buffer.from(f.data, "base64") })) : undefined;
  return {
    id: r.id,
    key: r.queue_key,
    roomId: r.room_id,
    rootEventId: r.root_event_id,
    req: { roomId: r.room_id, eventId: r.prompt_event_id, sender: r.sender, text: r.text, ...(files ? { files } : {}) },
    payload: JSON.parse(r.payload_json) as P,
    queuedAt: r.queued_at,
  };
}

/**
 * Prompts waiting for the turn before them, in SQLite so that a restart keeps them; one queue
 * per backend and key, in insertion order. Synchronous, so a backend can add a prompt in the
 * same transaction that records it and marks its Matrix event handled.
 */
export class TurnQueue<P = Record<string, unknown>> {
  private readonly db: Db;
  readonly backend: string;

  constructor(db: Db, backend: string) {
    this.db = db;
    this.backend = backend;
  }

  /** Appends a prompt (or, `front`, puts it before every waiting one: an interrupting message goes next); returns its row id. */
  add(t: { key: string; roomId: string; rootEventId: string }, req: PromptRequest, payload: P, opts: { front?: boolean } = {}): number {
    const files = req.files?.length ? JSON.stringify(req.files.map((f) => ({ mime: f.mime, filename: f.filename, data: f.data.toString("base64") }))) : null;
    // Order is the id: the front is one below the smallest id in the table (ids may go negative).
    const id = opts.front ? (this.db.prepare("SELECT MIN(id) - 1 AS id FROM turn_queue").get() as { id: number | null }).id : null;
    const info = this.db
      .prepare(
        `INSERT INTO turn_queue (id, backend, queue_key, room_id, root_event_id, prompt_event_id, sender, text, files_json, payload_json, queued_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(id, this.backend, t.key, t.roomId, t.rootEventId, req.eventId, req.sender, req.text, files, JSON.stringify(payload), Date.now());
    return Number(info.lastInsertRowid);
  }

  /** The place of a queued prompt in its queue (1 = next), 0 when it is no longer queued. */
  position(key: string, id: number): number {
    const r = this.db
      .prepare("SELECT (SELECT COUNT(*) FROM turn_queue WHERE backend = ? AND queue_key = ? AND id <= ?) AS n, EXISTS (SELECT 1 FROM turn_queue WHERE id = ?) AS present")
      .get(this.backend, key, id, id) as { n: number; present: number };
    return r.present ? r.n : 0;
  }

  next(key: string): QueuedTurn<P> | undefined {
    const r = this.db.prepare("SELECT * FROM turn_queue WHERE backend = ? AND queue_key = ? ORDER BY id LIMIT 1").get(this.backend, key) as Raw | undefined;
    return r && toQueued<P>(r);
  }

  list(key: string): Array<QueuedTurn<P>> {
    return (this.db.prepare("SELECT * FROM turn_queue WHERE backend = ? AND queue_key = ? ORDER BY id").all(this.backend, key) as Raw[]).map((r) => toQueued<P>(r));
  }

  inRoom(roomId: string): Array<QueuedTurn<P>> {
    return (this.db.prepare("SELECT * FROM turn_queue WHERE backend = ? AND room_id = ? ORDER BY id").all(this.backend, roomId) as Raw[]).map((r) => toQueued<P>(r));
  }

  /** The prompts waiting in one thread (any backend's queue key), oldest first. */
  inThread(roomId: string, rootEventId: string): Array<QueuedTurn<P>> {
    return (this.db.prepare("SELECT * FROM turn_queue WHERE backend = ? AND room_id = ? AND root_event_id = ? ORDER BY id").all(this.backend, roomId, rootEventId) as Raw[]).map((r) => toQueued<P>(r));
  }

  all(): Array<QueuedTurn<P>> {
    return (this.db.prepare("SELECT * FROM turn_queue WHERE backend = ? ORDER BY id").all(this.backend) as Raw[]).map((r) => toQueued<P>(r));
  }

  count(key: string): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM turn_queue WHERE backend = ? AND queue_key = ?").get(this.backend, key) as { n: number }).n;
  }

  remove(id: number): boolean {
    return this.db.prepare("DELETE FROM turn_queue WHERE id = ?").run(id).changes > 0;
  }

  /** Drops a key's waiting prompts; returns them (their turns may need closing). */
  clear(key: string): Array<QueuedTurn<P>> {
    const all = this.list(key);
    this.db.prepare("DELETE FROM turn_queue WHERE backend = ? AND queue_key = ?").run(this.backend, key);
    return all;
  }

  /** Keys with prompts waiting, the longest-waiting first (checked at start-up, after recovery). */
  keys(): string[] {
    return (this.db.prepare("SELECT queue_key FROM turn_queue WHERE backend = ? GROUP BY queue_key ORDER BY MIN(id)").all(this.backend) as Array<{ queue_key: string }>).map((r) => r.queue_key);
  }
}

import type { Db } from "../store/db.ts";

export type Verbosity = "quiet" | "normal" | "verbose";
export type BusyMode = "queue" | "interrupt";
export const verbosities: readonly Verbosity[] = ["quiet", "normal", "verbose"];

interface Row {
  verbosity: Verbosity | null;
  busy_mode: BusyMode | null;
}

/** Per room and per thread conversation settings (`<prefix> verbosity …`); a thread's own wins. */
export class ConversationSettings {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  private row(roomId: string, root: string): Row | undefined {
    return this.db.prepare("SELECT verbosity, busy_mode FROM conversation_settings WHERE room_id = ? AND root_event_id = ?").get(roomId, root) as Row | undefined;
  }

  /** The setting in force in a thread (root) or at the top level of a room (root undefined), and where it comes from. */
  verbosity(roomId: string, root?: string): { value: Verbosity; from: "thread" | "room" | "default" } {
    const own = root !== undefined ? this.row(roomId, root)?.verbosity : null;
    if (own) return { value: own, from: "thread" };
    const room = this.row(roomId, "")?.verbosity;
    return room ? { value: room, from: "room" } : { value: "normal", from: "default" };
  }

  /** What a message sent while a turn runs does in this room: waits (queue) or stops the running step (interrupt). */
  busyMode(roomId: string): BusyMode {
    return this.row(roomId, "")?.busy_mode ?? "queue";
  }

  setBusyMode(roomId: string, value: BusyMode): void {
    this.db
      .prepare(
        `INSERT INTO conversation_settings (room_id, root_event_id, busy_mode) VALUES (?, '', ?)
         ON CONFLICT (room_id, root_event_id) DO UPDATE SET busy_mode = excluded.busy_mode`,
      )
      .run(roomId, value);
  }

  setVerbosity(roomId: string, root: string | undefined, value: Verbosity | null): void {
    this.db
      .prepare(
        `INSERT INTO conversation_settings (room_id, root_event_id, verbosity) VALUES (?, ?, ?)
         ON CONFLICT (room_id, root_event_id) DO UPDATE SET verbosity = excluded.verbosity`,
      )
      .run(roomId, root ?? "", value);
  }
}

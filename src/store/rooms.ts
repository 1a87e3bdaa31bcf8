import type { Db } from "./db.ts";

export interface RoomSettings {
  workspaceDir: string | null;
  defaultModel: string | null;
  defaultAgent: string | null;
  /** The OpenCode server new sessions of the room start on (`!oc server`); null: the rooms' default. */
  opencodeServer: string | null;
}

/** Per-room defaults, set by room commands. */
export class RoomStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  settings(roomId: string): RoomSettings {
    const r = this.db.prepare("SELECT workspace_dir, default_model, default_agent, opencode_server FROM rooms WHERE room_id = ?").get(roomId) as
      | { workspace_dir: string | null; default_model: string | null; default_agent: string | null; opencode_server: string | null }
      | undefined;
    return {
      workspaceDir: r?.workspace_dir ?? null,
      defaultModel: r?.default_model ?? null,
      defaultAgent: r?.default_agent ?? null,
      opencodeServer: r?.opencode_server ?? null,
    };
  }

  set(roomId: string, key: keyof RoomSettings, value: string | null): void {
    const column = { workspaceDir: "workspace_dir", defaultModel: "default_model", defaultAgent: "default_agent", opencodeServer: "opencode_server" }[key];
    this.db.prepare("INSERT OR IGNORE INTO rooms (room_id, joined_at) VALUES (?, ?)").run(roomId, Date.now());
    this.db.prepare(`UPDATE rooms SET ${column} = ? WHERE room_id = ?`).run(value, roomId);
  }
}

import type { Db } from "../store/db.ts";

export interface RoomAgent {
  roomId: string;
  agentId: string;
  agentName: string;
  boundBy: string;
  boundAt: number;
}

export interface LettaTurnRow {
  id: number;
  roomId: string;
  rootEventId: string;
  agentId: string;
  promptEventId: string;
  otid: string;
  promptedBy: string;
  replyEventId: string | null;
  status: "running" | "done" | "failed";
  startedAt: number;
}

interface RawTurn {
  id: number;
  room_id: string;
  root_event_id: string;
  agent_id: string;
  prompt_event_id: string;
  otid: string;
  prompted_by: string;
  reply_event_id: string | null;
  status: LettaTurnRow["status"];
  started_at: number;
}

const toTurn = (r: RawTurn): LettaTurnRow => ({
  id: r.id,
  roomId: r.room_id,
  rootEventId: r.root_event_id,
  agentId: r.agent_id,
  promptEventId: r.prompt_event_id,
  otid: r.otid,
  promptedBy: r.prompted_by,
  replyEventId: r.reply_event_id,
  status: r.status,
  startedAt: r.started_at,
});

/** Which agent a room talks to (migrations/003_letta.sql). */
export class LettaRoomStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  get(roomId: string): RoomAgent | undefined {
    const r = this.db.prepare("SELECT * FROM letta_rooms WHERE room_id = ?").get(roomId) as
      | { room_id: string; agent_id: string; agent_name: string; bound_by: string; bound_at: number }
      | undefined;
    return r && { roomId: r.room_id, agentId: r.agent_id, agentName: r.agent_name, boundBy: r.bound_by, boundAt: r.bound_at };
  }

  /** The rooms bound to an agent. */
  roomsWith(agentId: string): string[] {
    return (this.db.prepare("SELECT room_id FROM letta_rooms WHERE agent_id = ?").all(agentId) as Array<{ room_id: string }>).map((r) => r.room_id);
  }

  bind(roomId: string, agentId: string, agentName: string, by: string, now = Date.now()): void {
    this.db
      .prepare(
        `INSERT INTO letta_rooms (room_id, agent_id, agent_name, bound_by, bound_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (room_id) DO UPDATE SET agent_id = excluded.agent_id, agent_name = excluded.agent_name,
           bound_by = excluded.bound_by, bound_at = excluded.bound_at`,
      )
      .run(roomId, agentId, agentName, by, now);
  }
}

/** What a turn sends, kept while it runs so that a restarted bot can send it if Letta never got it. */
export interface LettaPrompt {
  agentName: string;
  /** What is sent to the agent (attributed: "[Alice] …"). */
  text: string;
  title: string | undefined;
  /** The turn that answers an approval request (`text` is unused): the request's row, and the answer. */
  approval?: { id: number; approve: boolean; reason?: string | undefined } | undefined;
}

/** A running turn's prompt, and when it was first handed to Letta (absent: never). */
export interface PendingPrompt {
  prompt: LettaPrompt;
  sentAt: number | undefined;
}

// The prompt of a running turn lives in the kv table under this key (letta_turns has no column for it).
const promptKey = (id: number): string => `letta.turn.${id}.prompt`;

/** Letta turns in flight and done. */
export class LettaTurnStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Records a running turn, and with it (given) what it sends: in the caller's transaction, they commit together. */
  start(t: Pick<LettaTurnRow, "roomId" | "rootEventId" | "agentId" | "promptEventId" | "otid" | "promptedBy">, prompt?: LettaPrompt, now = Date.now()): LettaTurnRow {
    const info = this.db
      .prepare(
        `INSERT INTO letta_turns (room_id, root_event_id, agent_id, prompt_event_id, otid, prompted_by, status, started_at)
         VALUES (?, ?, ?, ?, ?, ?, 'running', ?)`,
      )
      .run(t.roomId, t.rootEventId, t.agentId, t.promptEventId, t.otid, t.promptedBy, now);
    const id = Number(info.lastInsertRowid);
    if (prompt) this.setPending(id, { prompt, sentAt: undefined });
    return { ...t, id, replyEventId: null, status: "running", startedAt: now };
  }

  /** The prompt of a running turn and when it went out, if it was recorded with one. */
  pending(id: number): PendingPrompt | undefined {
    const r = this.db.prepare("SELECT value FROM kv WHERE key = ?").get(promptKey(id)) as { value: string } | undefined;
    return r && (JSON.parse(r.value) as PendingPrompt);
  }

  /** Written before the message goes to Letta: after a crash, a turn without it was provably never sent. */
  markSent(id: number, at = Date.now()): void {
    const p = this.pending(id);
    if (p && p.sentAt === undefined) this.setPending(id, { ...p, sentAt: at });
  }

  private setPending(id: number, p: PendingPrompt): void {
    this.db.prepare("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(promptKey(id), JSON.stringify(p));
  }

  setReply(id: number, replyEventId: string): void {
    this.db.prepare("UPDATE letta_turns SET reply_event_id = ? WHERE id = ?").run(replyEventId, id);
  }

  finish(id: number, status: "done" | "failed", stats: { steps?: number | undefined; tokens?: number | undefined; firstTokenMs?: number | undefined } = {}): void {
    this.db.transaction(() => {
      this.db
        .prepare("UPDATE letta_turns SET status = ?, finished_at = ?, steps = ?, tokens = ?, first_token_ms = ? WHERE id = ?")
        .run(status, Date.now(), stats.steps ?? null, stats.tokens ?? null, stats.firstTokenMs ?? null, id);
      this.db.prepare("DELETE FROM kv WHERE key = ?").run(promptKey(id));
    })();
  }

  get(id: number): LettaTurnRow | undefined {
    const r = this.db.prepare("SELECT * FROM letta_turns WHERE id = ?").get(id) as RawTurn | undefined;
    return r && toTurn(r);
  }

  running(): LettaTurnRow[] {
    return (this.db.prepare("SELECT * FROM letta_turns WHERE status = 'running' ORDER BY id").all() as RawTurn[]).map(toTurn);
  }
}

import type { Db } from "../store/db.ts";
import type { SavedState } from "./state.ts";

/** A live reply's record while its turn runs: the event id of every piece, and what it showed. */
export interface LiveReplyRecord {
  eventIds: Array<string | null>;
  state: SavedState | undefined;
  txnBase: string | null;
}

/** The `live_replies` table: written as the reply grows, deleted when its turn ends. */
export class LiveReplyStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  get(backend: string, turnId: number): LiveReplyRecord | undefined {
    const r = this.db.prepare("SELECT event_ids, state_json, txn_base FROM live_replies WHERE backend = ? AND turn_id = ?").get(backend, turnId) as
      | { event_ids: string; state_json: string | null; txn_base: string | null }
      | undefined;
    if (!r) return undefined;
    return { eventIds: JSON.parse(r.event_ids) as Array<string | null>, state: r.state_json ? (JSON.parse(r.state_json) as SavedState) : undefined, txnBase: r.txn_base };
  }

  /** The record's transaction id base, made and written on first use (before anything is posted). */
  txnBase(backend: string, turnId: number, fresh: string): string {
    this.db.prepare("INSERT INTO live_replies (backend, turn_id, txn_base) VALUES (?, ?, ?) ON CONFLICT (backend, turn_id) DO UPDATE SET txn_base = COALESCE(txn_base, excluded.txn_base)").run(backend, turnId, fresh);
    return (this.db.prepare("SELECT txn_base FROM live_replies WHERE backend = ? AND turn_id = ?").get(backend, turnId) as { txn_base: string }).txn_base;
  }

  setEventIds(backend: string, turnId: number, eventIds: Array<string | null>): void {
    this.db
      .prepare("INSERT INTO live_replies (backend, turn_id, event_ids) VALUES (?, ?, ?) ON CONFLICT (backend, turn_id) DO UPDATE SET event_ids = excluded.event_ids")
      .run(backend, turnId, JSON.stringify(eventIds));
  }

  setState(backend: string, turnId: number, state: SavedState): void {
    this.db
      .prepare("INSERT INTO live_replies (backend, turn_id, state_json) VALUES (?, ?, ?) ON CONFLICT (backend, turn_id) DO UPDATE SET state_json = excluded.state_json")
      .run(backend, turnId, JSON.stringify(state));
  }

  delete(backend: string, turnId: number): void {
    this.db.prepare("DELETE FROM live_replies WHERE backend = ? AND turn_id = ?").run(backend, turnId);
  }
}

// One prompt's answer in the servers phase (a Turn), how it is summed up per server, and the
// reads it needs: the bot's database (read-only) and the relations of the bot's events.
import Database from "better-sqlite3";
import type { MatrixEvent } from "../../../test/harness/matrix-user.ts";
import { countBy } from "../lists.ts";
import { splitSummary, summarize } from "../stats.ts";
import type { ServerTurns } from "./result.ts";

/** The relation of one of the bot's events (thread, reply, edit). */
export const rel = (e: MatrixEvent): { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } =>
  (e.content["m.relates_to"] ?? {}) as { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } };
/** The body of one of the bot's events; an edit's new one. */
export const bodyOf = (e: MatrixEvent): string => String((e.content["m.new_content"] as { body?: unknown } | undefined)?.body ?? e.content.body ?? "");

/** One prompt's answer: ack, first reply, final; the session's idle time from its server's event stream. */
export interface Turn {
  server: string;
  room: string;
  root?: string;
  sentAt: number;
  ok: boolean;
  error?: string;
  ackMs?: number;
  putDoneAt?: number;
  ackId?: string;
  ackAt?: number;
  replyId?: string;
  replyAt?: number;
  finalAt?: number;
  finalBody?: string;
  finishMs?: number;
  totalMs?: number;
  sessionId?: string;
  idleAt?: number;
  finalId?: string;
  /** Alice's PUT answered → the bot's PUT at the proxy; its PUT; answer → Alice's sync (ack: the 👀 or reply; finish: from idle). */
  ackSplit?: Split;
  finishSplit?: Split;
}

export interface Split { bot: number; put: number; sync: number }

export function threadSession(dbPath: string, root: string): string | undefined {
  return dbRow<{ session_id: string }>(dbPath, "SELECT session_id FROM threads WHERE root_event_id = ?", root)?.session_id;
}

/** One row from the bot's database (read-only); undefined when there is none or the file is gone. */
export function dbRow<T>(dbPath: string, sql: string, ...params: unknown[]): T | undefined {
  try {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).get(...params) as T | undefined;
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}

export function turnSummary(server: string, turns: Turn[], lateMs: number): ServerTurns {
  const lost = turns.filter((t) => !t.ok);
  const has = (k: "ackMs" | "finishMs" | "totalMs"): number[] => turns.flatMap((t) => (t[k] === undefined ? [] : [t[k]]));
  return {
    server,
    n: turns.length,
    lost: lost.length,
    late: turns.filter((t) => t.ok && t.finishMs !== undefined && t.finishMs > lateMs).length,
    ackMs: summarize(has("ackMs")),
    finishMs: summarize(has("finishMs")),
    totalMs: summarize(has("totalMs")),
    errors: countBy(lost.map((t) => t.error ?? "?")),
    ackSplitMs: splitSummary(turns.flatMap((t) => (t.ackSplit ? [t.ackSplit] : []))),
    finishSplitMs: splitSummary(turns.flatMap((t) => (t.finishSplit ? [t.finishSplit] : []))),
  };
}

// The questions table (migrations/011_questions.sql): what OpenCode's agent asked in a thread,
// the answers given so far (several questions are answered in order), and how it ended.
import type { QuestionInfo } from "@opencode-ai/sdk/v2";
import type { Db } from "../store/db.ts";

export type QuestionStatus = "pending" | "answered" | "rejected" | "gone";

export interface QuestionRow {
  requestId: string;
  sessionId: string;
  roomId: string;
  rootEventId: string;
  messageEventId: string | null;
  questions: QuestionInfo[];
  /** One entry per question answered so far, in order; each is the labels chosen (or one typed answer). */
  answers: string[][];
  /** Who gave each answer; empty when it came from outside Matrix. */
  answeredBy: string[];
  askedOf: string;
  status: QuestionStatus;
}

type Raw = Record<string, string | number | null>;

function parseList<T>(json: string | number | null | undefined): T[] {
  try {
    const v = JSON.parse(String(json)) as unknown;
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

const toRow = (r: Raw): QuestionRow => ({
  requestId: String(r.request_id),
  sessionId: String(r.session_id),
  roomId: String(r.room_id),
  rootEventId: String(r.root_event_id),
  messageEventId: r.message_event_id === null ? null : String(r.message_event_id),
  questions: parseList<QuestionInfo>(r.questions_json),
  answers: parseList<string[]>(r.answers_json),
  answeredBy: parseList<string>(r.answered_by),
  askedOf: String(r.asked_of),
  status: r.status as QuestionStatus,
});

export class QuestionStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Records a question; false if it was recorded before (a replayed event, or a reconcile that saw it too). */
  add(q: Pick<QuestionRow, "requestId" | "sessionId" | "roomId" | "rootEventId" | "questions" | "askedOf">): boolean {
    return (
      this.db
        .prepare(
          `INSERT OR IGNORE INTO questions (request_id, session_id, room_id, root_event_id, questions_json, asked_of, status, asked_at)
           VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`,
        )
        .run(q.requestId, q.sessionId, q.roomId, q.rootEventId, JSON.stringify(q.questions), q.askedOf, Date.now()).changes > 0
    );
  }

  setMessage(requestId: string, eventId: string): void {
    this.db.prepare("UPDATE questions SET message_event_id = ? WHERE request_id = ?").run(eventId, requestId);
  }

  get(requestId: string): QuestionRow | undefined {
    const r = this.db.prepare("SELECT * FROM questions WHERE request_id = ?").get(requestId) as Raw | undefined;
    return r && toRow(r);
  }

  byMessage(eventId: string): QuestionRow | undefined {
    const r = this.db.prepare("SELECT * FROM questions WHERE message_event_id = ?").get(eventId) as Raw | undefined;
    return r && toRow(r);
  }

  /** The oldest pending question of a thread: the one a typed answer goes to. */
  pendingInThread(roomId: string, rootEventId: string): QuestionRow | undefined {
    const r = this.db
      .prepare("SELECT * FROM questions WHERE room_id = ? AND root_event_id = ? AND status = 'pending' ORDER BY asked_at, rowid LIMIT 1")
      .get(roomId, rootEventId) as Raw | undefined;
    return r && toRow(r);
  }

  pending(): QuestionRow[] {
    return (this.db.prepare("SELECT * FROM questions WHERE status = 'pending' ORDER BY asked_at, rowid").all() as Raw[]).map(toRow);
  }

  /**
   * Keeps the answers so far of a request with several questions; false if someone else
   * answered this question first (the row no longer has `before` answers).
   */
  answerPart(requestId: string, before: number, answers: string[][], answeredBy: string[]): boolean {
    return (
      this.db
        .prepare("UPDATE questions SET answers_json = ?, answered_by = ? WHERE request_id = ? AND status = 'pending' AND json_array_length(answers_json) = ?")
        .run(JSON.stringify(answers), JSON.stringify(answeredBy), requestId, before).changes > 0
    );
  }

  /** Closes a pending question; false if it was closed already. Answers are kept as given when none are passed. */
  close(requestId: string, status: Exclude<QuestionStatus, "pending">, answers?: { answers: string[][]; answeredBy: string[] }): boolean {
    const sql = answers
      ? "UPDATE questions SET status = ?, answers_json = ?, answered_by = ?, decided_at = ? WHERE request_id = ? AND status = 'pending'"
      : "UPDATE questions SET status = ?, decided_at = ? WHERE request_id = ? AND status = 'pending'";
    const args = answers ? [status, JSON.stringify(answers.answers), JSON.stringify(answers.answeredBy), Date.now(), requestId] : [status, Date.now(), requestId];
    return this.db.prepare(sql).run(...args).changes > 0;
  }
}

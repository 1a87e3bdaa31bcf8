import type { Event, QuestionInfo } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill, plainText } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { OpencodeConnection } from "./connection.ts";
import { describeError } from "./errors.ts";
import { withPlainBody } from "./permission-text.ts";
import type { QuestionRow, QuestionStore } from "./question-store.ts";
import { keycaps, optionOfReaction, parseAnswer, questionMarkdown, reactionCount } from "./question-text.ts";

interface AskedEvent {
  id: string;
  sessionID: string;
  questions: QuestionInfo[];
}

/** What became of a typed answer: no question was waiting, it was taken, or it was refused (the reason is one line). */
export type TypedAnswer = { kind: "none" } | { kind: "taken" } | { kind: "refused"; why: string };

/**
 * The questions OpenCode's agent asks with its `question` tool, asked and answered in the
 * session's thread: one message with the questions and numbered options (the bot pre-adds
 * 1️⃣ 2️⃣ …), answered by a number reaction, by `!oc answer <n or text>`, or by any message in
 * the thread while a question waits. Several questions in one request are answered in order.
 * Questions live in SQLite, so one asked before a restart can be answered after it.
 */
export class QuestionDesk {
  private readonly d: {
    conn: OpencodeConnection;
    store: QuestionStore;
    threads: ThreadStore;
    sender: MatrixSender;
    log: Logger;
    prefix: string;
    names: DisplayNames;
    /** Who asked the turn running in a session (the question mentions them). */
    prompter: (sessionId: string) => string | undefined;
    directoryOf: (sessionId: string) => string;
    /** The directory the connection's client uses when given none. */
    workspaceDir: string;
    /** With several OpenCode servers: the threads of this desk's server (server-scope.ts). Default: all. */
    owns?: ((row: { roomId: string; rootEventId: string }) => boolean) | undefined;
  };
  /** Requests whose answer is on its way to OpenCode: their `question.replied` is our own. */
  private readonly sending = new Set<string>();
  private readonly owns: (row: { roomId: string; rootEventId: string }) => boolean;

  constructor(deps: QuestionDesk["d"]) {
    this.d = deps;
    this.owns = deps.owns ?? (() => true);
    deps.conn.onEvent((e) => void this.onEvent(e).catch((err: unknown) => this.d.log.error({ err }, "question event failed")));
  }

  private async onEvent(event: Event): Promise<void> {
    if (event.type === "question.asked") await this.ask(event.properties as AskedEvent);
    else if (event.type === "question.replied" || event.type === "question.rejected") {
      const { requestID } = event.properties;
      if (this.sending.has(requestID)) return;
      const answers = event.type === "question.replied" ? event.properties.answers : undefined;
      const closed = answers
        ? this.d.store.close(requestID, "answered", { answers, answeredBy: answers.map(() => "") })
        : this.d.store.close(requestID, "rejected");
      const row = this.d.store.get(requestID);
      if (closed && row) await this.show(row);
    }
  }

  private async ask(req: AskedEvent): Promise<void> {
    const thread = this.d.threads.bySession("opencode", req.sessionID)[0];
    if (!thread || !Array.isArray(req.questions) || req.questions.length === 0) return;
    const who = this.d.prompter(req.sessionID) ?? thread.startedBy;
    const row = { requestId: req.id, sessionId: req.sessionID, roomId: thread.roomId, rootEventId: thread.rootEventId, questions: req.questions, askedOf: who };
    if (!this.d.store.add(row)) return;
    const text = await this.render({ ...row, answers: [], answeredBy: [], status: "pending" });
    const target = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId };
    // Mentions the asker: this message is the push (its plain body is what a lock screen shows).
    const eventId = await this.d.sender.send(thread.roomId, threadMessage(target, text, { mentions: [who] }));
    this.d.store.setMessage(req.id, eventId);
    // One tap on a phone: the numbers are already there to click.
    for (const key of keycaps.slice(0, reactionCount(req.questions))) await this.d.sender.react(thread.roomId, eventId, key);
  }

  /**
   * A reaction on one of our question messages. Returns false if it was not one. It counts
   * only in the question's own room (a reaction can point at an event id of any room), and
   * only a number that is one of the current question's options.
   */
  async onReaction(roomId: string, messageEventId: string, key: string, by: string): Promise<boolean> {
    const row = this.d.store.byMessage(messageEventId);
    const n = optionOfReaction(key);
    if (!row || row.roomId !== roomId || n === undefined || !this.owns(row)) return false;
    const q = row.questions[row.answers.length];
    const label = q?.options[n - 1]?.label;
    if (row.status !== "pending" || label === undefined) return true;
    const result = await this.give(row, [label], by);
    if (result.kind === "refused") this.d.log.warn({ requestId: row.requestId, why: result.why }, "a reacted answer was not taken");
    return true;
  }

  /** A typed answer in a thread: `!oc answer …`, or a message written while a question waits. */
  async answerText(roomId: string, rootEventId: string, text: string, by: string): Promise<TypedAnswer> {
    const row = this.pending(roomId, rootEventId);
    const q = row?.questions[row.answers.length];
    if (!row || !q) return { kind: "none" };
    const parsed = parseAnswer(q, text);
    if ("refused" in parsed) return { kind: "refused", why: parsed.refused };
    return this.give(row, parsed.answer, by);
  }

  /** Whether a question waits for an answer in this thread. */
  pendingIn(roomId: string, rootEventId: string): boolean {
    return this.pending(roomId, rootEventId) !== undefined;
  }

  private pending(roomId: string, rootEventId: string): QuestionRow | undefined {
    const row = this.d.store.pendingInThread(roomId, rootEventId);
    return row && this.owns(row) ? row : undefined;
  }

  /**
   * One more answer: kept while questions remain, sent to OpenCode with the last one. Only one
   * answer per request is in flight at a time (two people tapping at once: the second waits its turn).
   */
  private async give(row: QuestionRow, answer: string[], by: string): Promise<TypedAnswer> {
    if (this.sending.has(row.requestId)) return { kind: "refused", why: "Another answer to this question is on its way; look at the question again in a moment." };
    const answers = [...row.answers, answer];
    const answeredBy = [...row.answeredBy, by];
    if (answers.length < row.questions.length) {
      if (!this.d.store.answerPart(row.requestId, row.answers.length, answers, answeredBy)) return { kind: "refused", why: "Someone answered that question just now." };
      await this.show({ ...row, answers, answeredBy });
      return { kind: "taken" };
    }
    this.sending.add(row.requestId);
    try {
      const res = await this.d.conn.client.question.reply({ requestID: row.requestId, directory: this.d.directoryOf(row.sessionId), answers });
      if (res.error !== undefined) {
        // The server no longer knows it (answered in the TUI, the turn stopped, or the server restarted).
        if (this.d.store.close(row.requestId, "gone")) await this.show({ ...row, status: "gone" });
        return { kind: "refused", why: `OpenCode did not take the answer: ${describeError(res.error)}` };
      }
      if (this.d.store.close(row.requestId, "answered", { answers, answeredBy })) await this.show({ ...row, answers, answeredBy, status: "answered" });
      return { kind: "taken" };
    } finally {
      this.sending.delete(row.requestId);
    }
  }

  /**
   * On (re)connecting: questions that went away while the bot was not listening are closed in
   * their threads, and questions asked meanwhile are posted. The server keeps questions per
   * project directory, so each directory with a pending question is asked.
   */
  async reconcile(): Promise<void> {
    const pending = this.d.store.pending().filter((row) => this.owns(row));
    const directories = new Set([this.d.workspaceDir, ...pending.map((row) => this.d.directoryOf(row.sessionId))]);
    const live = new Map<string, AskedEvent>();
    for (const directory of directories) {
      const res = await this.d.conn.client.question.list({ directory });
      if (res.error !== undefined || !res.data) throw new Error(`OpenCode did not list its questions: ${describeError(res.error)}`);
      for (const q of res.data) live.set(q.id, q);
    }
    for (const row of pending) {
      if (live.has(row.requestId) || this.sending.has(row.requestId)) continue;
      if (this.d.store.close(row.requestId, "gone")) await this.show({ ...row, status: "gone" });
    }
    for (const q of live.values()) if (!this.d.store.get(q.id)) await this.ask(q);
  }

  private async render(row: Pick<QuestionRow, "questions" | "answers" | "answeredBy" | "status" | "roomId" | "askedOf">): Promise<string> {
    const nameOf = async (id: string): Promise<string> => pill(id, await this.d.names.get(row.roomId, id)).markdown;
    const names = new Map<string, string>();
    for (const id of new Set(row.answeredBy.filter((x) => x !== ""))) names.set(id, await nameOf(id));
    return questionMarkdown(row, { asker: await nameOf(row.askedOf), names, prefix: this.d.prefix, label: "OpenCode" });
  }

  /** Edits the question message to its present state (answers so far, or how it ended). */
  private async show(row: QuestionRow): Promise<void> {
    if (!row.messageEventId) return;
    const text = await this.render(row);
    await this.d.sender
      .send(row.roomId, withPlainBody(editMessage(row.messageEventId, text, {}), plainText(text)))
      .catch((err: unknown) => this.d.log.warn({ err, requestId: row.requestId }, "could not update the question message"));
  }
}

import type { Event, Message, Part } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { LiveMessage } from "../render/live-message.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { TurnRow, TurnStore } from "../store/turns.ts";
import type { OpencodeConnection } from "./connection.ts";
import { ascendingId } from "./ids.ts";
import { TurnView } from "./turn-view.ts";

export interface PromptRequest {
  roomId: string;
  eventId: string;
  sender: string;
  text: string;
}

interface ActiveTurn {
  row: TurnRow;
  view: TurnView;
  live: LiveMessage;
  /** Set once the server reports the session busy for this turn: an earlier turn's late idle must not end it. */
  sawBusy: boolean;
  finishing: boolean;
}

export interface BackendDeps {
  db: Db;
  conn: OpencodeConnection;
  threads: ThreadStore;
  turns: TurnStore;
  inbox: Inbox;
  sender: MatrixSender;
  log: Logger;
  workspaceDir: string;
  editWindowMs: number;
}

const titleFrom = (text: string): string => {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || "Matrix session";
};

/** OpenCode sessions behind Matrix threads: creates and prompts sessions, streams each turn into its thread. */
export class OpencodeBackend {
  private readonly d: BackendDeps;
  private readonly active = new Map<string, ActiveTurn>();
  private readonly queues = new Map<string, Array<{ thread: ThreadRow; req: PromptRequest }>>();
  turnsStarted = 0;

  constructor(deps: BackendDeps) {
    this.d = deps;
    deps.conn.onEvent((e) => this.onEvent(e));
  }

  get activeTurns(): number {
    return this.active.size;
  }

  /** `!oc <prompt>` at top level: a new session whose thread is rooted at the prompt. */
  async startSession(req: PromptRequest, threadRoot: string): Promise<ThreadRow> {
    const title = titleFrom(req.text);
    const res = await this.d.conn.client.session.create({ title });
    if (!res.data) throw new Error(`OpenCode could not create a session: ${describeError(res.error)}`);
    const thread = this.d.threads.insert({
      roomId: req.roomId,
      rootEventId: threadRoot,
      backend: "opencode",
      sessionId: res.data.id,
      title,
      startedBy: req.sender,
    });
    await this.prompt(thread, req);
    return thread;
  }

  /** A prompt for a mapped thread: sent now, or queued behind the turn that is running. */
  async prompt(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    if (this.active.has(thread.sessionId)) {
      const queue = this.queues.get(thread.sessionId) ?? [];
      queue.push({ thread, req });
      this.queues.set(thread.sessionId, queue);
      return { queued: queue.length };
    }
    await this.send(thread, req);
    return { queued: 0 };
  }

  private async send(thread: ThreadRow, req: PromptRequest): Promise<void> {
    const messageId = ascendingId("msg");
    // The turn row and the inbox mark commit together: after a crash the prompt is either
    // recorded as sent-or-sending (and reconciled by its message id) or still pending.
    const row = this.d.db.transaction(() => {
      const r = this.d.turns.start({
        roomId: thread.roomId,
        rootEventId: thread.rootEventId,
        sessionId: thread.sessionId,
        promptEventId: req.eventId,
        promptMessageId: messageId,
        promptedBy: req.sender,
        promptText: req.text,
      });
      this.d.inbox.markDone(req.eventId);
      return r;
    })();
    this.d.threads.touch(thread.roomId, thread.rootEventId);
    const turn = this.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId });
    turn.live.update(turn.view.render({ final: false, durationMs: 0 }));
    this.turnsStarted++;
    const res = await this.d.conn.client.session.promptAsync({
      sessionID: thread.sessionId,
      messageID: messageId,
      parts: [{ type: "text", text: req.text }],
    });
    if (res.error !== undefined || (res.response && !res.response.ok)) {
      await this.end(turn, `⚠️ **OpenCode did not accept the prompt:** ${describeError(res.error)}`);
    }
  }

  private track(row: TurnRow, target: ThreadTarget): ActiveTurn {
    const live = new LiveMessage({
      sender: this.d.sender,
      target,
      windowMs: this.d.editWindowMs,
      log: this.d.log,
      eventId: row.replyEventId,
      onPosted: (id) => this.d.turns.setReply(row.id, id),
    });
    const turn: ActiveTurn = { row, view: new TurnView(this.d.workspaceDir, row.promptMessageId ?? undefined), live, sawBusy: false, finishing: false };
    this.active.set(row.sessionId, turn);
    return turn;
  }

  private onEvent(event: Event): void {
    const props = event.properties as { sessionID?: string };
    const sessionId = props.sessionID;
    if (sessionId === undefined) return;
    const turn = this.active.get(sessionId);
    if (!turn || turn.finishing) return;
    if (event.type === "session.status") {
      if (event.properties.status.type === "busy") turn.sawBusy = true;
      else if (event.properties.status.type === "idle" && turn.sawBusy) void this.finish(turn);
      return;
    }
    if (event.type === "session.idle") {
      if (turn.sawBusy) void this.finish(turn);
      return;
    }
    if (event.type === "message.updated" && event.properties.info.role === "assistant") turn.sawBusy = true;
    if (turn.view.apply(event)) turn.live.update(turn.view.render({ final: false, durationMs: Date.now() - turn.row.startedAt }));
  }

  /** The session went idle: render the final state from the server's own record of the turn. */
  private async finish(turn: ActiveTurn): Promise<void> {
    if (turn.finishing) return;
    turn.finishing = true;
    try {
      const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId });
      if (res.data) turn.view.load(res.data as Array<{ info: Message; parts: Part[] }>);
    } catch (err) {
      this.d.log.warn({ err, sessionId: turn.row.sessionId }, "could not read the session's messages; finishing from the stream");
    }
    await this.end(turn);
  }

  private async end(turn: ActiveTurn, failure?: string): Promise<void> {
    turn.finishing = true;
    const error = failure ?? sessionErrorText(turn.view);
    const aborted = turn.view.error?.name === "MessageAbortedError";
    const text = turn.view.render({ final: true, durationMs: Date.now() - turn.row.startedAt, ...(error && !aborted ? { error } : {}), aborted });
    try {
      await turn.live.finish(text);
    } finally {
      this.d.turns.finish(turn.row.id, error && !aborted ? "failed" : "done");
      this.active.delete(turn.row.sessionId);
    }
    const next = this.queues.get(turn.row.sessionId)?.shift();
    if (next) await this.send(next.thread, next.req).catch((err: unknown) => this.d.log.error({ err }, "queued prompt failed"));
  }

  /**
   * Brings turns up to date with the server: at start-up, the turns a previous process left
   * running (re-sending a prompt that never arrived, finishing one that ended meanwhile); after
   * a reconnect, the turns that ended while the event stream was down.
   */
  async reconcile(): Promise<void> {
    const statuses = (await this.d.conn.client.session.status()).data ?? {};
    for (const row of this.d.turns.running()) {
      if (this.active.get(row.sessionId)?.row.id === row.id) continue;
      if (!this.d.threads.get(row.roomId, row.rootEventId)) {
        this.d.turns.finish(row.id, "failed");
        continue;
      }
      const turn = this.track(row, { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.promptEventId });
      const res = await this.d.conn.client.session.messages({ sessionID: row.sessionId });
      const messages = (res.data ?? []) as Array<{ info: Message; parts: Part[] }>;
      const arrived = messages.some((m) => m.info.id === row.promptMessageId);
      if (!arrived && row.promptMessageId !== null) {
        this.d.log.info({ sessionId: row.sessionId, turn: row.id }, "prompt never reached OpenCode; sending it now");
        turn.live.update(turn.view.render({ final: false, durationMs: 0 }));
        const sent = await this.d.conn.client.session.promptAsync({
          sessionID: row.sessionId,
          messageID: row.promptMessageId,
          parts: [{ type: "text", text: row.promptText }],
        });
        if (sent.error !== undefined) await this.end(turn, `⚠️ **OpenCode did not accept the prompt:** ${describeError(sent.error)}`);
        continue;
      }
      turn.view.load(messages);
      if (statuses[row.sessionId]?.type === "busy") {
        turn.sawBusy = true;
        turn.live.update(turn.view.render({ final: false, durationMs: Date.now() - row.startedAt }));
      } else {
        await this.finish(turn);
      }
    }
    for (const turn of [...this.active.values()]) {
      if (turn.sawBusy && !turn.finishing && statuses[turn.row.sessionId]?.type !== "busy") await this.finish(turn);
    }
  }

  /** Waits until every reply being written has reached Matrix (used on shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.active.values()].map((t) => t.live.settle()));
  }
}

function sessionErrorText(view: TurnView): string | undefined {
  const e = view.error;
  if (!e) return undefined;
  return `⚠️ **${e.name}:** ${e.message}\n\nYou can write a follow-up in this thread to try again.`;
}

export function describeError(err: unknown): string {
  if (err === undefined || err === null) return "no answer from the server";
  if (err instanceof Error) return err.message;
  if (typeof err === "object") {
    const o = err as { data?: { message?: string }; message?: string; name?: string };
    return o.data?.message ?? o.message ?? o.name ?? JSON.stringify(err).slice(0, 300);
  }
  return String(err);
}

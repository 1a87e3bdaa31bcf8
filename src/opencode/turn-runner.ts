import type { Event, FilePartInput, Message, Part, TextPartInput } from "@opencode-ai/sdk/v2";
import type { PromptRequest } from "../commands/backend.ts";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { SplitLiveMessage, attachAnswerFile } from "../render/split-live-message.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { TurnRow, TurnStore } from "../store/turns.ts";
import type { OpencodeConnection } from "./connection.ts";
import { describeError, errorAdvice } from "./errors.ts";
import { ascendingId } from "./ids.ts";
import { PromptQueue, type CommandCall, type PromptOptions } from "./prompt-queue.ts";
import { TurnNotices, type RetrySettings } from "./turn-notices.ts";
import { TurnView } from "./turn-view.ts";

export type { CommandCall, PromptOptions } from "./prompt-queue.ts";

interface ActiveTurn {
  row: TurnRow;
  view: TurnView;
  live: SplitLiveMessage;
  directory: string;
  /** Set once the server shows work on this turn: an earlier turn's late idle must not end it. */
  sawBusy: boolean;
  finishing: boolean;
}

export interface TurnRunnerDeps {
  db: Db;
  conn: OpencodeConnection;
  threads: ThreadStore;
  turns: TurnStore;
  inbox: Inbox;
  sender: MatrixSender;
  names: DisplayNames;
  log: Logger;
  workspaceDir: string;
  editWindowMs: number;
  /** Turns that take at least this long end with a notice that mentions who asked (a phone push). */
  completionNoticeAfterMs: number;
  onTurnEnd?: (outcome: "done" | "failed") => void;
}

/**
 * Runs turns: sends a prompt, follows the session's events into one live reply, finishes it
 * from the server's record when the session goes idle, then sends the next queued prompt.
 */
export class TurnRunner {
  private readonly d: TurnRunnerDeps;
  private readonly active = new Map<string, ActiveTurn>();
  /** Prompts waiting for the running turn of their session; in SQLite, so a restart keeps them. */
  readonly queue: PromptQueue;
  private readonly ownMessageIds = new Set<string>();
  private readonly notices: TurnNotices;

  constructor(deps: TurnRunnerDeps) {
    this.d = deps;
    this.notices = new TurnNotices({ sender: deps.sender, names: deps.names, log: deps.log, completionNoticeAfterMs: deps.completionNoticeAfterMs });
    this.queue = new PromptQueue(deps.db);
    deps.conn.onEvent((e) => this.onEvent(e));
  }

  get activeCount(): number {
    return this.active.size;
  }

  isBusy(sessionId: string): boolean {
    return this.active.has(sessionId);
  }

  /** Who asked for the turn that is running in a session (for mentions). */
  prompter(sessionId: string): string | undefined {
    const p = this.active.get(sessionId)?.row.promptedBy;
    return p ? p : undefined;
  }

  queueLength(sessionId: string): number {
    return this.queue.count(sessionId);
  }

  /**
   * Sends now, or queues behind the running turn (and behind prompts already waiting, which
   * after a restart may not have been sent yet). Returns the queue position (0 = sent now).
   */
  async submit(thread: ThreadRow, req: PromptRequest, opts: PromptOptions, command?: CommandCall): Promise<{ queued: number }> {
    if (this.active.has(thread.sessionId) || this.queue.count(thread.sessionId) > 0) {
      const id = this.queue.add(thread, req, opts, command);
      await this.sendNext(thread.sessionId);
      return { queued: this.queue.position(thread.sessionId, id) };
    }
    await this.send(thread, req, opts, command);
    return { queued: 0 };
  }

  /**
   * Sends the oldest queued prompt of an idle session. The check and the hand-over to `send`
   * run without an await in between, so two callers never start two turns.
   */
  async sendNext(sessionId: string): Promise<void> {
    for (;;) {
      if (this.active.has(sessionId)) return;
      const next = this.queue.next(sessionId);
      if (!next) return;
      const thread = this.d.threads.get(next.roomId, next.rootEventId);
      if (thread?.sessionId !== sessionId) {
        this.queue.remove(next.id); // the thread was forgotten meanwhile
        continue;
      }
      await this.send(thread, next.req, next.opts, next.command, next.id).catch((e: unknown) => this.d.log.error({ err: e }, "queued prompt failed"));
      return;
    }
  }

  private async send(thread: ThreadRow, req: PromptRequest, opts: PromptOptions, command?: CommandCall, queuedId?: number): Promise<void> {
    const messageId = ascendingId("msg");
    this.ownMessageIds.add(messageId);
    // The turn row and the inbox mark commit together: after a crash the prompt is either
    // recorded (and reconciled by its message id) or still pending in the inbox.
    const row = this.d.db.transaction(() => {
      const r = this.d.turns.start({
        roomId: thread.roomId,
        rootEventId: thread.rootEventId,
        sessionId: thread.sessionId,
        promptEventId: req.eventId,
        promptMessageId: messageId,
        promptedBy: req.sender,
        promptText: command ? `/${command.name} ${command.args}`.trim() : req.text,
      });
      this.d.inbox.markDone(req.eventId);
      if (queuedId !== undefined) this.queue.remove(queuedId);
      return r;
    })();
    this.d.threads.touch(thread.roomId, thread.rootEventId);
    const turn = this.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId }, opts.directory);
    turn.live.update(turn.view.render({ final: false, durationMs: 0 }));
    const parts: Array<TextPartInput | FilePartInput> = [{ type: "text", text: req.text }];
    for (const f of req.files ?? []) {
      parts.push({ type: "file", mime: f.mime, filename: f.filename, url: `data:${f.mime};base64,${f.data.toString("base64")}` });
    }
    if (command) {
      this.runCommand(turn, thread, command, opts, messageId);
      return;
    }
    let failure: string | undefined;
    try {
      const res = await this.d.conn.client.session.promptAsync({
        sessionID: thread.sessionId,
        directory: opts.directory,
        messageID: messageId,
        parts,
        ...(opts.model ? { model: opts.model } : {}),
        ...(opts.agent ? { agent: opts.agent } : {}),
      });
      if (res.error !== undefined) failure = describeError(res.error);
    } catch (err) {
      failure = describeError(err);
    }
    if (failure !== undefined) await this.end(turn, `⚠️ **OpenCode did not accept the prompt:** ${failure}`);
  }

  /**
   * OpenCode answers a command's request only when its turn is over, so it is not awaited: the
   * turn is followed through its events like any other, and only a refusal ends it here.
   */
  private runCommand(turn: ActiveTurn, thread: ThreadRow, command: CommandCall, opts: PromptOptions, messageId: string): void {
    const refused = (why: string): void => {
      if (this.active.get(thread.sessionId) === turn && !turn.finishing) void this.end(turn, `⚠️ **OpenCode did not run \`/${command.name}\`:** ${why}`);
    };
    this.d.conn.client.session
      .command({
        sessionID: thread.sessionId,
        directory: opts.directory,
        messageID: messageId,
        command: command.name,
        arguments: command.args,
        ...(opts.model ? { model: `${opts.model.providerID}/${opts.model.modelID}` } : {}),
        ...(opts.agent ? { agent: opts.agent } : {}),
      })
      .then(
        (res) => {
          if (res.error !== undefined) refused(describeError(res.error));
        },
        // A long command can outlive the HTTP client's patience; its events still end the turn.
        (err: unknown) => this.d.log.warn({ err, sessionId: thread.sessionId }, "the command request ended without an answer"),
      );
  }

  private track(row: TurnRow, target: ThreadTarget, directory: string, parent?: string): ActiveTurn {
    const live = new SplitLiveMessage({
      sender: this.d.sender,
      target,
      windowMs: this.d.editWindowMs,
      log: this.d.log,
      eventId: row.replyEventId,
      onPosted: (id) => this.d.turns.setReply(row.id, id),
      attach: attachAnswerFile(this.d.sender, target),
    });
    const view = new TurnView(this.d.workspaceDir, row.promptMessageId ?? parent);
    const turn: ActiveTurn = { row, view, live, directory, sawBusy: false, finishing: false };
    this.active.set(row.sessionId, turn);
    return turn;
  }

  private onEvent(event: Event): void {
    const sessionId = (event.properties as { sessionID?: string }).sessionID;
    if (sessionId === undefined) return;
    const turn = this.active.get(sessionId);
    if (!turn) {
      this.maybeExternalTurn(event, sessionId);
      return;
    }
    if (turn.finishing) return;
    if (event.type === "session.status") {
      if (event.properties.status.type === "busy") turn.sawBusy = true;
      else if (event.properties.status.type === "idle" && turn.sawBusy) void this.finish(turn);
      return;
    }
    if (event.type === "session.idle") {
      if (turn.sawBusy) void this.finish(turn);
      return;
    }
    // Any output of the turn shows that the work started, even if the busy status was missed.
    if ((event.type === "message.updated" && event.properties.info.role === "assistant") || event.type === "message.part.delta") turn.sawBusy = true;
    if (turn.view.apply(event)) turn.live.update(turn.view.render({ final: false, durationMs: Date.now() - turn.row.startedAt }));
  }

  /** A prompt typed elsewhere (the TUI, another client) into a session that has a thread: stream it there too. */
  private maybeExternalTurn(event: Event, sessionId: string): void {
    if (event.type !== "message.updated" || event.properties.info.role !== "user") return;
    const id = event.properties.info.id;
    if (this.ownMessageIds.has(id)) return;
    const thread = this.d.threads.bySession("opencode", sessionId)[0];
    if (!thread) return;
    const row = this.d.turns.start({
      roomId: thread.roomId,
      rootEventId: thread.rootEventId,
      sessionId,
      promptEventId: thread.rootEventId,
      promptMessageId: id,
      promptedBy: "",
      promptText: "",
    });
    this.ownMessageIds.add(id);
    const turn = this.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId }, thread.directory ?? this.d.workspaceDir);
    turn.sawBusy = true;
    turn.live.update(turn.view.render({ final: false, durationMs: 0 }));
  }

  /** Starts following a session that is already working (after `attach`). */
  follow(thread: ThreadRow): void {
    if (this.active.has(thread.sessionId)) return;
    const row = this.d.turns.start({
      roomId: thread.roomId,
      rootEventId: thread.rootEventId,
      sessionId: thread.sessionId,
      promptEventId: thread.rootEventId,
      promptMessageId: null,
      promptedBy: "",
      promptText: "",
    });
    const turn = this.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId }, thread.directory ?? this.d.workspaceDir);
    turn.sawBusy = true;
    void this.refresh(turn);
  }

  private async refresh(turn: ActiveTurn): Promise<void> {
    const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory });
    turn.view.load((res.data ?? []) as Array<{ info: Message; parts: Part[] }>);
    turn.live.update(turn.view.render({ final: false, durationMs: Date.now() - turn.row.startedAt }));
  }

  /** Finishes a turn whose session is idle if its prompt was answered (or it saw the work start). */
  private async finishIfAnswered(turn: ActiveTurn): Promise<void> {
    if (turn.sawBusy) return this.finish(turn);
    const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory }).catch(() => undefined);
    const messages = (res?.data ?? []) as Array<{ info: Message; parts: Part[] }>;
    const answered = messages.some(
      (m) => m.info.role === "assistant" && m.info.parentID === turn.row.promptMessageId && (m.info.time.completed !== undefined || m.info.error !== undefined),
    );
    if (answered) await this.finish(turn);
  }

  /** The session went idle: render the final state from the server's own record of the turn. */
  private async finish(turn: ActiveTurn): Promise<void> {
    if (turn.finishing) return;
    turn.finishing = true;
    try {
      const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory });
      if (res.data) turn.view.load(res.data as Array<{ info: Message; parts: Part[] }>);
    } catch (err) {
      this.d.log.warn({ err, sessionId: turn.row.sessionId }, "could not read the session's messages; finishing from the stream");
    }
    await this.end(turn);
  }

  private async end(turn: ActiveTurn, failure?: string): Promise<void> {
    turn.finishing = true;
    const err = turn.view.error;
    const aborted = err?.name === "MessageAbortedError";
    const error = failure ?? (err && !aborted ? `⚠️ **${err.name}:** ${err.message}\n\n${errorAdvice(err.name)}` : undefined);
    const durationMs = Date.now() - turn.row.startedAt;
    const text = turn.view.render({ final: true, durationMs, ...(error ? { error } : {}), aborted });
    try {
      await turn.live.finish(text);
    } catch (e) {
      this.d.log.error({ err: e, sessionId: turn.row.sessionId }, "could not post the final reply");
    } finally {
      this.d.turns.finish(turn.row.id, error ? "failed" : "done");
      this.active.delete(turn.row.sessionId);
    }
    this.d.onTurnEnd?.(error ? "failed" : "done");
    const target = { roomId: turn.row.roomId, threadRoot: turn.row.rootEventId, replyTo: turn.live.firstId ?? turn.row.promptEventId };
    await this.notices.turnEnded(target, turn.row.promptedBy, { failed: error !== undefined, aborted, durationMs });
    await this.sendNext(turn.row.sessionId);
  }

  async abort(thread: ThreadRow): Promise<boolean> {
    this.queue.clear(thread.sessionId);
    // Asked before the call: the turn may well end (and leave `active`) before the call returns.
    const running = this.active.has(thread.sessionId);
    const res = await this.d.conn.client.session.abort({ sessionID: thread.sessionId, directory: thread.directory ?? this.d.workspaceDir });
    if (res.error !== undefined) throw new Error(describeError(res.error));
    return running;
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
      const thread = this.d.threads.get(row.roomId, row.rootEventId);
      if (!thread) {
        this.d.turns.finish(row.id, "failed");
        continue;
      }
      const directory = thread.directory ?? this.d.workspaceDir;
      const turn = this.track(row, { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.promptEventId }, directory);
      if (row.promptMessageId) this.ownMessageIds.add(row.promptMessageId);
      const res = await this.d.conn.client.session.messages({ sessionID: row.sessionId, directory });
      const messages = (res.data ?? []) as Array<{ info: Message; parts: Part[] }>;
      const arrived = row.promptMessageId === null || messages.some((m) => m.info.id === row.promptMessageId);
      if (!arrived && row.promptMessageId !== null) {
        this.d.log.info({ sessionId: row.sessionId, turn: row.id }, "prompt never reached OpenCode; sending it now");
        turn.live.update(turn.view.render({ final: false, durationMs: 0 }));
        const sent = await this.d.conn.client.session.promptAsync({
          sessionID: row.sessionId,
          directory,
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
    // Turns whose end fell into a gap of the event stream. Their busy may have fallen into it
    // too, so each idle session is asked whether our prompt has an answer; a few at a time,
    // since after an outage there may be hundreds.
    const idle = [...this.active.values()].filter((t) => !t.finishing && statuses[t.row.sessionId]?.type !== "busy");
    for (const t of this.active.values()) if (statuses[t.row.sessionId]?.type === "busy") t.sawBusy = true;
    for (let i = 0; i < idle.length; i += 8) await Promise.all(idle.slice(i, i + 8).map((t) => this.finishIfAnswered(t)));
    // Prompts queued before a restart whose turn is over: the next one goes now.
    for (const sessionId of this.queue.sessions()) await this.sendNext(sessionId);
  }

  /** Tells the threads with a turn in flight that the OpenCode server went away, and again when it is back. */
  async onConnectionState(state: "connecting" | "connected" | "disconnected", retry: RetrySettings): Promise<void> {
    if (state === "disconnected") this.notices.serverLost(this.activeTargets(), retry);
    if (state === "connected") await this.notices.serverBack();
  }

  /** Threads with a turn running, for telling people about a lost or regained server. */
  activeTargets(): ThreadTarget[] {
    return [...this.active.values()].map((t) => ({ roomId: t.row.roomId, threadRoot: t.row.rootEventId, replyTo: t.live.firstId ?? t.row.promptEventId }));
  }

  /** Waits until every reply being written has reached Matrix (used on shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.active.values()].map((t) => t.live.settle()));
  }
}

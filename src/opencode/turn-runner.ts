import type { Message, Part } from "@opencode-ai/sdk/v2";
import type { PromptRequest } from "../commands/backend.ts";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { TurnRow, TurnStore } from "../store/turns.ts";
import type { TurnEngine } from "../turns/engine.ts";
import type { OpencodeConnection } from "./connection.ts";
import { crashPoint } from "../process/crash-point.ts";
import { describeError } from "./errors.ts";
import { ascendingId } from "./ids.ts";
import { decodePrompt, encodePrompt, sendCommand, sendPrompt, type PromptCall } from "./prompt-call.ts";
import { PromptQueue, type CommandCall, type PromptOptions } from "./prompt-queue.ts";
import { TurnNotices, type RetrySettings } from "../turns/notices.ts";
import { TurnTracker, type ActiveTurn } from "./turn-tracker.ts";

export type { CommandCall, PromptOptions } from "./prompt-queue.ts";

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
  engine: TurnEngine;
  onTurnEnd?: (outcome: "done" | "failed") => void;
  /** This server's view of the prompt queue (server-scope.ts); default: the whole queue. */
  queue?: PromptQueue | undefined;
  /** What the notices call the server when its connection drops (default: "the OpenCode server"). */
  serverLabel?: string | undefined;
}

/**
 * Runs turns: sends a prompt, follows the session's events into one live reply, finishes it
 * from the server's record when the session goes idle, then sends the next queued prompt.
 */
export class TurnRunner {
  private readonly d: TurnRunnerDeps;
  private readonly tracker: TurnTracker;
  private readonly active: Map<string, ActiveTurn>;
  /** Prompts waiting for the running turn of their session; in SQLite, so a restart keeps them. */
  readonly queue: PromptQueue;
  private readonly notices: TurnNotices;

  constructor(deps: TurnRunnerDeps) {
    this.d = deps;
    // Only the notices that the server went away and came back: the end of a turn is the engine's.
    this.notices = new TurnNotices({ sender: deps.sender, names: deps.names, log: deps.log, label: "OpenCode", server: deps.serverLabel });
    this.queue = deps.queue ?? new PromptQueue(deps.db);
    this.tracker = new TurnTracker({
      ...deps,
      onEnded: async (sessionId, outcome) => {
        deps.onTurnEnd?.(outcome === "failed" ? "failed" : "done");
        await this.sendNext(sessionId);
      },
    });
    this.active = this.tracker.active;
  }

  /** Starts following a session that is already working (after `attach`). */
  follow(thread: ThreadRow): void {
    this.tracker.follow(thread);
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

  /** How the thread's latest turn ended (or that it runs), for `status`. */
  lastTurn(roomId: string, rootEventId: string): { status: TurnRow["status"]; promptedBy: string; durationMs: number | null } | undefined {
    const t = this.d.turns.lastForThread(roomId, rootEventId);
    return t && { status: t.status, promptedBy: t.promptedBy, durationMs: t.finishedAt === null ? null : t.finishedAt - t.startedAt };
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
      const id = this.enqueue(thread, req, opts, command);
      await this.sendNext(thread.sessionId);
      return { queued: this.queue.position(thread.sessionId, id) };
    }
    await this.send(thread, req, opts, command);
    return { queued: 0 };
  }

  /**
   * The queue row and the inbox mark commit together: after a crash the prompt is either
   * waiting in the queue or still pending in the inbox, never both (which would send it twice).
   */
  private enqueue(thread: ThreadRow, req: PromptRequest, opts: PromptOptions, command?: CommandCall, front = false): number {
    return this.d.db.transaction(() => {
      const id = this.queue.add(thread, req, opts, command, front);
      this.d.inbox.markDone(req.eventId);
      return id;
    })();
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
    const call: PromptCall = { sessionId: thread.sessionId, messageId: ascendingId("msg"), text: req.text, files: req.files, opts, command };
    this.tracker.ownMessageIds.add(call.messageId);
    // The turn row (with all a re-send needs) and the inbox mark commit together: after a crash
    // the prompt is either recorded (and reconciled by its message id) or still pending in the inbox.
    const row = this.d.db.transaction(() => {
      const r = this.d.turns.start({
        roomId: thread.roomId,
        rootEventId: thread.rootEventId,
        sessionId: thread.sessionId,
        promptEventId: req.eventId,
        promptMessageId: call.messageId,
        promptedBy: req.sender,
        promptText: command ? `/${command.name} ${command.args}`.trim() : req.text,
        promptJson: encodePrompt(call),
      });
      this.d.inbox.markDone(req.eventId);
      if (queuedId !== undefined) this.queue.remove(queuedId);
      return r;
    })();
    crashPoint("turn-row");
    this.d.threads.touch(thread.roomId, thread.rootEventId);
    const turn = this.tracker.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId }, opts.directory);
    // Tracked before its prompt goes out: on a connected stream it sees every event of the turn.
    turn.wholeStream = this.d.conn.state === "connected";
    turn.live.show();
    await this.dispatch(turn, call);
    crashPoint("prompt-sent");
  }

  /** Hands the prompt (or `/command`) to OpenCode; a refusal ends the turn with the reason. */
  private async dispatch(turn: ActiveTurn, call: PromptCall): Promise<void> {
    const command = call.command;
    if (command) {
      sendCommand(this.d.conn, { ...call, command }, (why) => {
        if (this.active.get(call.sessionId) === turn && !turn.finishing) void this.tracker.end(turn, { title: `OpenCode did not run \`/${command.name}\``, message: why });
      }, this.d.log);
      return;
    }
    const failure = await sendPrompt(this.d.conn, call);
    if (failure === undefined) return;
    // A prompt whose answer timed out may still have arrived: then its turn goes on (followed
    // through the events); only a prompt OpenCode does not have ends the turn as refused.
    if (/did not answer within/.test(failure) && (await this.arrived(call))) return;
    await this.tracker.end(turn, { title: "OpenCode did not accept the prompt", message: failure });
  }

  private async arrived(call: PromptCall): Promise<boolean> {
    const res = await this.d.conn.client.session.messages({ sessionID: call.sessionId, directory: call.opts.directory }).catch(() => undefined);
    return (res?.data ?? []).some((m) => m.info.id === call.messageId);
  }

  /**
   * Stops the running step and sends this prompt next, before anything already queued (the
   * stopped turn ends as aborted and pushes nobody). With no turn running it is a plain submit.
   */
  async interrupt(thread: ThreadRow, req: PromptRequest, opts: PromptOptions): Promise<{ queued: number }> {
    const turn = this.active.get(thread.sessionId);
    if (!turn) return this.submit(thread, req, opts);
    const id = this.enqueue(thread, req, opts, undefined, true);
    turn.abortRequested = true;
    const res = await this.d.conn.client.session.abort({ sessionID: thread.sessionId, directory: thread.directory ?? this.d.workspaceDir });
    if (res.error !== undefined) this.d.log.warn({ sessionId: thread.sessionId, err: describeError(res.error) }, "could not stop the running step; the prompt waits for it");
    await this.sendNext(thread.sessionId);
    return { queued: this.queue.position(thread.sessionId, id) };
  }

  async abort(thread: ThreadRow): Promise<boolean> {
    this.queue.clear(thread.sessionId);
    // Asked before the call: the turn may well end (and leave `active`) before the call returns.
    const turn = this.active.get(thread.sessionId);
    const running = turn !== undefined;
    if (turn) turn.abortRequested = true;
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
    // Before any await: the echo of a prompt this bot sent before a restart must not pass for a
    // prompt typed elsewhere (which would start a second turn over the one being recovered).
    for (const r of this.d.turns.running()) if (r.promptMessageId) this.tracker.ownMessageIds.add(r.promptMessageId);
    for (const listed of this.d.turns.running()) {
      // Read again: across the awaits below an earlier turn of the list may have ended, or a
      // session have started its next turn; neither may be tracked over.
      const row = this.d.turns.get(listed.id);
      if (row?.status !== "running" || this.active.has(row.sessionId)) continue;
      const thread = this.d.threads.get(row.roomId, row.rootEventId);
      if (!thread) {
        this.d.turns.finish(row.id, "failed");
        continue;
      }
      const directory = thread.directory ?? this.d.workspaceDir;
      const turn = this.tracker.track(row, { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.promptEventId }, directory, { joinedLate: true });
      if (row.promptMessageId) this.tracker.ownMessageIds.add(row.promptMessageId);
      const res = await this.d.conn.client.session.messages({ sessionID: row.sessionId, directory });
      const messages = (res.data ?? []) as Array<{ info: Message; parts: Part[] }>;
      const arrived = row.promptMessageId === null || messages.some((m) => m.info.id === row.promptMessageId);
      if (!arrived && row.promptMessageId !== null) {
        this.d.log.info({ sessionId: row.sessionId, turn: row.id }, "prompt never reached OpenCode; sending it now");
        turn.live.show();
        // The same prompt as the first time (files, model, agent, command), under the same message id.
        const stored = this.d.turns.promptOf(row.id);
        const call = stored ? decodePrompt(stored, row.sessionId, row.promptMessageId) : { sessionId: row.sessionId, messageId: row.promptMessageId, text: row.promptText, opts: { directory } };
        await this.dispatch(turn, call);
        continue;
      }
      turn.live.push(...turn.tr.load(messages));
      // The prompt arrived, so from here an idle event ends this turn; and the status is asked
      // now, not taken from the start of this loop: the session may have finished meanwhile.
      turn.sawBusy = true;
      const now = (await this.d.conn.client.session.status()).data ?? {};
      if (now[row.sessionId]?.type === "busy") turn.live.show();
      else await this.tracker.finish(turn);
    }
    // Turns whose end fell into a gap of the event stream. Their busy may have fallen into it
    // too, so each idle session is asked whether our prompt has an answer; a few at a time,
    // since after an outage there may be hundreds.
    // (Nothing tracked, as at most starts: nothing to ask.)
    const current = this.active.size === 0 ? {} : ((await this.d.conn.client.session.status()).data ?? {});
    const idle = [...this.active.values()].filter((t) => !t.finishing && current[t.row.sessionId]?.type !== "busy");
    for (const t of this.active.values()) if (current[t.row.sessionId]?.type === "busy") t.sawBusy = true;
    for (let i = 0; i < idle.length; i += 8) await Promise.all(idle.slice(i, i + 8).map((t) => this.tracker.finishIfAnswered(t)));
    // Prompts queued before a restart whose turn is over: the next one goes now.
    for (const sessionId of this.queue.sessions()) await this.sendNext(sessionId);
  }

  /** Tells the threads with a turn in flight that the OpenCode server went away, and again when it is back. */
  async onConnectionState(state: "connecting" | "connected" | "disconnected", retry: RetrySettings): Promise<void> {
    if (state === "disconnected") this.notices.serverLost(this.activeTargets(), retry);
    if (state === "connected") await this.notices.serverBack();
  }

  /** The server refused a reconnect: a lost connection is an outage, told now rather than after the blip delay. */
  serverGone(): void {
    this.notices.serverGone();
  }

  /** Threads with a turn running, for telling people about a lost or regained server. */
  activeTargets(): ThreadTarget[] {
    return [...this.active.values()].map((t) => ({ roomId: t.row.roomId, threadRoot: t.row.rootEventId, replyTo: t.live.replyId ?? t.row.promptEventId }));
  }

  /** Waits until every reply being written has reached Matrix (used on shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.active.values()].map((t) => t.live.settle()));
  }
}

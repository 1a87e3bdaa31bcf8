import type { Event, Message, Part } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import { BoundedMap } from "../store/bounded-map.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { TurnRow, TurnStore } from "../store/turns.ts";
import type { LiveTurn, TurnEngine } from "../turns/engine.ts";
import type { TurnEvent } from "../turns/events.ts";
import type { OpencodeConnection } from "./connection.ts";
import { errorAdvice } from "./errors.ts";
import { OpencodeTranslator } from "./events.ts";

/**
 * The ids of the prompts this bot sent, so their echo is not taken for a prompt typed
 * elsewhere. Bounded: only recent ones can still echo (a running turn's are re-added at recovery).
 */
class OwnMessageIds {
  private readonly ids = new BoundedMap<string, true>({ maxEntries: 10_000 });
  add(id: string): void {
    this.ids.set(id, true);
  }
  has(id: string): boolean {
    return this.ids.get(id) === true;
  }
}

export interface ActiveTurn {
  row: TurnRow;
  tr: OpencodeTranslator;
  live: LiveTurn;
  directory: string;
  /** Set once the server shows work on this turn: an earlier turn's late idle must not end it. */
  sawBusy: boolean;
  finishing: boolean;
  /** Someone asked to abort it: OpenCode does not always say so (an abort during a retry wait just goes idle). */
  abortRequested?: boolean;
  /**
   * Every event of the turn came through one unbroken event stream (it was tracked before its
   * prompt went out and the stream never dropped since): its end needs no reread of the session.
   */
  wholeStream?: boolean;
}

export interface TurnTrackerDeps {
  conn: OpencodeConnection;
  threads: ThreadStore;
  turns: TurnStore;
  engine: TurnEngine;
  log: Logger;
  workspaceDir: string;
  /** A turn ended (its final text is posted and recorded): the next queued prompt may go. */
  onEnded(sessionId: string, outcome: "done" | "failed" | "aborted"): Promise<void>;
}

/**
 * Follows OpenCode turns: each session's events become the engine's turn events in one live
 * reply; when the session goes idle the turn is finished from the server's own record.
 * Turns typed elsewhere (the TUI) into a session with a thread are followed too.
 */
export class TurnTracker {
  private readonly d: TurnTrackerDeps;
  readonly active = new Map<string, ActiveTurn>();
  /** Prompts the bot sent, so that their echo is not taken for a prompt typed elsewhere. */
  readonly ownMessageIds = new OwnMessageIds();

  constructor(deps: TurnTrackerDeps) {
    this.d = deps;
    deps.conn.onEvent((e) => this.onEvent(e));
    // Events may have fallen into the gap: those turns' ends are read from the server's record.
    deps.conn.onState((state) => {
      if (state !== "connected") {
        for (const t of this.active.values()) {
          t.wholeStream = false;
          t.tr.markGap();
        }
      }
    });
  }

  /** `joinedLate`: the turn was under way before it was tracked (recovery, `attach`): its parts may have begun unseen. */
  track(row: TurnRow, target: ThreadTarget, directory: string, opts: { joinedLate?: boolean } = {}): ActiveTurn {
    const live = this.d.engine.open({
      target,
      replyEventId: row.replyEventId,
      onPosted: (id) => this.d.turns.setReply(row.id, id),
      working: "⏳ Working…",
      promptedBy: row.promptedBy,
      title: this.d.threads.get(row.roomId, row.rootEventId)?.title ?? undefined,
      startedAt: row.startedAt,
      persist: { backend: "opencode", turnId: row.id },
    });
    const tr = new OpencodeTranslator(this.d.workspaceDir, row.promptMessageId ?? undefined, { joinedLate: opts.joinedLate === true });
    const turn: ActiveTurn = { row, tr, live, directory, sawBusy: false, finishing: false };
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
      const status = event.properties.status.type;
      if (status === "busy") turn.sawBusy = true;
      else if (status === "idle" && turn.sawBusy) void this.finish(turn);
      // A model outage: the reply says OpenCode is retrying, with the provider's error and when.
      else if (status === "retry") {
        turn.sawBusy = true;
        turn.live.push(...turn.tr.apply(event));
      }
      return;
    }
    if (event.type === "session.idle") {
      if (turn.sawBusy) void this.finish(turn);
      return;
    }
    // Any output of the turn shows that the work started, even if the busy status was missed.
    if ((event.type === "message.updated" && event.properties.info.role === "assistant") || event.type === "message.part.delta") turn.sawBusy = true;
    turn.live.push(...turn.tr.apply(event));
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
    turn.live.show();
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
    const turn = this.track(row, { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId }, thread.directory ?? this.d.workspaceDir, { joinedLate: true });
    turn.sawBusy = true;
    void this.refresh(turn);
  }

  private async refresh(turn: ActiveTurn): Promise<void> {
    const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory });
    turn.live.push(...turn.tr.load((res.data ?? []) as Array<{ info: Message; parts: Part[] }>));
  }

  /** Finishes a turn whose session is idle if its prompt was answered (or it saw the work start). */
  async finishIfAnswered(turn: ActiveTurn): Promise<void> {
    if (turn.sawBusy) return this.finish(turn);
    const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory }).catch(() => undefined);
    const messages = (res?.data ?? []) as Array<{ info: Message; parts: Part[] }>;
    const answered = messages.some(
      (m) => m.info.role === "assistant" && m.info.parentID === turn.row.promptMessageId && (m.info.time.completed !== undefined || m.info.error !== undefined),
    );
    if (answered) return this.finish(turn);
    // The prompt arrived but its answer never finished, and the session is idle: the server went
    // away mid-turn (a restarted server does not resume it). Asked once more a moment later, so a
    // prompt that has only just arrived is not taken for one; still idle, the turn ends as cut off.
    const arrived = messages.some((m) => m.info.id === turn.row.promptMessageId);
    if (!arrived || turn.finishing) return;
    await new Promise((r) => setTimeout(r, 2000));
    const status = (await this.d.conn.client.session.status().catch(() => undefined))?.data ?? {};
    if (turn.finishing || turn.sawBusy || status[turn.row.sessionId]?.type === "busy") return;
    turn.finishing = true;
    const again = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory }).catch(() => undefined);
    turn.live.push(...turn.tr.load((again?.data ?? messages) as Array<{ info: Message; parts: Part[] }>));
    if (turn.tr.interrupted()) return this.end(turn);
    return this.end(turn, { title: "Interrupted", message: "The OpenCode server stopped before it answered. Write a follow-up to try again." });
  }

  /**
   * The session went idle: render the final state. A turn seen whole on the event stream ends
   * from what it streamed (under load, OpenCode takes seconds to answer `session.messages`, and
   * the final answer would wait for it); any other from the server's own record.
   */
  async finish(turn: ActiveTurn): Promise<void> {
    if (turn.finishing) return;
    turn.finishing = true;
    if (turn.wholeStream === true && turn.tr.complete()) return this.end(turn);
    try {
      const res = await this.d.conn.client.session.messages({ sessionID: turn.row.sessionId, directory: turn.directory });
      if (res.data) turn.live.push(...turn.tr.load(res.data as Array<{ info: Message; parts: Part[] }>));
    } catch (err) {
      this.d.log.warn({ err, sessionId: turn.row.sessionId }, "could not read the session's messages; finishing from the stream");
    }
    await this.end(turn);
  }

  async end(turn: ActiveTurn, failure?: { title: string; message: string }): Promise<void> {
    turn.finishing = true;
    const err = turn.tr.error;
    const aborted = err?.name === "MessageAbortedError" || (turn.abortRequested === true && failure === undefined);
    const events: TurnEvent[] = [];
    if (failure) events.push({ type: "error", ...failure });
    else if (err && !aborted) events.push({ type: "error", title: err.name, message: err.message, advice: errorAdvice(err.name) });
    if (aborted) events.push({ type: "end", reason: "aborted" });
    else if (events.length === 0 && turn.tr.interrupted()) {
      events.push({ type: "end", reason: "interrupted", note: "⚠️ The answer stopped before it was complete (the OpenCode server was interrupted). Write a follow-up to continue." });
    } else events.push({ type: "end", reason: "done" });
    turn.live.push(...events);
    let outcome: "done" | "failed" | "aborted" = "done";
    try {
      await turn.live.finish({
        aborted,
        record: (summary) => {
          outcome = summary.outcome;
          this.d.turns.finish(turn.row.id, outcome);
          this.active.delete(turn.row.sessionId);
        },
      });
    } finally {
      // `record` ran unless posting threw; the turn must end in the database either way.
      if (this.active.get(turn.row.sessionId) === turn) {
        this.d.turns.finish(turn.row.id, outcome);
        this.active.delete(turn.row.sessionId);
      }
    }
    await this.d.onEnded(turn.row.sessionId, outcome);
  }

}

import { randomUUID } from "node:crypto";
import type { Logger } from "../log.ts";
import type { ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { crashPoint } from "../process/crash-point.ts";
import { SplitLiveMessage, attachAnswerFile } from "../render/split-live-message.ts";
import type { TurnEvent } from "./events.ts";
import { clip, renderTurn } from "./render.ts";
import type { LiveReplyStore } from "./live-replies.ts";
import type { ConversationSettings, Verbosity } from "./settings.ts";
import { TurnState, type SavedState } from "./state.ts";

const endings = new Set<TurnEvent["type"]>(["error", "end", "rejected"]);

export type TurnOutcome = "done" | "failed" | "aborted";

/** What the engine tells about a finished turn (to the notices, and back to the backend). */
export interface TurnSummary {
  outcome: TurnOutcome;
  durationMs: number;
  /** The final markdown of the reply. */
  text: string;
  /** The assistant's own words, without tool lines or footer (a delegating agent's tool result). */
  answer: string;
  firstLine: string | undefined;
  error: string | undefined;
  files: string[];
  replyId: string | null;
}

/** The push that tells who asked that their turn is over; the engine calls it once per turn. */
export interface TurnEndNotices {
  turnEnded(
    target: ThreadTarget,
    who: string,
    end: { outcome: TurnOutcome; durationMs: number; title?: string | undefined; firstLine?: string | undefined; error?: string | undefined; advice?: string | undefined },
  ): Promise<void>;
}

/** Keeps the room's typing indicator on while any turn in it runs. */
export interface Typing {
  hold(roomId: string): () => void;
}

export interface TurnEngineDeps {
  sender: MatrixSender;
  /** Where live replies are recorded while they grow (absent in unit tests: nothing survives a restart). */
  replies?: LiveReplyStore | undefined;
  /** Per room and thread verbosity (absent: normal everywhere). */
  settings?: ConversationSettings | undefined;
  log: Logger;
  editWindowMs: number;
  notices: TurnEndNotices;
  typing?: Typing | undefined;
}

export interface OpenTurn {
  target: ThreadTarget;
  /** The reply a previous run of the bot already posted for this turn: edited, not posted again. */
  replyEventId: string | null;
  onPosted(eventId: string): void;
  /** The placeholder until the agent shows something. */
  working: string;
  /** Who asked (a Matrix user id; empty for turns nobody in Matrix asked for): the one the end pushes. */
  promptedBy: string;
  /** The thread's title, for the push. */
  title?: string | undefined;
  startedAt?: number | undefined;
  /** Records the reply under this key while it runs, so that a restarted bot continues it (same pieces, nothing shown taken back). */
  persist?: { backend: string; turnId: number } | undefined;
}

/**
 * The shared part of every backend's turns: one live reply grown from typed turn events,
 * one final text, one push to who asked. A backend drives its agent and feeds events; it
 * never renders or posts a turn's text itself.
 */
export class TurnEngine {
  private readonly d: TurnEngineDeps;
  /** Final texts and pushes being sent: a graceful stop waits for them (a push may be waiting out a 429). */
  private readonly owed = new Set<Promise<unknown>>();

  constructor(deps: TurnEngineDeps) {
    this.d = deps;
  }

  open(o: OpenTurn): LiveTurn {
    return new LiveTurn(this.d, o, (p) => {
      this.owed.add(p);
      void p.finally(() => this.owed.delete(p)).catch(() => undefined);
    });
  }

  /** Waits (up to `limitMs`) for every final text and push in flight; returns how many were still owed at the limit. */
  async settle(limitMs: number): Promise<number> {
    const all = Promise.allSettled([...this.owed]);
    await Promise.race([all, new Promise<void>((r) => setTimeout(r, limitMs).unref())]);
    return this.owed.size;
  }
}

export class LiveTurn {
  readonly state = new TurnState();
  readonly startedAt: number;
  private readonly d: TurnEngineDeps;
  private readonly o: OpenTurn;
  private readonly live: SplitLiveMessage;
  private readonly releaseTyping: (() => void) | undefined;
  private ended = false;
  /** Read when the turn starts: a change applies from the next turn on. */
  private readonly verbosity: Verbosity;
  /** A previous run of the bot already sent this turn's final text: no version without its end goes out again. */
  private readonly shownFinal: boolean;

  private readonly owe: (p: Promise<unknown>) => void;

  constructor(deps: TurnEngineDeps, o: OpenTurn, owe: (p: Promise<unknown>) => void = () => {}) {
    this.d = deps;
    this.owe = owe;
    this.o = o;
    this.startedAt = o.startedAt ?? Date.now();
    this.verbosity = deps.settings?.verbosity(o.target.roomId, o.target.threadRoot).value ?? "normal";
    const key = o.persist;
    const saved = key ? deps.replies?.get(key.backend, key.turnId) : undefined;
    if (saved?.state) this.state.restore(saved.state);
    this.shownFinal = (saved?.state as { final?: boolean } | undefined)?.final === true;
    if (key) deps.log.debug({ turn: key.turnId, backend: key.backend, eventIds: saved?.eventIds, restoredChars: saved?.state?.blocks.map((b) => ("text" in b ? b.text.length : 0)) }, "live reply opened");
    this.live = new SplitLiveMessage({
      sender: deps.sender,
      target: o.target,
      windowMs: deps.editWindowMs,
      log: deps.log,
      eventId: o.replyEventId,
      eventIds: saved?.eventIds,
      txnBase: key && deps.replies ? deps.replies.txnBase(key.backend, key.turnId, `reply.${randomUUID()}`) : undefined,
      onPosted: (id) => o.onPosted(id),
      onPiecePosted: () => {
        if (key) deps.replies?.setEventIds(key.backend, key.turnId, this.live.ids);
      },
      beforeSend: () => this.save(),
      attach: attachAnswerFile(deps.sender, o.target),
    });
    this.releaseTyping = deps.typing?.hold(o.target.roomId);
  }

  get replyId(): string | null {
    return this.live.firstId;
  }

  get edits(): number {
    return this.live.edits;
  }

  get finished(): boolean {
    return this.ended;
  }

  /** Shows the turn as it is now (the placeholder at first). */
  show(): void {
    if (this.ended || this.shownFinal) return;
    this.live.update(this.render(false));
  }

  /**
   * Records the state before each version of the reply goes out (at most one per edit window):
   * a restarted bot resumes from at least what people saw.
   */
  private save(): void {
    const key = this.o.persist;
    // The final version too, marked: a restarted bot then finishes again without showing less first.
    if (key) this.d.replies?.setState(key.backend, key.turnId, this.ended ? ({ ...this.state.save(), final: true } as SavedState) : this.state.save());
  }

  /**
   * Folds events in and updates the live reply if anything visible changed. How the turn
   * ended (an error, the end, a refusal) shows with the final text only: shown earlier, people
   * (and tests) would see an end that the database does not record yet.
   */
  push(...events: TurnEvent[]): void {
    let changed = false;
    for (const e of events) changed = (this.state.apply(e) && !endings.has(e.type)) || changed;
    if (changed) this.show();
  }

  render(final: boolean): string {
    return renderTurn(this.state, { final, durationMs: Date.now() - this.startedAt, working: this.o.working, verbosity: this.verbosity });
  }

  /**
   * Writes the final text, lets the backend `record` the end, and pushes who asked. `aborted`
   * when the asker stopped the turn (no push). Later calls return a summary without posting.
   */
  finish(opts: { aborted?: boolean; push?: boolean; record?: (s: TurnSummary) => void } = {}): Promise<TurnSummary> {
    const first = !this.ended;
    const done = this.finishing(opts);
    if (first) this.owe(done);
    return done;
  }

  private async finishing(opts: { aborted?: boolean; push?: boolean; record?: (s: TurnSummary) => void }): Promise<TurnSummary> {
    const first = !this.ended;
    this.ended = true;
    const durationMs = Date.now() - this.startedAt;
    const text = this.render(true);
    if (first) {
      this.releaseTyping?.();
      try {
        await this.live.finish(text);
      } catch (err) {
        this.d.log.error({ err, roomId: this.o.target.roomId }, "could not post the final reply");
      }
      crashPoint("final-edit");
    }
    const s = this.state;
    const aborted = opts.aborted === true || s.end?.reason === "aborted";
    const outcome: TurnOutcome = s.failed ? "failed" : aborted ? "aborted" : "done";
    const answer = s.answerText();
    const error = s.rejected ?? (s.error ? `${s.error.title}: ${s.error.message}` : undefined);
    const summary: TurnSummary = {
      outcome, durationMs, text, answer, firstLine: answer ? clip(answer, 120) : undefined, error, files: s.files, replyId: this.live.firstId,
    };
    // Recorded before the push: whoever reads the final text finds the turn's end in the database.
    if (first) {
      opts.record?.(summary);
      if (this.o.persist) this.d.replies?.delete(this.o.persist.backend, this.o.persist.turnId);
    }
    if (first && opts.push !== false && this.o.promptedBy) {
      const target = { ...this.o.target, replyTo: this.live.firstId ?? this.o.target.replyTo };
      await this.d.notices
        .turnEnded(target, this.o.promptedBy, { outcome, durationMs, title: this.o.title, firstLine: summary.firstLine, error, advice: s.error?.advice })
        .catch((err: unknown) => this.d.log.warn({ err }, "could not post the completion notice"));
    }
    return summary;
  }

  /** Waits until every edit queued for the reply has reached Matrix (shutdown). */
  async settle(): Promise<void> {
    await this.live.settle();
  }
}

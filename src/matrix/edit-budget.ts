// How often each streaming reply may be edited, for all of them together. One reply on an idle
// homeserver gets the configured window (1 s); 200 replies on a homeserver that takes 300 ms a
// request would want 200 edits a second from a server that serves ~20: their edits would crowd
// out the first signs of life and the final answers. So the window widens with the number of
// replies streaming and with the homeserver's own measured answer time, up to a limit, and
// doubles while the homeserver answers 429; it narrows again as soon as either eases.

export interface EditBudgetOptions {
  /** The window when nothing is busy (rendering.editWindowMs). */
  baseMs: number;
  /** The widest it gets (rendering.maxEditWindowMs). */
  maxMs: number;
  /** Requests the bot keeps at the homeserver at once (matrix.maxConcurrentRequests). */
  maxInFlight: number;
  now?: () => number;
}

/** Streamed edits may use this share of the homeserver's capacity; the rest stays free for acks and finals. */
const editShare = 0.5;
/** A reply that asked for no edit this long no longer counts as streaming. */
const streamingForMs = 10_000;
/** A 429 doubles the window (up to 8×); each such penalty halves again after this long without a 429. */
const penaltyHalfLifeMs = 10_000;

export class EditBudget {
  private readonly o: EditBudgetOptions;
  private readonly now: () => number;
  /** Exponentially weighted answer time of the homeserver (ms). */
  private serviceMs = 0;
  private readonly streams = new Map<object, number>();
  private lastPrune = 0;
  private penalty = 1;
  private penaltyAt = 0;

  constructor(o: EditBudgetOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  /** A request took `ms` at the homeserver (not counting the wait in the bot's own queue). */
  observe(ms: number): void {
    this.serviceMs = this.serviceMs === 0 ? ms : this.serviceMs * 0.8 + ms * 0.2;
  }

  rateLimited(): void {
    this.penalty = Math.min(8, this.currentPenalty() * 2);
    this.penaltyAt = this.now();
  }

  /** Replies that streamed in the last 10 s. */
  get streaming(): number {
    this.prune();
    return this.streams.size;
  }

  /** The window before `stream`'s next edit (ms); asking counts `stream` as streaming. */
  windowFor(stream: object): number {
    this.streams.set(stream, this.now());
    this.prune();
    const needed = (this.streams.size * this.serviceMs) / (this.o.maxInFlight * editShare);
    return Math.round(Math.min(this.o.maxMs, Math.max(this.o.baseMs, needed) * this.currentPenalty()));
  }

  /** The reply is finished: it no longer takes a share. */
  done(stream: object): void {
    this.streams.delete(stream);
  }

  private currentPenalty(): number {
    if (this.penalty === 1) return 1;
    const halvings = Math.floor((this.now() - this.penaltyAt) / penaltyHalfLifeMs);
    return Math.max(1, this.penalty / 2 ** halvings);
  }

  private prune(): void {
    const now = this.now();
    if (now - this.lastPrune < 1000) return;
    this.lastPrune = now;
    for (const [s, at] of this.streams) if (now - at > streamingForMs) this.streams.delete(s);
  }
}

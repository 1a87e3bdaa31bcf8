import type { Logger } from "../log.ts";
import { editMessage, threadMessage, type ThreadTarget } from "../matrix/content.ts";
import { RateLimitedError } from "../matrix/rate-limit.ts";
import type { Ticket } from "../matrix/request-lanes.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { crashPoint } from "../process/crash-point.ts";

export interface LiveMessageOptions {
  /** With `hold` and `budget` (the bot's sender) edits take turns with every other reply's; without, each goes at once. */
  sender: Pick<MatrixSender, "send"> & Partial<Pick<MatrixSender, "hold" | "budget">>;
  target: ThreadTarget;
  windowMs: number;
  log: Logger;
  /** An event already posted for this reply (after a restart): edit it instead of posting a new one. */
  eventId?: string | null;
  /** The first post's transaction id: the homeserver answers a repeat of it with the same event (after a crash). */
  txnId?: string | undefined;
  /** Called once when the first version is posted. */
  onPosted?: (eventId: string) => void;
  /** Called just before each version goes out: what is recorded then is never less than what people see. */
  beforeSend?: () => void;
  notice?: boolean;
}

/**
 * One Matrix message that follows a changing text: the first version is posted at once, later
 * versions become edits, at most one per window, and only the newest state is ever sent
 * (intermediate states are dropped, never queued). The window is the sender's edit budget's:
 * wider while many replies stream or the homeserver is slow. A version waits for a homeserver
 * slot in its lane (the first post before streamed edits) and takes the newest text when its
 * turn comes; `finish` raises a waiting version to the front and sends the final state whatever
 * the window or rate limit says.
 */
export class LiveMessage {
  private readonly opts: LiveMessageOptions;
  private eventId: string | null;
  private latest = "";
  private sent: string | null = null;
  private lastSendAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private blockedUntil = 0;
  /** The place in the homeserver's queue of the version on its way, raised when the final state is due. */
  private ticket: Ticket | null = null;
  private closing = false;
  private lastFailureRateLimited = false;
  edits = 0;

  constructor(opts: LiveMessageOptions) {
    this.opts = opts;
    this.eventId = opts.eventId ?? null;
  }

  get id(): string | null {
    return this.eventId;
  }

  get text(): string {
    return this.latest;
  }

  /** Sets the newest state; it reaches Matrix within one window. */
  update(markdown: string): void {
    this.latest = markdown;
    this.schedule();
  }

  /** Sends `markdown` as the final state and resolves when Matrix has it. */
  async finish(markdown: string): Promise<void> {
    this.latest = markdown;
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // A version still waiting for its turn goes first now, and carries this final text.
    if (this.ticket) this.ticket.lane = "urgent";
    try {
      // A 429 only delays the final text (every reply of the bot competes for the same budget
      // under a homeserver's limits); other failures end the attempts after 50 (minutes of a homeserver away).
      for (let failures = 0, i = 0; failures < 50 && i < 1000 && this.sent !== this.latest; i++) {
        if (this.inFlight) {
          await this.inFlight;
          continue;
        }
        await this.flush(true);
        if (this.sent !== this.latest && !this.lastFailureRateLimited) failures++;
      }
    } finally {
      this.opts.sender.budget?.done(this);
    }
  }

  /** Resolves when nothing is being sent. */
  async settle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private schedule(): void {
    if (this.closing || this.timer || this.inFlight || this.latest === this.sent) return;
    const now = Date.now();
    const first = this.eventId === null && this.sent === null;
    // The first version goes out at once, unless the homeserver asked to wait (a 429) or failed:
    // retrying that at once would hammer it in a loop.
    const windowMs = Math.max(this.opts.windowMs, this.opts.sender.budget?.windowFor(this) ?? 0);
    const due = first ? Math.max(now, this.blockedUntil) : Math.max(this.lastSendAt + windowMs, this.blockedUntil);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush(false);
    }, Math.max(0, due - now));
  }

  private flush(final: boolean): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (this.latest === this.sent) return Promise.resolve();
    const ticket: Ticket = { lane: final ? "urgent" : this.eventId === null ? "first" : "edit" };
    this.ticket = ticket;
    const run = async (): Promise<void> => {
      const wait = this.blockedUntil - Date.now();
      if (final && wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        await this.inSlot(ticket, async () => {
          // The newest state when the turn has come: what waited in the queue is not sent stale.
          const text = this.latest;
          if (text === this.sent) return;
          // The window counts from when a send starts, so edits come once per window, not once per
          // window plus the homeserver's answer time.
          this.lastSendAt = Date.now();
          await this.post(text);
          this.sent = text;
        });
      } catch (err) {
        this.lastFailureRateLimited = err instanceof RateLimitedError;
        if (err instanceof RateLimitedError) {
          this.blockedUntil = Date.now() + err.retryAfterMs;
          this.opts.log.debug({ roomId: this.opts.target.roomId, waitMs: err.retryAfterMs, local: err.local }, "homeserver rate limit on a live message; will send the newest state after the wait");
        } else {
          this.opts.log.warn({ err, roomId: this.opts.target.roomId }, "could not update the reply; will retry with the newest state");
          this.blockedUntil = Date.now() + Math.min(this.opts.windowMs * 2, 5000);
        }
      } finally {
        this.inFlight = null;
        this.ticket = null;
      }
      if (!final) this.schedule();
    };
    this.inFlight = run();
    return this.inFlight;
  }

  private inSlot(ticket: Ticket, work: () => Promise<void>): Promise<void> {
    const { sender } = this.opts;
    return sender.hold ? sender.hold(ticket, work) : work();
  }

  private async post(text: string): Promise<void> {
    const { sender, target, notice } = this.opts;
    const composeOpts = { notice: notice ?? true, mentions: [] };
    this.opts.beforeSend?.();
    if (this.eventId === null) {
      this.eventId = await sender.send(target.roomId, threadMessage(target, text, composeOpts), { retry: false, ...(this.opts.txnId ? { txnId: this.opts.txnId } : {}) });
      this.opts.onPosted?.(this.eventId);
    } else {
      await sender.send(target.roomId, editMessage(this.eventId, text, composeOpts), { retry: false });
      this.edits++;
      crashPoint("first-edit");
    }
  }
}

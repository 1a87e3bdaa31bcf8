import type { Logger } from "../log.ts";
import type { Inbox } from "../store/inbox.ts";
import { parseMessage, type IncomingMessage } from "./inbound.ts";

type Handler = (msg: IncomingMessage) => Promise<void>;

/**
 * Takes room messages from the sync loop into the durable inbox and processes them one at a
 * time per room, in order, each exactly once. Messages older than the bot's very first start
 * are history, not requests.
 */
export class MessageIntake {
  private readonly inbox: Inbox;
  private readonly handler: Handler;
  private readonly log: Logger;
  private readonly notBefore: number;
  private readonly chains = new Map<string, Promise<void>>();
  private readonly ownUserId: string | undefined;
  private accepting = true;
  private pruner: NodeJS.Timeout | null = null;
  /** While held, messages are stored and queued but not handled (see `held`). */
  private gate: Promise<void> | undefined;
  private openGate: () => void = () => {};

  /**
   * `held`: handle nothing until release(). The start runs the sync while the backends recover
   * the turns of the last run: a message that comes meanwhile is stored at once (the sync token
   * moves on) and waits, so that a follow-up finds its session's turn known and queues behind it.
   */
  constructor(opts: { inbox: Inbox; handler: Handler; log: Logger; notBefore: number; ownUserId?: string | undefined; held?: boolean }) {
    this.inbox = opts.inbox;
    this.handler = opts.handler;
    this.log = opts.log;
    this.notBefore = opts.notBefore;
    this.ownUserId = opts.ownUserId;
    if (opts.held) this.gate = new Promise((r) => (this.openGate = r));
  }

  /** Lets held messages be handled, each room's in the order they were queued. */
  release(): void {
    this.openGate();
    this.gate = undefined;
  }

  /**
   * Deletes handled events older than `retentionMs` now and then every hour: the inbox only
   * needs to recognise what a replayed sync brings again, and that is never old.
   */
  startPruning(retentionMs: number): void {
    const prune = (): void => {
      try {
        const n = this.inbox.prune(retentionMs);
        if (n > 0) this.log.info({ pruned: n }, "pruned handled events from the inbox");
      } catch (err) {
        this.log.warn({ err }, "could not prune the inbox");
      }
    };
    prune();
    this.pruner = setInterval(prune, Math.min(retentionMs, 3_600_000));
    this.pruner.unref();
  }

  /** Called synchronously from the sync handler, so the event is stored before the sync token moves on. */
  accept(roomId: string, raw: Record<string, unknown>): void {
    if (!this.accepting) return; // not stored: the next process gets it from the sync again
    // The bot's own messages, edits and reactions are never requests: two writes per streamed edit saved.
    if (this.ownUserId !== undefined && raw.sender === this.ownUserId) return;
    const msg = parseMessage(roomId, raw);
    if (!msg || msg.timestamp < this.notBefore) return;
    // Sent before the bot was in the room (the homeserver says so in `unsigned.membership`):
    // history a join brings along, not a request to this bot.
    const membership = (raw.unsigned as { membership?: unknown } | undefined)?.membership;
    if (membership !== undefined && membership !== "join") return;
    if (!this.inbox.accept(roomId, raw as Record<string, unknown> & { event_id: string })) return;
    this.enqueue(msg);
  }

  /** Re-queues what a previous process accepted but did not finish: before the sync starts, so they stay ahead of their rooms' new messages. */
  replayPending(): number {
    const pending = this.inbox.pending();
    for (const p of pending) {
      const msg = parseMessage(p.roomId, p.event);
      if (msg) this.enqueue(msg);
      else this.inbox.markDone(p.eventId);
    }
    return pending.length;
  }

  /** Stops taking new events and waits for those in hand. */
  async drain(): Promise<void> {
    this.accepting = false;
    if (this.pruner) clearInterval(this.pruner);
    await Promise.all([...this.chains.values()]);
  }

  private enqueue(msg: IncomingMessage): void {
    const prev = this.chains.get(msg.roomId) ?? this.gate ?? Promise.resolve();
    const next = prev.then(async () => {
      if (this.inbox.isDone(msg.eventId)) return;
      try {
        await this.handler(msg);
      } catch (err) {
        this.log.error({ err, roomId: msg.roomId, eventId: msg.eventId }, "failed to handle a message");
      }
      this.inbox.markDone(msg.eventId);
    });
    this.chains.set(msg.roomId, next);
    void next.then(() => {
      if (this.chains.get(msg.roomId) === next) this.chains.delete(msg.roomId);
    });
  }
}

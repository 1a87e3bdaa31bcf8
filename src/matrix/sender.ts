import type { MatrixClient } from "matrix-bot-sdk";
import type { Logger } from "../log.ts";
import type { MessageContent, ThreadTarget } from "./content.ts";
import { EditBudget } from "./edit-budget.ts";
import { RateLimitGate } from "./rate-limit.ts";
import { RequestLanes, type Ticket } from "./request-lanes.ts";

export interface SendCounters {
  requests: number;
  rateLimited: number;
  /** Edits (m.replace) that reached the homeserver. */
  edits: number;
}

/**
 * All of the bot's writes to Matrix go through here: one place that counts requests and
 * honours the homeserver's rate limits.
 */
export class MatrixSender {
  readonly counters: SendCounters = { requests: 0, rateLimited: 0, edits: 0 };
  private readonly client: MatrixClient;
  private readonly log: Logger;
  /** The account's rate limits: a 429 holds back every send of the bot, not only its own. */
  private readonly gate: RateLimitGate;
  /** The homeserver's request slots (the client's, when it has them: every request of the bot shares them). */
  readonly lanes: RequestLanes;
  /** How often streamed replies may be edited, all together (edit-budget.ts). */
  readonly budget: EditBudget;

  constructor(client: MatrixClient, log: Logger, onRateLimited?: () => void, opts: { baseWindowMs?: number; maxWindowMs?: number } = {}) {
    this.client = client;
    this.log = log;
    this.lanes = (client as { lanes?: RequestLanes }).lanes ?? new RequestLanes({ maxInFlight: 6 });
    const baseMs = opts.baseWindowMs ?? 1000;
    this.budget = new EditBudget({ baseMs, maxMs: Math.max(baseMs, opts.maxWindowMs ?? 20_000), maxInFlight: this.lanes.maxInFlight });
    this.lanes.onDone = (_lane, serviceMs) => this.budget.observe(serviceMs);
    this.gate = new RateLimitGate({
      maxRetries: 20,
      onRateLimited: () => {
        this.counters.rateLimited++;
        this.budget.rateLimited();
        onRateLimited?.();
      },
    });
  }

  /**
   * Waits for a homeserver slot in `ticket`'s lane, then runs `work`, whose sends go out at once:
   * a streamed reply decides what to send when its turn has come.
   */
  hold<T>(ticket: Ticket, work: () => Promise<T>): Promise<T> {
    return this.lanes.hold(ticket, work);
  }

  /**
   * Sends an event. With `retry` (the default) a 429 is waited out and the same content sent
   * again; without it the caller gets a RateLimitedError and decides what to send next
   * (a streaming edit sends its newest state instead of a stale one). With `txnId` the
   * homeserver drops a repeat of the same send (the scheduler's, across restarts).
   */
  async send(roomId: string, content: MessageContent, opts: { type?: string; retry?: boolean; txnId?: string } = {}): Promise<string> {
    const type = opts.type ?? "m.room.message";
    const { txnId } = opts;
    const id = await this.gate.run(
      () => {
        this.counters.requests++;
        if (txnId === undefined) return this.client.sendEvent(roomId, type, content);
        const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`;
        return (this.client.doRequest("PUT", path, null, content) as Promise<{ event_id: string }>).then((r) => r.event_id);
      },
      { retry: opts.retry ?? true, onWait: (waitMs) => this.log.warn({ roomId, waitMs }, "homeserver rate limit; waiting") },
    );
    if ((content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type === "m.replace") this.counters.edits++;
    return id;
  }

  /** Uploads `data` and posts it as an m.file in a thread: for answers and diffs too long for chat. */
  async sendFile(target: ThreadTarget, data: Buffer, filename: string, mimetype: string): Promise<string> {
    this.counters.requests++;
    const url = await this.client.uploadContent(data, mimetype, filename);
    return this.send(target.roomId, {
      msgtype: "m.file",
      body: filename,
      filename,
      url,
      info: { mimetype, size: data.length },
      "m.mentions": {},
      "m.relates_to": { rel_type: "m.thread", event_id: target.threadRoot, is_falling_back: true, "m.in_reply_to": { event_id: target.replyTo } },
    });
  }

  async react(roomId: string, eventId: string, key: string): Promise<string | undefined> {
    try {
      return await this.send(roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: eventId, key } }, { type: "m.reaction" });
    } catch (err) {
      // A reaction is decoration: failing to add one must never fail the work it decorates.
      this.log.warn({ err, roomId, eventId }, "could not react");
      return undefined;
    }
  }

  async redact(roomId: string, eventId: string, reason?: string): Promise<void> {
    this.counters.requests++;
    try {
      await this.client.redactEvent(roomId, eventId, reason);
    } catch (err) {
      this.log.warn({ err, roomId, eventId }, "could not redact");
    }
  }
}

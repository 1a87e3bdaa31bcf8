import type { MatrixClient } from "matrix-bot-sdk";
import type { Logger } from "../log.ts";
import type { MessageContent, ThreadTarget } from "./content.ts";

export class RateLimitedError extends Error {
  override name = "RateLimitedError";
  readonly retryAfterMs: number;
  /** True when the homeserver was not asked: an earlier 429 of the same account still applies. */
  readonly local: boolean;
  constructor(retryAfterMs: number, local = false) {
    super(`rate limited by the homeserver for ${retryAfterMs} ms`);
    this.retryAfterMs = retryAfterMs;
    this.local = local;
  }
}

/** The wait a homeserver asked for, if `err` is an M_LIMIT_EXCEEDED (matrix-bot-sdk does not retry those). */
export function rateLimitDelay(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { errcode?: string; retryAfterMs?: number; body?: { errcode?: string; retry_after_ms?: number }; statusCode?: number };
  const code = e.errcode ?? e.body?.errcode;
  if (code !== "M_LIMIT_EXCEEDED" && e.statusCode !== 429) return undefined;
  return e.retryAfterMs ?? e.body?.retry_after_ms ?? 1000;
}

export interface SendCounters {
  requests: number;
  rateLimited: number;
  /** Edits (m.replace) that reached the homeserver. */
  edits: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * All of the bot's writes to Matrix go through here: one place that counts requests and
 * honours the homeserver's rate limits.
 */
export class MatrixSender {
  readonly counters: SendCounters = { requests: 0, rateLimited: 0, edits: 0 };
  private readonly client: MatrixClient;
  private readonly log: Logger;
  private readonly onRateLimited: (() => void) | undefined;
  /**
   * Until when the homeserver asked the bot to wait. The limit is per account, so every send
   * honours it, not only the one that got the 429: otherwise each streaming reply would learn
   * of the limit by a 429 of its own.
   */
  private notBefore = 0;

  constructor(client: MatrixClient, log: Logger, onRateLimited?: () => void) {
    this.client = client;
    this.log = log;
    this.onRateLimited = onRateLimited;
  }

  /**
   * Sends an event. With `retry` (the default) a 429 is waited out and the same content sent
   * again; without it the caller gets a RateLimitedError and decides what to send next
   * (a streaming edit sends its newest state instead of a stale one).
   */
  async send(roomId: string, content: MessageContent, opts: { type?: string; retry?: boolean } = {}): Promise<string> {
    const type = opts.type ?? "m.room.message";
    for (let attempt = 0; ; attempt++) {
      const pending = this.notBefore - Date.now();
      if (pending > 0) {
        if (opts.retry === false) throw new RateLimitedError(pending, true);
        await sleep(pending);
      }
      this.counters.requests++;
      try {
        const id = await this.client.sendEvent(roomId, type, content);
        if ((content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type === "m.replace") this.counters.edits++;
        return id;
      } catch (err) {
        const wait = rateLimitDelay(err);
        if (wait === undefined) throw err;
        this.counters.rateLimited++;
        this.onRateLimited?.();
        this.notBefore = Math.max(this.notBefore, Date.now() + wait);
        if (opts.retry === false) throw new RateLimitedError(wait);
        if (attempt >= 20) throw err;
        this.log.warn({ roomId, waitMs: wait }, "homeserver rate limit; waiting");
        await sleep(wait);
      }
    }
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

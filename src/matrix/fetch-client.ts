import type { MessageContent } from "./content.ts";
import { RateLimitGate } from "./rate-limit.ts";

/** A homeserver's refusal, shaped like matrix-bot-sdk's MatrixError so rateLimitDelay reads both. */
export class HomeserverError extends Error {
  override name = "HomeserverError";
  readonly statusCode: number;
  readonly errcode: string | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, statusCode: number, errcode: string | undefined, retryAfterMs: number | undefined) {
    super(message);
    this.statusCode = statusCode;
    this.errcode = errcode;
    this.retryAfterMs = retryAfterMs;
  }
}

/** `retry_after_ms` of the body, else the Retry-After header (seconds), which newer servers send instead. */
function askedWaitMs(res: Response, json: Record<string, unknown>): number | undefined {
  if (typeof json.retry_after_ms === "number") return json.retry_after_ms;
  const seconds = Number(res.headers.get("retry-after") ?? NaN);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/**
 * A request the homeserver did not answer in time. It may have been carried out all the same:
 * a send with a transaction id can be repeated safely, anything else is the caller's to judge.
 */
export class HomeserverTimeout extends Error {
  override name = "HomeserverTimeout";
}

/**
 * The few client-server calls of a process without a running bot (the `send` CLI), over plain
 * fetch: matrix-bot-sdk is slow to load and noisy. A 429 is waited out a bounded number of times;
 * each request, its answer's body included, must be done within `timeoutMs` (default 30 s).
 */
export class FetchClient {
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly gate: RateLimitGate;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, token: string, opts: { maxRetries?: number; timeoutMs?: number } = {}) {
    this.baseUrl = baseUrl;
    this.token = token;
    this.gate = new RateLimitGate({ maxRetries: opts.maxRetries ?? 5 });
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  request(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    return this.gate.run(async () => {
      const signal = AbortSignal.timeout(this.timeoutMs);
      const what = `${method} ${path.split("?")[0]}`;
      let res: Response;
      let json: Record<string, unknown>;
      try {
        res = await fetch(new URL(path, this.baseUrl), {
          method,
          headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal,
        });
        json = (await res.json().catch((err: unknown) => {
          if (signal.aborted) throw err;
          return {};
        })) as Record<string, unknown>;
      } catch (err) {
        if (signal.aborted) throw new HomeserverTimeout(`the homeserver did not answer ${what} within ${Math.round(this.timeoutMs / 100) / 10} s`, { cause: err });
        throw err;
      }
      if (res.ok) return json;
      const errcode = typeof json.errcode === "string" ? json.errcode : undefined;
      const failed = `${what} failed: HTTP ${res.status} ${errcode ?? ""} ${String(json.error ?? "")}`.trim();
      throw new HomeserverError(failed, res.status, errcode, askedWaitMs(res, json));
    });
  }

  async resolveRoom(room: string): Promise<string> {
    if (room.startsWith("!")) return room;
    const res = await this.request("GET", `/_matrix/client/v3/directory/room/${encodeURIComponent(room)}`);
    return String(res.room_id);
  }

  /** Sends with the caller's transaction id, which the homeserver uses to drop a repeated send. */
  async sendMessage(roomId: string, txnId: string, content: MessageContent): Promise<string> {
    const res = await this.request("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${encodeURIComponent(txnId)}`, content);
    return String(res.event_id);
  }
}

import { setTimeout as sleep } from "node:timers/promises";

// The one place that knows how to wait out a homeserver's 429: the bot's sender (and so the
// scheduler, which sends through it) and the `send` CLI both run their requests through a
// RateLimitGate. Only a 429 / M_LIMIT_EXCEEDED is retried; any other failure is the caller's.

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

/** The wait when a 429 names none: neither `retry_after_ms` nor a Retry-After header. */
const fallbackWaitMs = 1000;

/**
 * The wait a homeserver asked for, if `err` is a 429 / M_LIMIT_EXCEEDED; undefined for any other
 * failure. Reads matrix-bot-sdk's MatrixError (and its raw response for a 429 without a Matrix
 * body) as well as HomeserverError of the fetch-based client.
 */
export function rateLimitDelay(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { errcode?: string; retryAfterMs?: number; body?: { errcode?: string; retry_after_ms?: number }; statusCode?: number };
  const code = e.errcode ?? e.body?.errcode;
  if (code !== "M_LIMIT_EXCEEDED" && e.statusCode !== 429) return undefined;
  return e.retryAfterMs ?? e.body?.retry_after_ms ?? fallbackWaitMs;
}

export interface RateLimitGateOptions {
  /** Further tries after a 429 before its error is passed on. */
  maxRetries: number;
  /** Called on every 429, with the wait asked for (counters, metrics). */
  onRateLimited?: (waitMs: number) => void;
}

export interface RunOptions {
  /**
   * False: a 429, or an earlier one still in force, throws RateLimitedError at once, so the
   * caller can decide what to send next (a streaming edit sends its newest state, not a stale one).
   */
  retry?: boolean;
  /** Called before each wait for a retry (where the caller logs what it waits for). */
  onWait?: (waitMs: number) => void;
}

/**
 * Runs requests of one Matrix account under the homeserver's rate limits. The limit is per
 * account, so a 429 holds back every request through the gate until its wait is over, not only
 * the one that got it: otherwise each concurrent reply would learn of the limit by a 429 of its own.
 */
export class RateLimitGate {
  private readonly opts: RateLimitGateOptions;
  /** Until when (epoch ms) the homeserver asked this account to wait. */
  private notBefore = 0;

  constructor(opts: RateLimitGateOptions) {
    this.opts = opts;
  }

  /** How long (ms) an earlier 429 still holds requests back; 0 when none does. */
  pendingMs(): number {
    return Math.max(0, this.notBefore - Date.now());
  }

  async run<T>(request: () => Promise<T>, opts: RunOptions = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const pending = this.pendingMs();
      if (pending > 0) {
        if (opts.retry === false) throw new RateLimitedError(pending, true);
        await sleep(pending);
      }
      try {
        return await request();
      } catch (err) {
        const wait = rateLimitDelay(err);
        if (wait === undefined) throw err;
        this.opts.onRateLimited?.(wait);
        this.notBefore = Math.max(this.notBefore, Date.now() + wait);
        if (opts.retry === false) throw new RateLimitedError(wait);
        if (attempt >= this.opts.maxRetries) throw err;
        opts.onWait?.(wait);
        // The loop's head waits out notBefore, which also covers a longer wait asked meanwhile.
      }
    }
  }
}

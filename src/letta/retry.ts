import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "@letta-ai/letta-client";

// How calls to Letta are retried, and how their failures read in a thread: one line, with
// the cause in words and never a token.

export interface RetryPolicy {
  maxRetries: number;
  retryDelayMs: number;
}

export interface RetryNotice {
  attempt: number;
  of: number;
  delayMs: number;
  error: unknown;
}

/** What the bot reads from a Letta answer stream (see LETTA-NOTES.md for the wire format). */
export interface LettaStream extends AsyncIterable<unknown> {
  controller: AbortController;
}

/** Letta already has the message a failed send was retrying: sending it again would double it. */
export class AlreadyAccepted extends Error {
  override name = "AlreadyAccepted";
  constructor() {
    super("Letta took the message, but its answer could not be streamed to the bot; the message was not sent again.");
  }
}

/**
 * Whether a failed request may be worth another try: a refused or broken connection, a timeout
 * before the answer began, or a 5xx status (never an error from inside a stream that already
 * started: that one has no status). Whether it may be *sent* again is the caller's question
 * (`mayRetry`): a timed-out or 5xx message send may have arrived.
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof APIUserAbortError) return false;
  if (err instanceof APIConnectionError) return true;
  return err instanceof APIError && typeof err.status === "number" && err.status >= 500;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/** A refused connection: the request never reached the server, so trying again is always safe. */
export function neverArrived(err: unknown): boolean {
  if (!(err instanceof APIConnectionError) || err instanceof APIConnectionTimeoutError) return false;
  for (let e: unknown = err, i = 0; i < 4 && e; i++, e = (e as { cause?: unknown }).cause) if ((e as { code?: unknown }).code === "ECONNREFUSED") return true;
  return false;
}

/**
 * Runs `fn`, retrying retryable failures `maxRetries` times with exponential backoff. `mayRetry`
 * has the last word on each retryable failure (it may also throw instead): false ends the tries
 * with that failure.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: { onRetry?: (n: RetryNotice) => void | Promise<void>; signal?: AbortSignal; mayRetry?: (err: unknown) => boolean | Promise<boolean> } = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt > policy.maxRetries || !isRetryable(err) || opts.signal?.aborted || (opts.mayRetry && !(await opts.mayRetry(err)))) {
        if (attempt > 1 && isRetryable(err)) (err as { retries?: number }).retries = attempt - 1;
        throw err;
      }
      const delayMs = policy.retryDelayMs * 2 ** (attempt - 1);
      await opts.onRetry?.({ attempt, of: policy.maxRetries, delayMs, error: err });
      await sleep(delayMs, opts.signal);
    }
  }
}

const oneLine = (s: string, n = 200): string => {
  const line = s.replace(/\s+/g, " ").trim();
  return line.length > n ? `${line.slice(0, n - 1)}…` : line;
};

/** The server's own words from an error body: FastAPI's `detail`, Letta's `message`/`detail`. */
function bodyDetail(body: unknown): string | undefined {
  if (typeof body === "string") return body || undefined;
  if (!body || typeof body !== "object") return undefined;
  const b = body as { detail?: unknown; message?: unknown; error?: unknown };
  if (typeof b.detail === "string") return typeof b.message === "string" && b.message !== b.detail ? `${b.message} — ${b.detail}` : b.detail;
  if (Array.isArray(b.detail)) {
    return b.detail.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join(".")}: ${d.msg ?? "invalid"}`).join("; ");
  }
  if (typeof b.message === "string") return b.message;
  if (b.error) return bodyDetail(b.error);
  return undefined;
}

function networkCause(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (code === "ECONNREFUSED") return "connection refused";
    if (code === "ECONNRESET" || code === "UND_ERR_SOCKET") return "connection reset";
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host not found";
    if (typeof code === "string" && code.length > 0) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return "connection failed";
}

/**
 * Tokens of the configured Letta servers. Error answers quote the server's own words, and a
 * server or proxy may echo the Authorization header back: those words go into a room.
 */
const tokens = new Set<string>();

/** A token to blank out of every error text (some servers quote it back). */
export function scrubToken(token: string): void {
  tokens.add(token);
}

function scrubTokens(text: string): string {
  let out = text.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]");
  for (const t of tokens) if (t.length >= 4) out = out.split(t).join("[redacted]");
  return out;
}

/** One line for people: what went wrong talking to Letta, without stack or secrets. */
export function describeLettaError(err: unknown, baseUrl: string): string {
  const unsure = (err as { unconfirmed?: boolean } | null)?.unconfirmed ? " The message was not sent again: Letta may have it." : "";
  return scrubTokens(describeRaw(err, baseUrl)) + unsure;
}

function describeRaw(err: unknown, baseUrl: string): string {
  const retries = (err as { retries?: number } | null)?.retries;
  const after = retries ? ` (after ${retries} ${retries === 1 ? "retry" : "retries"})` : "";
  if (err instanceof APIConnectionTimeoutError) return `Letta at ${baseUrl} did not answer in time${after}.`;
  if (err instanceof APIConnectionError) return `Letta is not reachable at ${baseUrl}: ${networkCause(err)}${after}.`;
  if (err instanceof APIError && typeof err.status === "number") {
    const detail = bodyDetail(err.error);
    const what = err.status >= 500 ? "Letta failed" : "Letta refused the request";
    return `${what} (HTTP ${err.status})${detail ? `: ${oneLine(detail).replace(/\.$/, "")}` : ""}${after}.`;
  }
  if (err instanceof APIError) return oneLine(bodyDetail(err.error) ?? err.message);
  return oneLine((err as Error)?.message ?? String(err));
}

export const isNotFound = (err: unknown): boolean => err instanceof APIError && err.status === 404;

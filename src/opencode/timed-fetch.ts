// Node's fetch waits up to 5 minutes for an answer (undici's header and body timeouts). A hung
// OpenCode server (it accepts the connection and never answers) would hold a room that long per
// call, since a room's messages are handled one at a time. The SDK client gets this fetch
// instead: every request but the long-lived ones must be answered, body included, in time.

/** OpenCode accepted a request but did not answer it in time. */
export class OpencodeTimeoutError extends Error {
  override name = "OpencodeTimeoutError";
}

/** "30 s", "2.5 s", "800 ms": for people. */
export function formatWait(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

/**
 * Requests whose answer takes as long as the work: the event streams (SSE), and the calls
 * OpenCode answers only when their turn is over (`/command`, the blocking `/message`, `/shell`).
 * Their end is seen through the event stream, which has its own watchdog.
 */
export function isLongLived(req: Request): boolean {
  const path = new URL(req.url).pathname;
  if (/\/event$/.test(path) || (req.headers.get("accept") ?? "").includes("text/event-stream")) return true;
  return req.method === "POST" && /\/session\/[^/]+\/(command|message|shell)$/.test(path);
}

/** Statuses whose Response may not carry a body. */
const nullBodyStatus = new Set([101, 103, 204, 205, 304]);

/**
 * A fetch for the OpenCode SDK client: a request (not long-lived) must be answered, body read to
 * the end, within `timeoutMs`, else it fails with OpencodeTimeoutError ("OpenCode did not answer
 * within 30 s (GET /session/status)"). The caller's own abort still works and is passed on as is.
 */
export function timedFetch(timeoutMs: number, base: (req: Request, init?: RequestInit) => Promise<Response> = (r, i) => fetch(r, i)): typeof fetch {
  return async (input, init) => {
    const req = input instanceof Request && init === undefined ? input : new Request(input, init);
    if (isLongLived(req)) return base(req);
    const timer = new AbortController();
    const t = setTimeout(() => timer.abort(), timeoutMs);
    try {
      const res = await base(req, { signal: AbortSignal.any([req.signal, timer.signal]) });
      // Read here, under the same timer: a server may send the headers and then hang.
      const body = nullBodyStatus.has(res.status) ? null : await res.arrayBuffer();
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } catch (err) {
      if (timer.signal.aborted && !req.signal.aborted) {
        const path = new URL(req.url).pathname;
        throw new OpencodeTimeoutError(`OpenCode did not answer within ${formatWait(timeoutMs)} (${req.method} ${path})`, { cause: err });
      }
      throw err;
    } finally {
      clearTimeout(t);
    }
  };
}

import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.ts";
import type { NotifyResult } from "../notify/notifier.ts";
import { parseNotifyPayload, sessionOf, type NotifyPayload } from "../notify/payload.ts";
import { KeyedRateLimiter } from "./rate-limit.ts";

export interface HealthReport {
  ok: boolean;
  [component: string]: unknown;
}

export interface HttpDeps {
  host: string;
  port: number;
  log: Logger;
  health: () => Promise<HealthReport>;
  /** GET /metrics: Prometheus text. Absent: the endpoint does not exist. */
  metrics?: { contentType: string; text: () => Promise<string> } | undefined;
  /** POST /notify. With no token the endpoint answers 404 "disabled". */
  notify?:
    | {
        token: string | undefined;
        deliver: (p: NotifyPayload) => Promise<NotifyResult>;
        /** Called once per request with how it ended, for the metrics. */
        onOutcome?: (outcome: "posted" | "skipped" | "rejected" | "failed") => void;
        /** Notifications a minute (token buckets): per token, and per session id. Default 30 and 10. */
        perTokenPerMinute?: number | undefined;
        perSessionPerMinute?: number | undefined;
      }
    | undefined;
  /** POST /mcp: the MCP endpoint Letta agents delegate to OpenCode through (src/mcp/). Absent: 404. */
  mcp?: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
  /** Largest request body read, in bytes. Default 64 KiB. */
  maxBodyBytes?: number;
  /** The clock of the rate limits (tests move it instead of waiting). */
  now?: () => number;
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  /** More fields of the JSON answer, beside `error`. */
  readonly fields: Record<string, unknown>;
  constructor(status: number, message: string, headers: Record<string, string> = {}, fields: Record<string, unknown> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
    this.fields = fields;
  }
}

/** A 429 with Retry-After (whole seconds, rounded up) and the limit that was hit. */
function tooMany(limit: "token" | "session", what: string, waitMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new HttpError(429, `rate limited: ${what}; retry in ${seconds} s`, { "retry-after": String(seconds) }, { limit, retryAfterSeconds: seconds });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Constant-time comparison of a presented token with the configured one (hashes first, so lengths leak nothing). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header; undefined without the header, null when it is not of that form. */
function bearer(req: IncomingMessage): string | undefined | null {
  const h = req.headers.authorization;
  if (h === undefined || h.trim() === "") return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
  return m?.[1] ?? null;
}

/**
 * Reads a request body up to `limit` bytes. Past the limit it stops reading and throws a 413;
 * the caller answers and the connection is closed rather than drained.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HttpError(413, `body too large: ${declared} bytes, the limit is ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined): void => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (err) {
        req.pause();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) finish(new HttpError(413, `body too large: more than ${limit} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void => finish(err);
    const onClose = (): void => finish(new Error("the client went away before the body ended"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** Names the parts of a health report that are not usable: a component `{ok: false}` or a list holding one. */
export function failingParts(report: HealthReport): string[] {
  const failing: string[] = [];
  for (const [name, v] of Object.entries(report)) {
    const isDown = (x: unknown): boolean => typeof x === "object" && x !== null && (x as { ok?: unknown }).ok === false;
    if (Array.isArray(v) ? v.some(isDown) : isDown(v)) failing.push(name);
  }
  return failing;
}

const endpoints = ["GET /health", "GET /metrics", "POST /notify", "POST /mcp"];

/**
 * The bot's own HTTP endpoints: /health, /metrics, /notify. Every refusal is a JSON
 * `{error}` with a 4xx saying what is wrong; nothing a client sends can stop the bot.
 */
export async function startHttpServer(deps: HttpDeps): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const limit = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = deps.log.child({ component: "http" });

  const refuse = (req: IncomingMessage, res: ServerResponse, err: HttpError, path: string): void => {
    // A flood held back by the rate limit must not become a flood of log lines.
    log[err.status === 429 ? "debug" : "info"]({ method: req.method, path, status: err.status, reason: err.message }, "HTTP request refused");
    if (err.status === 413) {
      // Stop reading: answer, then close the connection instead of draining the rest of the body.
      res.once("finish", () => setTimeout(() => req.socket.destroy(), 200).unref());
      json(res, err.status, { error: err.message, ...err.fields }, { ...err.headers, connection: "close" });
      return;
    }
    json(res, err.status, { error: err.message, ...err.fields }, err.headers);
  };

  const onlyMethods = (req: IncomingMessage, path: string, allowed: string[]): void => {
    if (!allowed.includes(req.method ?? "")) {
      throw new HttpError(405, `method ${req.method ?? "?"} is not allowed on ${path}: use ${allowed.filter((m) => m !== "HEAD").join(" or ")}`, {
        allow: allowed.join(", "),
      });
    }
  };

  const health = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    onlyMethods(req, "/health", ["GET", "HEAD"]);
    let report: HealthReport;
    try {
      report = await deps.health();
    } catch (err) {
      return json(res, 503, { ok: false, error: `health check failed: ${(err as Error).message}` });
    }
    if (report.ok) return json(res, 200, report);
    const failing = failingParts(report);
    json(res, 503, { ...report, failing, error: `not usable: ${failing.join(", ") || "unknown part"}` });
  };

  const metrics = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const m = deps.metrics;
    if (!m) throw new HttpError(404, "metrics are not enabled");
    onlyMethods(req, "/metrics", ["GET", "HEAD"]);
    const text = await m.text();
    res.writeHead(200, { "content-type": m.contentType, "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  const perToken = new KeyedRateLimiter(deps.notify?.perTokenPerMinute ?? 30, deps.now ? { now: deps.now } : {});
  const perSession = new KeyedRateLimiter(deps.notify?.perSessionPerMinute ?? 10, deps.now ? { now: deps.now } : {});

  const notify = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const n = deps.notify;
    onlyMethods(req, "/notify", ["POST"]);
    if (n?.token === undefined) throw new HttpError(404, "notify is disabled: set notify.token (BOT_NOTIFY_TOKEN)");
    const presented = bearer(req);
    if (presented === undefined) throw new HttpError(401, "missing token: send the header Authorization: Bearer <notify.token>", { "www-authenticate": 'Bearer realm="notify"' });
    if (presented === null) throw new HttpError(401, "malformed Authorization header: use Authorization: Bearer <notify.token>", { "www-authenticate": 'Bearer realm="notify"' });
    if (!tokenMatches(presented, n.token)) {
      throw new HttpError(401, "wrong token", { "www-authenticate": 'Bearer realm="notify", error="invalid_token"' });
    }
    // Before the body is read: a flood costs the bot as little as possible.
    const tokenWait = perToken.take(createHash("sha256").update(presented).digest("hex"));
    if (tokenWait > 0) throw tooMany("token", `more than ${perToken.perMinute} notifications a minute with this token`, tokenWait);
    const raw = await readBody(req, limit);
    if (raw.length === 0) throw new HttpError(400, "empty body: send a JSON object with title, message, status and sessionId");
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw new HttpError(400, `body is not JSON: ${(err as Error).message}`);
    }
    const parsed = parseNotifyPayload(body);
    if (!parsed.ok) {
      n.onOutcome?.("rejected");
      log.info({ path: "/notify", status: 400, reason: parsed.error }, "HTTP request refused");
      return json(res, 400, { error: parsed.error, fields: parsed.fields });
    }
    const session = sessionOf(parsed.payload);
    const sessionWait = perSession.take(session ?? "");
    if (sessionWait > 0) {
      const about = session === undefined ? "without a session id" : `for session ${session}`;
      throw tooMany("session", `more than ${perSession.perMinute} notifications a minute ${about}`, sessionWait);
    }
    const result = await n.deliver(parsed.payload);
    n.onOutcome?.(result.status >= 500 ? "failed" : result.status >= 400 ? "rejected" : result.body.posted === false ? "skipped" : "posted");
    json(res, result.status, result.body);
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let path = "/";
    try {
      path = new URL(req.url ?? "/", "http://bot").pathname;
    } catch {
      path = req.url ?? "/";
    }
    const route =
      path === "/health" ? health : path === "/metrics" ? metrics : path === "/notify" ? notify : path === "/mcp" ? deps.mcp : undefined;
    if (!route) {
      log.debug({ method: req.method, path }, "HTTP request for an unknown path");
      return json(res, 404, { error: `no such endpoint: ${req.method ?? "?"} ${path}`, endpoints });
    }
    route(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (path === "/notify" && err.status !== 405) deps.notify?.onOutcome?.("rejected");
        return refuse(req, res, err, path);
      }
      log.error({ err, path }, "HTTP handler failed");
      json(res, 500, { error: `internal error: ${(err as Error).message}` });
    });
  });
  server.keepAliveTimeout = 5000;
  // A client that trickles a request must not hold a connection for long.
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    // Malformed HTTP: answer 400 if the socket still takes it; never let it reach the process.
    if (socket.writable && err.code !== "ECONNRESET") socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(deps.port, deps.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  deps.log.info({ host: deps.host, port, notify: deps.notify?.token !== undefined }, "HTTP endpoints listening");
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

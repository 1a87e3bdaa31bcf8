import { pino, type Logger } from "pino";
import PinoPretty from "pino-pretty";
import { LogService, LogLevel, type ILogger } from "matrix-bot-sdk";

export type { Logger };

// Keys that may carry secrets anywhere in a log object, in the spellings clients use. Values are
// replaced, the key stays so that a reader sees that something was there. pino's paths are exact
// (no case folding, no deep wildcard): each name at the top and two levels down.
const secretKeys = [
  "accessToken", "access_token", "AccessToken",
  "password", "Password", "PASSWORD", "passwd",
  "token", "Token", "TOKEN", "apiToken", "api_token", "ApiToken",
  "apiKey", "api_key", "ApiKey", "API_KEY", "x-api-key", "X-Api-Key",
  "notifyToken", "secret", "clientSecret", "client_secret",
  "authorization", "Authorization", "AUTHORIZATION", "cookie", "Cookie", "set-cookie",
];
const quoted = (k: string): string => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`);
const join = (prefix: string, k: string): string => (quoted(k).startsWith("[") ? `${prefix.replace(/\.$/, "")}${quoted(k)}` : `${prefix}${k}`);
export const redactPaths = secretKeys.flatMap((k) => ["", "*.", "*.*."].map((prefix) => join(prefix, k)));

/**
 * Secret values learnt while running (a token from a password login, the embedded OpenCode
 * server's random password): every logger and the matrix-bot-sdk bridge scrub them from each
 * line they write, including lines of loggers created before the secret was known.
 */
const runtimeSecrets = new Set<string>();

/** Too short a value would blank out ordinary words of every log line. */
const minSecretLength = 6;

/** Adds a secret value to scrub from every log line from now on. */
export function addSecret(secret: string | undefined | null): void {
  if (typeof secret === "string" && secret.length >= minSecretLength) runtimeSecrets.add(secret);
}

export type LogFormat = "json" | "pretty";

/** Readable lines for a person at a terminal; JSON wherever a program reads (pipes, files, log collectors, the tests). */
export function defaultLogFormat(): LogFormat {
  return process.stdout.isTTY ? "pretty" : "json";
}

/** Lines like `[12:00:01.250] INFO: bot ready {"userId":"@bot:example.org"}`; coloured only on the real terminal. */
function prettyStream(destination: NodeJS.WritableStream | undefined): NodeJS.WritableStream {
  const colour = destination === undefined && process.stdout.isTTY === true && !process.env.NO_COLOR;
  // sync: a fatal line written just before process.exit must not be lost.
  return PinoPretty({ destination: destination ?? 1, sync: true, colorize: colour, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname", singleLine: true });
}

export function createLogger(level: string, secrets: string[] = [], destination?: NodeJS.WritableStream, format: LogFormat = destination ? "json" : defaultLogFormat()): Logger {
  const scrub = secretScrubber(secrets);
  return pino(
    {
      level,
      redact: { paths: redactPaths, censor: "[redacted]" },
      // HTTP clients' errors sometimes quote URLs, headers or bodies: whatever part of a line
      // holds a known secret value (message, object, error, child binding), it goes. The hook
      // sees the JSON line before the pretty printer does, so both formats are scrubbed.
      hooks: { streamWrite: scrub },
    },
    format === "pretty" ? prettyStream(destination) : (destination ?? pino.destination(1)),
  );
}

/** Replaces `secrets` and every secret added with addSecret, as they are and as JSON escapes them. */
export function secretScrubber(secrets: string[]): (s: string) => string {
  const own = secrets.filter((s) => s.length >= minSecretLength);
  return (s) => {
    let out = s;
    for (const secret of [...own, ...runtimeSecrets]) {
      if (out.includes(secret)) out = out.split(secret).join("[redacted]");
      // A secret with a quote, backslash or control character is escaped in a JSON line.
      const escaped = JSON.stringify(secret).slice(1, -1);
      if (escaped !== secret && out.includes(escaped)) out = out.split(escaped).join("[redacted]");
    }
    return out;
  };
}

/**
 * The wait a rate-limit answer asks for, when an SDK line is one: matrix-bot-sdk logs every 429
 * (M_LIMIT_EXCEEDED) at ERROR, though the bot handles them (rate-limit.ts waits them out, or a
 * streamed edit gives way to a newer one). Undefined for any other line; null when no wait is named.
 */
export function rateLimitLine(text: string): number | null | undefined {
  if (!text.includes("M_LIMIT_EXCEEDED")) return undefined;
  const ms = /"retry_after_ms":\s*(\d+)/.exec(text)?.[1];
  return ms === undefined ? null : Number(ms);
}

/**
 * Routes matrix-bot-sdk's own logging into pino, at warn and above, scrubbed (before the cut, so
 * no part of a secret stays). Handled rate limits become info lines with the wait asked for.
 */
export function bridgeMatrixSdkLogs(log: Logger, secrets: string[] = []): void {
  const scrub = secretScrubber(secrets);
  const fmt = (module: string, args: unknown[]): [object, string] => {
    const text = args.map((a) => (typeof a === "string" ? a : a instanceof Error ? a.message : safeJson(a))).join(" ");
    return [{ module }, scrub(text).slice(0, 2000)];
  };
  const sdkLog = log.child({ component: "matrix-sdk" });
  const rateLimited = (obj: object, text: string): boolean => {
    const wait = rateLimitLine(text);
    if (wait === undefined) return false;
    sdkLog.info({ ...obj, retryAfterMs: wait, detail: text }, "homeserver rate limit (429); handled by waiting");
    return true;
  };
  const logger: ILogger = {
    trace: (m, ...a) => sdkLog.trace(...fmt(m, a)),
    debug: (m, ...a) => sdkLog.debug(...fmt(m, a)),
    info: (m, ...a) => sdkLog.info(...fmt(m, a)),
    warn: (m, ...a) => {
      const [obj, text] = fmt(m, a);
      if (!rateLimited(obj, text)) sdkLog.warn(obj, text);
    },
    // The SDK logs an expected 404 for m.direct account data at ERROR on start; not worth a page.
    error: (m, ...a) => {
      const [obj, text] = fmt(m, a);
      if (rateLimited(obj, text)) return;
      if (text.includes("M_NOT_FOUND")) sdkLog.debug(obj, text);
      else sdkLog.error(obj, text);
    },
  };
  LogService.setLogger(logger);
  LogService.setLevel(LogLevel.WARN);
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

import { pino, type Logger } from "pino";
import { LogService, LogLevel, type ILogger } from "matrix-bot-sdk";

export type { Logger };

// Keys that may carry secrets anywhere in a log object. Values are replaced, the key stays
// so that a reader sees that something was there.
const redactPaths = [
  "accessToken", "*.accessToken", "*.*.accessToken",
  "password", "*.password", "*.*.password",
  "token", "*.token", "apiKey", "*.apiKey", "notifyToken", "*.notifyToken",
  "authorization", "*.authorization", "headers.authorization", "*.headers.authorization",
  "access_token", "*.access_token",
];

export function createLogger(level: string, secrets: string[] = [], destination?: NodeJS.WritableStream): Logger {
  const scrub = secretScrubber(secrets);
  return pino(
    {
      level,
      redact: { paths: redactPaths, censor: "[redacted]" },
      // Error messages from HTTP clients sometimes quote URLs or bodies; scrub known secret values.
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === "string" ? scrub(a) : a)) as Parameters<typeof method>);
        },
      },
      serializers: { err: (e: unknown) => scrubError(e, scrub) },
    },
    destination ?? pino.destination(1),
  );
}

export function secretScrubber(secrets: string[]): (s: string) => string {
  const real = secrets.filter((s) => s.length >= 6);
  if (real.length === 0) return (s) => s;
  return (s) => real.reduce((acc, secret) => acc.split(secret).join("[redacted]"), s);
}

function scrubError(e: unknown, scrub: (s: string) => string): unknown {
  const base = pino.stdSerializers.err(e as Error);
  if (base === undefined || base === null) return base;
  return JSON.parse(scrub(JSON.stringify(base))) as unknown;
}

/** Routes matrix-bot-sdk's own logging into pino, at warn and above, scrubbed. */
export function bridgeMatrixSdkLogs(log: Logger, secrets: string[]): void {
  const scrub = secretScrubber(secrets);
  const fmt = (module: string, args: unknown[]): [object, string] => {
    const text = args.map((a) => (typeof a === "string" ? a : a instanceof Error ? a.message : safeJson(a))).join(" ");
    return [{ module }, scrub(text).slice(0, 2000)];
  };
  const sdkLog = log.child({ component: "matrix-sdk" });
  const logger: ILogger = {
    trace: (m, ...a) => sdkLog.trace(...fmt(m, a)),
    debug: (m, ...a) => sdkLog.debug(...fmt(m, a)),
    info: (m, ...a) => sdkLog.info(...fmt(m, a)),
    // The SDK logs an expected 404 for m.direct account data at ERROR on start; not worth a page.
    warn: (m, ...a) => sdkLog.warn(...fmt(m, a)),
    error: (m, ...a) => {
      const [obj, text] = fmt(m, a);
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

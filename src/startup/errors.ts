import { envOverrides } from "../config/load.ts";

// Start-up problems in the words of whoever runs the bot: which setting, what went wrong, what to do.
// The exit code tells a supervisor whether trying again can help: 2 when a setting (or what it points
// at) is wrong and only a person can fix it, 1 when a service could not be reached or something broke.

export type ExitCode = 1 | 2;

export class StartupError extends Error {
  override name = "StartupError";
  readonly exitCode: ExitCode;

  /** `message`: one or two lines for the terminal; `cause`: the original error, for the JSON log. */
  constructor(message: string, exitCode: ExitCode, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.exitCode = exitCode;
  }
}

/** The bad command line of `src/main.ts`; exit code 2 like a bad setting. */
export class UsageError extends Error {
  override name = "UsageError";
}

const tlsCodes = new Set([
  "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "ERR_TLS_CERT_ALTNAME_INVALID", "CERT_NOT_YET_VALID",
]);

/**
 * The error code of a failed request, wherever the client put it: fetch wraps it in `cause`, and
 * a host with several addresses (localhost: ::1 and 127.0.0.1) gives an AggregateError of them.
 */
export function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === "object" && depth < 4; depth++) {
    const o = e as { code?: unknown; name?: unknown; errors?: unknown; cause?: unknown };
    if (o.name === "TimeoutError" || o.name === "AbortError") return "TIMEOUT";
    if (typeof o.code === "string" && o.code !== "ERR_INVALID_URL") return o.code;
    if (Array.isArray(o.errors) && o.errors.length > 0) e = o.errors[0];
    else e = o.cause;
  }
  return undefined;
}

/** What a failed connection means, as the end of a sentence ("…: connection refused"). Undefined when it is no network failure. */
export function networkProblem(err: unknown, timeoutS: number): string | undefined {
  const code = errorCode(err);
  if (code === undefined) return undefined;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENOTFOUND") return "no such host name (DNS)";
  if (code === "EAI_AGAIN") return "the host name could not be looked up (DNS did not answer)";
  if (code === "TIMEOUT" || code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_HEADERS_TIMEOUT") return `no answer within ${timeoutS} s`;
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return "no route to the host (network unreachable)";
  if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") return "the connection was closed before an answer";
  if (tlsCodes.has(code)) return `its TLS certificate is not trusted (${code})`;
  if (code === "EPROTO" || code.startsWith("ERR_SSL")) return `the TLS handshake failed (${code}); is it http:// rather than https://?`;
  return `the request failed (${code})`;
}

/** The text of an error for the end of a sentence, without a trailing period; fetch's "fetch failed" gives way to its cause. */
export function messageOf(err: unknown): string {
  let e = err;
  while (e instanceof Error && e.message === "fetch failed" && e.cause !== undefined) e = e.cause;
  const text = e instanceof Error ? e.message : String(e);
  return text.replace(/\.\s*$/, "");
}

/** Plain words for a file-system error on `path` ("permission denied", "…is not a directory"). */
export function fsProblem(err: unknown): string {
  const code = errorCode(err);
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EROFS") return "the file system is read-only";
  if (code === "ENOTDIR") return "a part of the path is a file, not a directory";
  if (code === "EISDIR") return "it is a directory, not a file";
  if (code === "ENOSPC") return "no space left on the device";
  if (code === "ENOENT") return "it does not exist";
  return messageOf(err);
}

/** A configuration error, led by the likelier cause when nothing configured the bot: no file, no variable. */
export function configErrorText(message: string, configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (configFile !== undefined || envOverrides.some((o) => env[o.env] !== undefined && env[o.env] !== "")) return message;
  return `No config file was read: there is no config/config.yaml, and neither --config nor BOT_CONFIG names one. Copy config/config.example.yaml to config/config.yaml and fill it in.\n${message}`;
}

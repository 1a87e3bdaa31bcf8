import { settingName } from "../config/load.ts";
import type { Logger } from "../log.ts";
import { basicAuthHeaders, type OpencodeAuth } from "./server-auth.ts";
import type { KeyValue } from "../store/key-value.ts";
import { StartupError, messageOf, networkProblem } from "../startup/errors.ts";
import { settingsName } from "../startup/matrix-check.ts";

// An OpenCode server at opencode.serverUrl that does not answer when the bot starts:
// - if the bot has reached that URL before, OpenCode is down for a while (a reboot, an update):
//   the bot starts and keeps trying, as a running bot does when it loses OpenCode;
// - if it never has, the URL is most likely wrong (a typo, the wrong port, a server never
//   started), and a bot that says "ready" and fails at the first prompt hides that: it stops, in words.
// Wrong credentials or a URL that is not OpenCode's stop it either way: waiting cannot fix them.

const probeTimeoutMs = 5000;
/** At a first start OpenCode may be starting alongside the bot: a refused connection is asked again this long. */
const firstStartGraceMs = 5000;

export type OpencodeProbe =
  | { ok: true; version: string }
  | { ok: false; kind: "unreachable" | "credentials" | "not-opencode"; problem: string; cause?: unknown };

/** GET /global/health, as the bot's connection asks it. */
export async function probeOpencode(url: string, auth: Partial<OpencodeAuth> | undefined): Promise<OpencodeProbe> {
  let res: Response;
  try {
    res = await fetch(new URL("/global/health", url), { headers: basicAuthHeaders(auth), signal: AbortSignal.timeout(probeTimeoutMs) });
  } catch (err) {
    return { ok: false, kind: "unreachable", problem: networkProblem(err, probeTimeoutMs / 1000) ?? messageOf(err), cause: err };
  }
  const text = await res.text().catch(() => "");
  if (res.status === 401 || res.status === 403) return { ok: false, kind: "credentials", problem: `HTTP ${res.status}` };
  if (res.status >= 500) return { ok: false, kind: "unreachable", problem: `it answers HTTP ${res.status}` };
  try {
    const body = JSON.parse(text) as { healthy?: unknown; version?: unknown };
    if (res.ok && body.healthy === true) return { ok: true, version: typeof body.version === "string" ? body.version : "?" };
  } catch { /* an HTML page or other non-JSON: not OpenCode's API */ }
  return { ok: false, kind: "not-opencode", problem: `HTTP ${res.status}${res.ok ? " without OpenCode's health answer" : ""} for /global/health` };
}

/** The failed probe in words, naming the settings. */
export function opencodeProblemText(url: string, probe: Exclude<OpencodeProbe, { ok: true }>, env: NodeJS.ProcessEnv = process.env): string {
  const key = settingName("opencode.serverUrl", env);
  if (probe.kind === "credentials") {
    return `OpenCode at ${url} (${key}) refused the bot's credentials (${settingsName(["opencode.username", "opencode.password"], env)}): ${probe.problem}. Use the server's OPENCODE_SERVER_USERNAME and OPENCODE_SERVER_PASSWORD.`;
  }
  if (probe.kind === "not-opencode") {
    return `${url} (${key}) answers, but not as an OpenCode server (${probe.problem}). Use the address \`opencode serve\` prints ("opencode server listening on …").`;
  }
  return `Cannot reach OpenCode at ${url} (${key}): ${probe.problem}. Is \`opencode serve\` running there? (Without opencode.serverUrl the bot starts its own.)`;
}

const reachedKey = (url: string): string => `opencode.reached.${url}`;

/** Remembers that the bot reached OpenCode at `url`, so a later start waits for it instead of stopping. */
export function rememberOpencodeReached(kv: KeyValue, url: string): void {
  kv.set(reachedKey(url), String(Date.now()));
}

/** The start-time check of an external OpenCode server (see the top of this file). */
/** `reached`: it answered (with its version), or the bot starts without it (it was reached before). */
export async function checkExternalOpencode(url: string, auth: Partial<OpencodeAuth>, kv: KeyValue, log: Logger, env: NodeJS.ProcessEnv = process.env, graceMs = firstStartGraceMs): Promise<{ reached: boolean; version?: string | undefined }> {
  const known = kv.get(reachedKey(url)) !== undefined;
  const end = Date.now() + graceMs;
  let probe = await probeOpencode(url, auth);
  while (!probe.ok && !known && probe.kind === "unreachable" && probe.problem === "connection refused" && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    probe = await probeOpencode(url, auth);
  }
  if (probe.ok) {
    rememberOpencodeReached(kv, url);
    return { reached: true, version: probe.version };
  }
  const text = opencodeProblemText(url, probe, env);
  if (probe.kind !== "unreachable") throw new StartupError(text, 2, probe.cause);
  if (!known) throw new StartupError(`${text}\nThe bot has never reached this URL, so it is most likely wrong; once it has, the bot waits for OpenCode instead of stopping.`, 1, probe.cause);
  log.warn({ url, problem: probe.problem }, "OpenCode is not reachable; it was before, so the bot starts and keeps trying");
  return { reached: false };
}

/** A failed start of the bot's own `opencode serve`, in words; its last log lines stay in the JSON log (the error's cause). */
export function explainEmbeddedFailure(err: unknown): never {
  const first = messageOf(err).split("\n")[0] ?? "";
  const why = first.replace(/^opencode serve /, "").replace(/ \(binary .*\)$/, "");
  throw new StartupError(
    `The OpenCode server the bot starts itself (no opencode.serverUrl is set) did not come up: ${why}. ` +
      "Its last log lines are in the bot's log (LOG_LEVEL=debug shows all); `opencode serve` in the workspace shows the same.",
    1,
    err,
  );
}

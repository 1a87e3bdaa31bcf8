import { settingName } from "../config/load.ts";
import type { Credentials } from "../matrix/bot-client.ts";
import type { KeyValue } from "../store/key-value.ts";
import { StartupError, messageOf, networkProblem } from "./errors.ts";

// Asked before anything heavy starts (the embedded OpenCode server takes seconds and hundreds of
// megabytes): a wrong homeserver URL or token is the commonest first-run mistake.

const timeoutMs = 10_000;

interface Answer {
  status: number;
  json: Record<string, unknown> | undefined;
}

/** One request to the homeserver's client API; throws only when no answer came. */
export async function matrixRequest(baseUrl: string, path: string, init: { method?: string; token?: string; body?: object } = {}): Promise<Answer> {
  const res = await fetch(new URL(path, baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`), {
    method: init.method ?? "GET",
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body ? { "content-type": "application/json" } : {}) },
    ...(init.body ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
  } catch { /* not JSON: not a Matrix API */ }
  return { status: res.status, json };
}

const hints: Record<string, string> = {
  "connection refused": "Is the homeserver (e.g. Synapse) running, and is the port right?",
  "no such host name (DNS)": "Is the host name spelt right?",
};

/** Plain words for a homeserver that gave no answer. */
export function unreachableHomeserver(url: string, err: unknown, env: NodeJS.ProcessEnv = process.env): StartupError {
  const problem = networkProblem(err, timeoutMs / 1000) ?? messageOf(err);
  const hint = hints[problem] ?? "Is the URL right, and can this machine reach it?";
  return new StartupError(`Cannot reach the homeserver at ${url} (${settingName("matrix.homeserverUrl", env)}): ${problem}. ${hint}`, 1, err);
}

/** Does `url` answer as a Matrix homeserver's client API? Returns the versions it speaks. */
export async function checkHomeserver(url: string, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  let answer: Answer;
  try {
    answer = await matrixRequest(url, "_matrix/client/versions");
  } catch (err) {
    throw unreachableHomeserver(url, err, env);
  }
  const versions = answer.json?.versions;
  if (answer.status === 200 && Array.isArray(versions)) return versions.filter((v): v is string => typeof v === "string");
  const key = settingName("matrix.homeserverUrl", env);
  if (answer.status >= 500) throw new StartupError(`The homeserver at ${url} (${key}) is not well: HTTP ${answer.status} for /_matrix/client/versions. Is it still starting, or is a proxy in front of it broken?`, 1);
  const what = answer.status === 200 ? "its answer to /_matrix/client/versions is no Matrix answer" : `HTTP ${answer.status} for /_matrix/client/versions`;
  const named = await wellKnownHomeserver(url);
  const fix = named !== undefined && named !== url.replace(/\/+$/, "") ? `Its .well-known names the homeserver ${named}: use that.` : "Use the homeserver's client-server URL, the one a Matrix client signs in with.";
  throw new StartupError(`${url} (${key}) answers, but not as a Matrix homeserver (${what}). ${fix}`, 2);
}

/** The homeserver a domain delegates to (/.well-known/matrix/client), when it names one. */
async function wellKnownHomeserver(url: string): Promise<string | undefined> {
  try {
    const answer = await matrixRequest(new URL(url).origin, ".well-known/matrix/client");
    const base = (answer.json?.["m.homeserver"] as { base_url?: unknown } | undefined)?.base_url;
    return typeof base === "string" ? base.replace(/\/+$/, "") : undefined;
  } catch {
    return undefined;
  }
}

/** The refusal of a token, a login or a request, in words: "M_UNKNOWN_TOKEN (Invalid access token passed)". */
export function matrixRefusal(answer: { status: number; json?: Record<string, unknown> | undefined }): string {
  const errcode = typeof answer.json?.errcode === "string" ? answer.json.errcode : `HTTP ${answer.status}`;
  const error = typeof answer.json?.error === "string" && answer.json.error !== "" ? ` (${answer.json.error.replace(/\.$/, "")})` : "";
  return `${errcode}${error}`;
}

/** The user id that `token` belongs to; a StartupError naming the setting when the homeserver refuses it. */
export async function whoami(url: string, token: string, tokenSetting: string): Promise<string> {
  let answer: Answer;
  try {
    answer = await matrixRequest(url, "_matrix/client/v3/account/whoami", { token });
  } catch (err) {
    throw unreachableHomeserver(url, err);
  }
  const userId = answer.json?.user_id;
  if (answer.status === 200 && typeof userId === "string") return userId;
  if (answer.status === 401 || answer.status === 403) {
    throw new StartupError(
      `The homeserver refused the access token (${tokenSetting}): ${matrixRefusal(answer)}. ` +
        "Make a new one (sign in as the bot, e.g. in Element: Settings → Help & About → Access Token), or set matrix.userId and matrix.password instead.",
      2,
    );
  }
  throw new StartupError(`The homeserver could not say whose the access token is (${tokenSetting}): ${matrixRefusal(answer)}. Try again later.`, 1);
}

/** Several settings as their owner knows them: "matrix.userId and matrix.password, from MATRIX_USER_ID and MATRIX_PASSWORD". */
export function settingsName(paths: string[], env: NodeJS.ProcessEnv = process.env): string {
  const vars = paths.map((p) => settingName(p, env).split(", from ")[1]).filter((v): v is string => v !== undefined);
  return `${paths.join(" and ")}${vars.length > 0 ? `, from ${vars.join(" and ")}` : ""}`;
}

/** A refused password login in words. */
function loginRefusal(creds: Credentials, answer: Answer, env: NodeJS.ProcessEnv): StartupError {
  const refusal = matrixRefusal(answer);
  if (answer.json?.errcode === "M_LIMIT_EXCEEDED") {
    const after = answer.json.retry_after_ms;
    return new StartupError(`The homeserver limits logins for now (${refusal}); start the bot again ${typeof after === "number" ? `in ${Math.ceil(after / 1000)} s` : "later"}.`, 1);
  }
  return new StartupError(
    `The homeserver refused the login of ${creds.userId ?? "?"} (${settingsName(["matrix.userId", "matrix.password"], env)}): ${refusal}. Check the user id and the password.`,
    answer.status >= 500 ? 1 : 2,
  );
}

/** A password login; a StartupError in words when it fails. */
export async function passwordLogin(creds: Credentials, deviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<{ accessToken: string; userId: string }> {
  const localpart = /^@([^:]+):/.exec(creds.userId ?? "")?.[1] ?? creds.userId ?? "";
  let answer: Answer;
  try {
    answer = await matrixRequest(creds.homeserverUrl, "_matrix/client/v3/login", {
      method: "POST",
      body: { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: creds.password ?? "", initial_device_display_name: deviceName },
    });
  } catch (err) {
    throw unreachableHomeserver(creds.homeserverUrl, err, env);
  }
  const accessToken = answer.json?.access_token;
  const userId = answer.json?.user_id;
  if (answer.status !== 200 || typeof accessToken !== "string" || typeof userId !== "string") throw loginRefusal(creds, answer, env);
  return { accessToken, userId };
}

/**
 * Checks the homeserver and the bot's account, logging in with the password if that is how the
 * bot is configured (the token is kept in the database, see resolveAccessToken).
 */
export async function verifyMatrixAccount(creds: Credentials, kv: KeyValue, env: NodeJS.ProcessEnv = process.env): Promise<{ userId: string; accessToken: string }> {
  if (creds.accessToken !== undefined) return verifyMatrixToken(creds.homeserverUrl, creds.accessToken, env);
  await checkHomeserver(creds.homeserverUrl, env);
  // Loaded here, not above: run.ts loads this file before the Matrix SDK (verifyMatrixToken).
  const { resolveAccessToken } = await import("../matrix/bot-client.ts");
  const accessToken = await resolveAccessToken(creds, kv, async (c) => (await passwordLogin(c, c.deviceName, env)).accessToken);
  return { userId: await whoami(creds.homeserverUrl, accessToken, "the token of the password login"), accessToken };
}

/**
 * The homeserver answers and the token is good; needs no database, so the start asks while it
 * loads the rest (run.ts). Both questions at once; when both fail, the homeserver's problem is
 * the one to tell.
 */
export async function verifyMatrixToken(homeserverUrl: string, accessToken: string, env: NodeJS.ProcessEnv = process.env): Promise<{ userId: string; accessToken: string }> {
  const [server, who] = await Promise.allSettled([checkHomeserver(homeserverUrl, env), whoami(homeserverUrl, accessToken, settingName("matrix.accessToken", env))]);
  if (server.status === "rejected") throw server.reason;
  if (who.status === "rejected") throw who.reason;
  return { userId: who.value, accessToken };
}

/** For `--check`: the password login works (the new device is logged out again). Returns the user id. */
export async function checkPasswordLogin(creds: Credentials, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const { accessToken, userId } = await passwordLogin(creds, `${creds.deviceName} (check)`, env);
  await matrixRequest(creds.homeserverUrl, "_matrix/client/v3/logout", { method: "POST", token: accessToken, body: {} }).catch(() => undefined);
  return userId;
}

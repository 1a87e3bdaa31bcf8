import { settingName } from "../config/load.ts";
import type { BotConfig } from "../config/schema.ts";
import { messageOf, networkProblem } from "./errors.ts";

// Only for `--check`: at start the Letta backend already says what is wrong in the room that asks,
// and Letta is optional, so a Letta that is down does not keep the bot from starting.

const timeoutMs = 5000;

async function get(url: string, token: string | undefined): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  try {
    return { status: res.status, json: JSON.parse(text) as unknown };
  } catch {
    return { status: res.status, json: undefined };
  }
}

export type LettaCheck = { status: "ok" | "warn" | "skip"; detail: string } | { status: "fail"; detail: string };

/** Letta's health, whether its token is taken, and whether the default agent exists. */
export async function checkLetta(config: BotConfig["letta"], env: NodeJS.ProcessEnv = process.env): Promise<LettaCheck> {
  if (config.baseUrl === undefined) return { status: "skip", detail: "not configured (no letta.baseUrl): no !letta commands" };
  const base = config.baseUrl.replace(/\/+$/, "");
  const key = settingName("letta.baseUrl", env);
  let version: string;
  try {
    const health = await get(`${base}/v1/health/`, config.apiToken);
    const v = (health.json as { version?: unknown } | undefined)?.version;
    if (health.status !== 200 || typeof v !== "string") {
      return { status: "fail", detail: `${base} (${key}) answers, but not as a Letta server (HTTP ${health.status} for /v1/health/).` };
    }
    version = v;
  } catch (err) {
    return { status: "fail", detail: `Cannot reach Letta at ${base} (${key}): ${networkProblem(err, timeoutMs / 1000) ?? messageOf(err)}. Is the Letta server running?` };
  }
  try {
    const agents = await get(`${base}/v1/agents/?limit=1`, config.apiToken);
    if (agents.status === 401 || agents.status === 403) {
      return { status: "fail", detail: `Letta at ${base} refused the token (${settingName("letta.apiToken", env)}): HTTP ${agents.status}. Use the server's password (LETTA_SERVER_PASSWORD of a SECURE server).` };
    }
    if (agents.status !== 200) return { status: "fail", detail: `Letta at ${base} did not list its agents: HTTP ${agents.status}.` };
    if (config.defaultAgent !== undefined) {
      const named = await get(`${base}/v1/agents/?name=${encodeURIComponent(config.defaultAgent)}&limit=1`, config.apiToken);
      const found = Array.isArray(named.json) && named.json.length > 0;
      if (!found && !/^agent-/.test(config.defaultAgent)) {
        return { status: "warn", detail: `Letta ${version} at ${base}; no agent is named "${config.defaultAgent}" (${settingName("letta.defaultAgent", env)}): make it with \`!letta new ${config.defaultAgent}\`.` };
      }
    }
  } catch (err) {
    return { status: "fail", detail: `Letta at ${base} stopped answering: ${networkProblem(err, timeoutMs / 1000) ?? messageOf(err)}.` };
  }
  return { status: "ok", detail: `Letta ${version} at ${base}, token accepted` };
}

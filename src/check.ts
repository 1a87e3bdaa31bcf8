import { resolve } from "node:path";
import { ConfigError, configFileOf, envOverrides, loadConfig, settingName } from "./config/load.ts";
import type { BotConfig } from "./config/schema.ts";
import { checkStateOutsideAgentReach } from "./config/state-paths.ts";
import { resolveOpencodeBinary } from "./opencode/embedded-server.ts";
import { bwrapWorks } from "./process/sandbox.ts";
import { StartupError, configErrorText, messageOf } from "./startup/errors.ts";
import { checkLetta } from "./startup/letta-check.ts";
import { checkHomeserver, checkPasswordLogin, whoami } from "./startup/matrix-check.ts";
import { opencodeProblemText, probeOpencode } from "./opencode/server-check.ts";
import { databaseCheck, directoryProblem } from "./startup/paths.ts";
import { refusePlaceholders } from "./startup/placeholders.ts";

// `npm run check`: every part the bot needs, each asked the way the bot will ask it, without
// starting anything (no OpenCode server, no sync) and without creating files.

export type Status = "ok" | "fail" | "warn" | "skip";
export interface Row {
  name: string;
  status: Status;
  detail: string;
}

const marks: Record<Status, string> = { ok: "✅", fail: "❌", warn: "⚠️", skip: "➖" };

/** The table: one row a part, the reason beside it; further lines of a reason indented under it. */
export function renderTable(rows: Row[]): string {
  const width = Math.max(...rows.map((r) => r.name.length));
  const lines = rows.flatMap((r) => {
    const [first = "", ...rest] = r.detail.split("\n");
    return [`${marks[r.status]} ${r.name.padEnd(width)}  ${first}`, ...rest.map((l) => `${" ".repeat(width + 5)}${l}`)];
  });
  const failed = rows.filter((r) => r.status === "fail").length;
  const warned = rows.filter((r) => r.status === "warn").length;
  const summary = failed > 0 ? `${failed} of ${rows.length} checks failed.` : warned > 0 ? `All checks passed, ${warned} with a warning.` : "All checks passed.";
  return `${lines.join("\n")}\n${summary}\n`;
}

const fail = (name: string, err: unknown): Row => ({ name, status: "fail", detail: err instanceof StartupError ? err.message : messageOf(err) });

async function matrixRow(config: BotConfig, env: NodeJS.ProcessEnv): Promise<Row> {
  const m = config.matrix;
  try {
    const versions = await checkHomeserver(m.homeserverUrl, env);
    const newest = versions.at(-1) ?? "?";
    const userId = m.accessToken !== undefined ? await whoami(m.homeserverUrl, m.accessToken, settingName("matrix.accessToken", env)) : await checkPasswordLogin(m, env);
    const how = m.accessToken !== undefined ? "the token belongs to" : "the password login works for";
    return { name: "homeserver", status: "ok", detail: `${m.homeserverUrl} answers (Matrix ${newest}); ${how} ${userId}` };
  } catch (err) {
    return fail("homeserver", err);
  }
}

async function opencodeRows(config: BotConfig, env: NodeJS.ProcessEnv): Promise<Row[]> {
  const oc = config.opencode;
  if (oc.serverUrl !== undefined) {
    const probe = await probeOpencode(oc.serverUrl, { username: oc.username, password: oc.password });
    return [
      probe.ok
        ? { name: "OpenCode", status: "ok", detail: `OpenCode ${probe.version} at ${oc.serverUrl} answers` }
        : { name: "OpenCode", status: "fail", detail: opencodeProblemText(oc.serverUrl, probe, env) },
      { name: "sandbox", status: "skip", detail: "not the bot's to set up: OpenCode runs at opencode.serverUrl" },
    ];
  }
  let binaryRow: Row;
  try {
    binaryRow = { name: "OpenCode", status: "ok", detail: `no opencode.serverUrl: the bot starts its own, ${resolveOpencodeBinary()}` };
  } catch (err) {
    binaryRow = { name: "OpenCode", status: "fail", detail: `No opencode.serverUrl, and the bot cannot start its own: ${messageOf(err)} (npm install fetches it).` };
  }
  const key = settingName("opencode.sandbox", env);
  if (oc.sandbox === "off") return [binaryRow, { name: "sandbox", status: "warn", detail: `off (${key}): the agent can read the bot's database and config file` }];
  const probe = bwrapWorks();
  if (probe.ok) return [binaryRow, { name: "sandbox", status: "ok", detail: `bubblewrap works: the agent cannot see the bot's database, config file or processes` }];
  const status: Status = oc.sandbox === "bwrap" ? "fail" : "warn";
  return [binaryRow, { name: "sandbox", status, detail: `${probe.why} (${key}: ${oc.sandbox}): ${status === "fail" ? "the bot will not start" : "the agent will be able to read the bot's database and config file"}. Install bubblewrap (apt install bubblewrap).` }];
}

function workspaceRow(config: BotConfig, env: NodeJS.ProcessEnv): Row {
  const dir = resolve(config.opencode.workspaceDir);
  const problem = directoryProblem(dir);
  if (problem !== undefined) return { name: "workspace", status: "fail", detail: `Cannot use ${dir} (${settingName("opencode.workspaceDir", env)}): ${problem}.` };
  const missingRoots = (config.opencode.projectRoots ?? []).map((r) => resolve(r)).filter((r) => r !== dir && directoryProblem(r) !== undefined);
  if (missingRoots.length > 0) return { name: "workspace", status: "warn", detail: `${dir} is writable; not writable: ${missingRoots.join(", ")} (${settingName("opencode.projectRoots", env)})` };
  return { name: "workspace", status: "ok", detail: `${dir} is writable` };
}

function configRow(file: string | undefined, env: NodeJS.ProcessEnv): Row {
  const fromEnv = envOverrides.filter((o) => env[o.env] !== undefined && env[o.env] !== "").map((o) => o.env);
  const source = file ?? "no file";
  return { name: "config", status: "ok", detail: fromEnv.length > 0 ? `${source}, with ${fromEnv.join(", ")} from the environment` : source };
}

/** Runs every check and prints the table; resolves with the exit code (0 all pass, 1 a failure, 2 a config error). */
export async function runCheck(configFile: string | undefined, out: (text: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<0 | 1 | 2> {
  const file = configFileOf({ file: configFile, env });
  let config: BotConfig;
  try {
    config = loadConfig({ file: configFile, env });
    checkStateOutsideAgentReach(config, file);
    refusePlaceholders(config, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    out(renderTable([{ name: "config", status: "fail", detail: configErrorText(err.message, file, env) }]));
    return 2;
  }
  const db = databaseCheck(config.database.path, env);
  const rows: Row[] = [
    configRow(file, env),
    await matrixRow(config, env),
    ...(await opencodeRows(config, env)),
    { name: "Letta", ...(await checkLetta(config.letta, env)) },
    db.ok ? { name: "database", status: "ok", detail: db.detail } : fail("database", db.error),
    workspaceRow(config, env),
  ];
  out(renderTable(rows));
  return rows.some((r) => r.status === "fail") ? 1 : 0;
}

import { realpathSync } from "node:fs";
import { basename, dirname, join, relative, resolve, isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "./load.ts";
import type { BotConfig } from "./schema.ts";

// The agent writes files in the workspace and the project roots (and, run by an embedded
// server, as the bot's own user). The bot's database (threads, the login token, the sync token)
// and its config (tokens, allowed users) must not be among those files, or a prompt-injected
// agent rewrites who may use the bot, or reads what it must not. Nor may the bot's own files
// (its code, the bundle and the code V8 compiled from it): an agent that can write there makes
// the bot run its code at the next start.

/** The bot's checkout: two levels above this file, in the sources (src/config/) and in the bundle (dist/bot/). */
const botCodeDir = fileURLToPath(new URL("../..", import.meta.url));

/** The path with symlinks resolved as far as it exists: the nearest existing ancestor's real path, plus the rest. */
export function realish(path: string, cwd = process.cwd()): string {
  const abs = resolve(cwd, path);
  const rest: string[] = [];
  let p = abs;
  for (;;) {
    try {
      return join(realpathSync(p), ...rest.reverse());
    } catch {
      const parent = dirname(p);
      if (parent === p) return abs;
      rest.push(basename(p));
      p = parent;
    }
  }
}

/** True when `p` is `dir` or lies below it (both real paths). */
export function within(dir: string, p: string): boolean {
  const rel = relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/**
 * Refuses a configuration that puts the bot's state where the agent writes: the database or
 * the config file inside the workspace or a project root, or a workspace or project root inside
 * the database's directory (SQLite keeps -wal and -shm files beside the database).
 */
export function checkStateOutsideAgentReach(config: BotConfig, configFile: string | undefined, cwd = process.cwd(), codeDir = botCodeDir): void {
  const agentDirs = [
    { key: "opencode.workspaceDir", path: realish(config.opencode.workspaceDir, cwd) },
    ...(config.opencode.projectRoots ?? []).map((r, i) => ({ key: `opencode.projectRoots.${i}`, path: realish(r, cwd) })),
  ];
  const state = [{ key: "database.path", path: realish(config.database.path, cwd) }];
  if (configFile !== undefined && configFile !== "") state.push({ key: "the config file (BOT_CONFIG / --config)", path: realish(configFile, cwd) });
  const dbDir = dirname(state[0]?.path ?? "");

  const problems: string[] = [];
  for (const s of state) {
    for (const a of agentDirs) {
      if (within(a.path, s.path)) problems.push(`  - ${s.key} (${s.path}) lies inside ${a.key} (${a.path}), where the agent writes`);
    }
  }
  for (const a of agentDirs) {
    if (within(dbDir, a.path)) problems.push(`  - ${a.key} (${a.path}) lies inside the directory of database.path (${dbDir})`);
  }
  const code = realish(codeDir, cwd);
  for (const a of agentDirs) {
    if (within(a.path, code)) problems.push(`  - the bot's own files (${code}: its code, dist/ and the code cache) lie inside ${a.key} (${a.path}), where the agent writes`);
  }
  if (problems.length === 0) return;
  throw new ConfigError(
    `The bot's state must lie outside what the agent can write:\n${problems.join("\n")}\n` +
      "Move the database (BOT_DATABASE_PATH) and the config file out of the workspace and the project roots, into a directory of their own; the bot's checkout too, or point the workspace elsewhere.",
  );
}

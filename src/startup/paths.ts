import Database from "better-sqlite3";
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { settingName } from "../config/load.ts";
import { openDatabase, type Db } from "../store/db.ts";
import { StartupError, errorCode, fsProblem, messageOf } from "./errors.ts";

// The database and the workspace are directories the bot writes; whatever stops it from doing so
// is said with the path, the setting and what to change.

/** The nearest part of `path` that exists (the path itself, or an ancestor). */
export function nearestExisting(path: string): string {
  let p = resolve(path);
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      const parent = dirname(p);
      if (parent === p) return p;
      p = parent;
    }
  }
}

/** Why the bot cannot make or write directory `dir`, or undefined when it can. Creates nothing. */
export function directoryProblem(dir: string): string | undefined {
  const existing = nearestExisting(dir);
  let isDir: boolean;
  try {
    isDir = statSync(existing).isDirectory();
  } catch (err) {
    return fsProblem(err);
  }
  if (!isDir) return `${existing} is a file, not a directory`;
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch (err) {
    return existing === resolve(dir) ? `cannot write in it: ${fsProblem(err)}` : `cannot create it in ${existing}: ${fsProblem(err)}`;
  }
  return undefined;
}

const sqliteProblems: Record<string, string> = {
  SQLITE_CANTOPEN: "SQLite cannot open or create the file there",
  SQLITE_READONLY: "the file is read-only",
  SQLITE_NOTADB: "the file is not an SQLite database",
  SQLITE_CORRUPT: "the database file is damaged",
  SQLITE_BUSY: "another process holds it locked (a second bot on the same database?)",
};

/** The database problem in words: the path, the setting, the reason. */
function databaseProblem(path: string, err: unknown, env: NodeJS.ProcessEnv): StartupError {
  const abs = resolve(path);
  const code = errorCode(err) ?? "";
  const reason = sqliteProblems[code] ?? directoryProblem(dirname(abs)) ?? (code.startsWith("SQLITE_") ? messageOf(err) : fsProblem(err));
  const transient = code === "SQLITE_BUSY";
  return new StartupError(
    `Cannot open the database ${abs} (${settingName("database.path", env)}): ${reason}. ` +
      (transient ? "Stop the other process, or give this bot a database of its own." : "Choose a path in a directory the bot's user may write, or fix the directory's owner and permissions."),
    transient ? 1 : 2,
    err,
  );
}

/** openDatabase, with its failures in words (exit code 2: the path or its permissions need a person). */
export function openDatabaseExplained(path: string, env: NodeJS.ProcessEnv = process.env): Db {
  try {
    return openDatabase(path);
  } catch (err) {
    throw databaseProblem(path, err, env);
  }
}

/** For `--check`: can the bot open (or create) its database? Creates nothing. Undefined when it can. */
export function databaseCheck(path: string, env: NodeJS.ProcessEnv = process.env): { ok: true; detail: string } | { ok: false; error: StartupError } {
  const abs = resolve(path);
  let exists = false;
  try {
    exists = statSync(abs).isFile();
  } catch { /* created at the first start */ }
  if (!exists) {
    const problem = directoryProblem(dirname(abs)) ?? (nearestExisting(abs) === abs ? `${abs} exists but is not a file` : undefined);
    if (problem !== undefined) return { ok: false, error: new StartupError(`Cannot create the database ${abs} (${settingName("database.path", env)}): ${problem}.`, 2) };
    return { ok: true, detail: `${abs} will be created at the first start` };
  }
  try {
    accessSync(abs, constants.R_OK | constants.W_OK);
    // SQLite writes -wal and -shm files beside the database.
    accessSync(dirname(abs), constants.W_OK);
    const db = new Database(abs, { fileMustExist: true });
    try {
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } finally {
      db.close();
    }
  } catch (err) {
    return { ok: false, error: databaseProblem(abs, err, env) };
  }
  return { ok: true, detail: `${abs} opens for reading and writing` };
}

/** mkdir -p of a directory the bot needs, with its failure in words. */
export function ensureDirectory(dir: string, key: string, env: NodeJS.ProcessEnv = process.env): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new StartupError(`Cannot use the directory ${resolve(dir)} (${settingName(key, env)}): ${directoryProblem(dir) ?? fsProblem(err)}. Choose a directory the bot's user may write.`, 2, err);
  }
}

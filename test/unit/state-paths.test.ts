import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { checkStateOutsideAgentReach, realish } from "../../src/config/state-paths.ts";

// The database and the config file must lie where the agent does not write: outside the
// workspace and the project roots, and no workspace or project root inside the database's directory.

const base = { MATRIX_HOMESERVER_URL: "http://127.0.0.1:8008", MATRIX_ACCESS_TOKEN: "tok", BOT_ALLOWED_USERS: "@a:x" };

function layout(): string {
  const root = realpathSync(mkdtempSync(join(tmpdir(), "state-paths-")));
  for (const d of ["data", "ws", "projects", "etc"]) mkdirSync(join(root, d));
  return root;
}

const configWith = (env: Record<string, string>): ReturnType<typeof loadConfig> => loadConfig({ file: "/dev/null", env: { ...base, ...env } });

/** The message of the refusal, or "" when the layout is accepted. */
function refusal(env: Record<string, string>, configFile: string | undefined, cwd?: string, codeDir?: string): string {
  try {
    checkStateOutsideAgentReach(configWith(env), configFile, cwd, codeDir);
    return "";
  } catch (err) {
    assert.ok(err instanceof ConfigError, "a ConfigError (exit code 2)");
    return err.message;
  }
}

test("state beside the workspace is accepted", () => {
  const r = layout();
  const env = { BOT_DATABASE_PATH: join(r, "data", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws"), OPENCODE_PROJECT_ROOTS: `${join(r, "ws")},${join(r, "projects")}` };
  assert.equal(refusal(env, join(r, "etc", "config.yaml")), "");
  assert.equal(refusal(env, "/dev/null"), "");
  assert.equal(refusal(env, undefined), "");
});

test("the database inside the workspace or a project root is refused, naming both keys", () => {
  const r = layout();
  const inWs = refusal({ BOT_DATABASE_PATH: join(r, "ws", "state", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws") }, undefined);
  assert.match(inWs, /^The bot's state must lie outside what the agent can write:/);
  assert.ok(inWs.includes(`database.path (${join(r, "ws", "state", "bot.db")}) lies inside opencode.workspaceDir (${join(r, "ws")})`), inWs);
  const inRoot = refusal({ BOT_DATABASE_PATH: join(r, "projects", "a", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws"), OPENCODE_PROJECT_ROOTS: `${join(r, "ws")},${join(r, "projects")}` }, undefined);
  assert.ok(inRoot.includes(`database.path (${join(r, "projects", "a", "bot.db")}) lies inside opencode.projectRoots.1 (${join(r, "projects")})`), inRoot);
});

test("the config file inside the workspace is refused", () => {
  const r = layout();
  const msg = refusal({ BOT_DATABASE_PATH: join(r, "data", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws") }, join(r, "ws", "config.yaml"));
  assert.ok(msg.includes(`the config file (BOT_CONFIG / --config) (${join(r, "ws", "config.yaml")}) lies inside opencode.workspaceDir`), msg);
});

test("a workspace or project root inside the database's directory is refused", () => {
  const r = layout();
  const msg = refusal({ BOT_DATABASE_PATH: join(r, "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "data"), OPENCODE_PROJECT_ROOTS: join(r, "ws") }, undefined);
  assert.ok(msg.includes(`opencode.workspaceDir (${join(r, "data")}) lies inside the directory of database.path (${r})`), msg);
  assert.ok(msg.includes(`opencode.projectRoots.0 (${join(r, "ws")}) lies inside the directory of database.path (${r})`), msg);
  const rootAsProject = refusal({ BOT_DATABASE_PATH: join(r, "data", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws"), OPENCODE_PROJECT_ROOTS: "/" }, undefined);
  assert.match(rootAsProject, /database\.path .* lies inside opencode\.projectRoots\.0 \(\/\)/, "a project root of / holds everything");
});

test("symlinks are resolved: a link to the workspace does not hide the database in it, relative paths count from the working directory", () => {
  const r = layout();
  symlinkSync(join(r, "ws"), join(r, "ws-link"));
  const msg = refusal({ BOT_DATABASE_PATH: join(r, "ws-link", "new-dir", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws") }, undefined);
  assert.ok(msg.includes(`database.path (${join(r, "ws", "new-dir", "bot.db")}) lies inside opencode.workspaceDir (${join(r, "ws")})`), msg);
  const rel = refusal({ BOT_DATABASE_PATH: "./ws/bot.db", OPENCODE_WORKSPACE_DIR: "./ws-link" }, undefined, r);
  assert.match(rel, /database\.path .* lies inside opencode\.workspaceDir/);
  assert.equal(realish("ws-link/a/b", r), join(r, "ws", "a", "b"), "a path that does not exist yet resolves through its existing part");
  writeFileSync(join(r, "etc", "config.yaml"), "");
  assert.equal(refusal({ BOT_DATABASE_PATH: "./data/bot.db", OPENCODE_WORKSPACE_DIR: "./ws" }, "etc/config.yaml", r), "");
});

test("the bot's own files inside the workspace are refused (the agent would write the code the next start runs); a workspace inside the checkout is not", () => {
  const r = layout();
  mkdirSync(join(r, "ws", "bot"));
  const env = { BOT_DATABASE_PATH: join(r, "data", "bot.db"), OPENCODE_WORKSPACE_DIR: join(r, "ws") };
  const text = refusal(env, undefined, undefined, join(r, "ws", "bot"));
  assert.match(text, /the bot's own files \(.*\/ws\/bot: its code, dist\/ and the code cache\) lie inside opencode\.workspaceDir/);
  assert.match(text, /the bot's checkout too, or point the workspace elsewhere/);
  // ./workspace in the checkout (the example config): the agent writes there, not in src/ or dist/.
  mkdirSync(join(r, "etc", "workspace"));
  assert.equal(refusal({ ...env, OPENCODE_WORKSPACE_DIR: join(r, "etc", "workspace") }, undefined, undefined, join(r, "etc")), "");
  // This checkout, as the tests run it, lies outside their workspaces.
  assert.equal(refusal(env, undefined), "");
});

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BotProcess } from "../harness/bot-process.ts";

// `node src/main.ts` as an operator starts it, with its database or config file where the agent
// writes: it refuses to start, exit code 2 (as for any bad configuration), naming the keys.
// The refusal comes before any connection, so no homeserver is needed.

const dir = realpathSync(mkdtempSync(join(tmpdir(), "state-paths-e2e-")));
const env = (over: Record<string, string>): Record<string, string> => ({
  MATRIX_HOMESERVER_URL: "http://127.0.0.1:9",
  MATRIX_ACCESS_TOKEN: "syt_not_used_at_all",
  BOT_ALLOWED_USERS: "@alice:localhost",
  OPENCODE_SERVER_URL: "http://127.0.0.1:9",
  BOT_HTTP_PORT: "0",
  BOT_CONFIG: "/dev/null",
  ...over,
});

describe("the bot's state out of the agent's reach", () => {
  test("a database inside the workspace (through a symlink) stops the start with exit code 2", async () => {
    const ws = join(dir, "ws1");
    mkdirSync(ws);
    symlinkSync(ws, join(dir, "ws1-link"));
    const { code, text } = await BotProcess.runToExit(env({ OPENCODE_WORKSPACE_DIR: join(dir, "ws1-link"), BOT_DATABASE_PATH: join(ws, "data", "bot.db") }));
    assert.equal(code, 2, text);
    assert.ok(text.includes(`database.path (${join(ws, "data", "bot.db")}) lies inside opencode.workspaceDir (${ws}), where the agent writes`), text);
    assert.match(text, /Move the database \(BOT_DATABASE_PATH\) and the config file out of the workspace and the project roots/);
  });

  test("a config file inside a project root stops the start with exit code 2", async () => {
    const projects = join(dir, "projects");
    mkdirSync(join(projects, "app"), { recursive: true });
    const config = join(projects, "app", "config.yaml");
    writeFileSync(config, "log: { level: info }\n");
    const { code, text } = await BotProcess.runToExit(
      env({ BOT_CONFIG: config, OPENCODE_WORKSPACE_DIR: join(dir, "ws2"), OPENCODE_PROJECT_ROOTS: `${join(dir, "ws2")},${projects}`, BOT_DATABASE_PATH: join(dir, "data2", "bot.db") }),
    );
    assert.equal(code, 2, text);
    assert.ok(text.includes(`the config file (BOT_CONFIG / --config) (${config}) lies inside opencode.projectRoots.1 (${projects})`), text);
  });

  test("a workspace inside the database's directory stops the start with exit code 2", async () => {
    const data = join(dir, "data3");
    const { code, text } = await BotProcess.runToExit(env({ OPENCODE_WORKSPACE_DIR: join(data, "workspace"), BOT_DATABASE_PATH: join(data, "bot.db") }));
    assert.equal(code, 2, text);
    assert.ok(text.includes(`opencode.workspaceDir (${join(data, "workspace")}) lies inside the directory of database.path (${data})`), text);
  });
});

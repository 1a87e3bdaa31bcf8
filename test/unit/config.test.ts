import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ConfigError, envOverrides, loadConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "cfg-"));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const minimal = file(
  "min.yaml",
  "matrix: { homeserverUrl: 'http://127.0.0.1:8008', accessToken: 'tok' }\naccess: { allowedUsers: ['@a:x'] }\n",
);

test("defaults fill every key the file leaves out", () => {
  const c = loadConfig({ file: minimal, env: {} });
  assert.equal(c.commands.prefix, "!oc");
  assert.equal(c.database.path, "./data/bot.db");
  assert.equal(c.opencode.serverUrl, undefined);
  assert.equal(c.opencode.healthCheckIntervalMs, 5000);
  assert.equal(c.opencode.maxRetries, 3);
  assert.equal(c.opencode.retryDelayMs, 1000);
  assert.equal(c.rendering.editWindowMs, 1000);
});

test("environment overrides the file, with the design note's OpenCode names", () => {
  const c = loadConfig({
    file: minimal,
    env: { OPENCODE_SERVER_URL: "http://127.0.0.1:3100", OPENCODE_SERVER_MAX_RETRIES: "7", BOT_ALLOWED_USERS: "@a:x, @*:y" },
  });
  assert.equal(c.opencode.serverUrl, "http://127.0.0.1:3100");
  assert.equal(c.opencode.maxRetries, 7);
  assert.deepEqual(c.access.allowedUsers, ["@a:x", "@*:y"]);
});

test("a wrong value stops the start with a message naming the key", () => {
  assert.throws(() => loadConfig({ file: minimal, env: { OPENCODE_SERVER_RETRY_DELAY_MS: "soon" } }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /opencode\.retryDelayMs \(from OPENCODE_SERVER_RETRY_DELAY_MS\)/);
    return true;
  });
  assert.throws(() => loadConfig({ file: file("bad.yaml", "matrix: { homeserverUrl: 'nope' }\naccess: { allowedUsers: [] }\n"), env: {} }), (e: Error) => {
    assert.match(e.message, /matrix\.homeserverUrl/);
    assert.match(e.message, /matrix\.accessToken: set matrix\.accessToken, or both/);
    assert.match(e.message, /access\.allowedUsers/);
    return true;
  });
  assert.throws(() => loadConfig({ file: file("typo.yaml", "matrix: { homeserverUrl: 'http://h', accessToken: 't', homeserver: 'x' }\naccess: { allowedUsers: ['@a:x'] }\n"), env: {} }), /homeserver/);
  assert.throws(() => loadConfig({ file: join(dir, "missing.yaml"), env: {} }), /not found/);
  assert.throws(() => loadConfig({ file: file("notyaml.yaml", "a: [b\n"), env: {} }), /not valid YAML/);
});

test("the example file is valid and documents every environment variable", () => {
  const example = "config/config.example.yaml";
  const c = loadConfig({ file: example, env: {} });
  assert.equal(c.commands.prefix, "!oc");
  const text = readFileSync(example, "utf8");
  for (const { env } of envOverrides) assert.ok(text.includes(env), `${env} is not documented in ${example}`);
  assert.ok(parse(text));
});

test("opencode.passEnv names variables for the agent; the bot's own are refused, naming the key", () => {
  const c = loadConfig({ file: minimal, env: { OPENCODE_PASS_ENV: "OPENAI_API_KEY, ANTHROPIC_API_KEY" } });
  assert.deepEqual(c.opencode.passEnv, ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]);
  assert.deepEqual(loadConfig({ file: minimal, env: {} }).opencode.passEnv, []);
  for (const name of ["MATRIX_ACCESS_TOKEN", "MATRIX_PASSWORD", "BOT_NOTIFY_TOKEN", "LETTA_API_TOKEN", "OPENCODE_SERVER_PASSWORD"]) {
    assert.throws(() => loadConfig({ file: minimal, env: { OPENCODE_PASS_ENV: `OPENAI_API_KEY,${name}` } }), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, new RegExp(`opencode\\.passEnv\\.1 \\(from OPENCODE_PASS_ENV\\): ${name} is the bot's own setting or secret`));
      return true;
    });
  }
  assert.throws(() => loadConfig({ file: file("passenv.yaml", "matrix: { homeserverUrl: 'http://h', accessToken: 't' }\naccess: { allowedUsers: ['@a:x'] }\nopencode: { passEnv: ['BOT_NOTIFY_TOKEN'] }\n"), env: {} }),
    /opencode\.passEnv\.0: BOT_NOTIFY_TOKEN is the bot's own/);
});

test("a file with only the required keys parses to every default, each section its own object", () => {
  const c = loadConfig({ file: minimal, env: {} });
  // The whole result, as it was when each section also repeated its keys' defaults.
  assert.deepEqual(c, {
    matrix: { homeserverUrl: "http://127.0.0.1:8008", accessToken: "tok", deviceName: "agent-bot", requestTimeoutMs: 30_000, maxConcurrentRequests: 6 },
    access: { allowedUsers: ["@a:x"], admins: [], strangerNoticeIntervalMs: 600_000 },
    commands: { prefix: "!oc" },
    opencode: { workspaceDir: "./workspace", healthCheckIntervalMs: 5000, maxRetries: 3, retryDelayMs: 1000, requestTimeoutMs: 30_000, passEnv: [], sandbox: "auto" },
    letta: { prefix: "!letta", maxRetries: 3, retryDelayMs: 1000, timeoutMs: 60_000, delegateToOpencode: false, delegationWaitMs: 50_000 },
    rendering: { editWindowMs: 1000, maxEditWindowMs: 20_000, completionNoticeAfterMs: 0 },
    database: { path: "./data/bot.db", inboxRetentionMs: 86_400_000 },
    http: { port: 8080, host: "127.0.0.1" },
    notify: { perTokenPerMinute: 30, perSessionPerMinute: 10 },
    schedule: { pollIntervalMs: 1000, timezone: "UTC" },
    log: { level: "info" },
  });
  // A shared default object would carry one parse's changes into the next.
  assert.notEqual(loadConfig({ file: minimal, env: {} }).opencode.passEnv, c.opencode.passEnv);
});

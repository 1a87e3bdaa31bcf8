import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { BotProcess } from "../harness/bot-process.ts";
import { freePort } from "../harness/net.ts";
import { loadStackInfo, type StackInfo } from "../harness/stack.ts";
import { registerUser, type RegisteredUser } from "../harness/synapse.ts";

// `node src/main.ts` started with each first-run mistake: what its operator reads on stderr (the
// first line, exactly), the exit code (2: a setting must change; 1: something could not be
// reached), and that a Matrix mistake is found before the embedded OpenCode server starts.
// And `--check`, which prints a table of every part and exits.

let stack: StackInfo;
let account: RegisteredUser;
let dir = "";
before(async () => {
  stack = loadStackInfo();
  dir = mkdtempSync(join(stack.workDir, "first-run-"));
  account = await registerUser(stack.synapse.baseUrl, stack.synapse.sharedSecret, `bot-firstrun-${Date.now().toString(36)}`);
});

let n = 0;
/** A bot configured by environment only, with the embedded OpenCode server (no URL), its own database and workspace. */
const env = (over: Record<string, string>): Record<string, string> => {
  n++;
  return {
    BOT_CONFIG: "/dev/null",
    MATRIX_HOMESERVER_URL: stack.synapse.baseUrl,
    MATRIX_ACCESS_TOKEN: account.accessToken,
    BOT_ALLOWED_USERS: "@alice:localhost",
    OPENCODE_SERVER_URL: "",
    OPENCODE_WORKSPACE_DIR: join(dir, `ws${n}`),
    BOT_DATABASE_PATH: join(dir, `data${n}`, "bot.db"),
    BOT_HTTP_PORT: "0",
    ...over,
  };
};

const embeddedStarted = (text: string): boolean => text.includes("started embedded OpenCode server");
/** The JSON log keeps what the terminal line leaves out. */
const fatalLog = (stdout: string[]): { err?: { message?: string; stack?: string } } | undefined =>
  stdout.map((l) => (l.startsWith("{") ? (JSON.parse(l) as { msg?: string; err?: { message?: string; stack?: string } }) : undefined)).find((l) => l?.msg === "could not start");

describe("first-run mistakes, said in plain words", () => {
  test("the example config as it is: its placeholders are named, exit code 2", async () => {
    const { code, stderr, text } = await BotProcess.runToExit({ BOT_CONFIG: "" }, 30_000, ["--config", "config/config.example.yaml"]);
    assert.equal(code, 2, text);
    assert.deepEqual(stderr, [
      `matrix.accessToken is still the example's placeholder "syt_replace_me": put the bot's access token there, or set matrix.userId and matrix.password instead.`,
      `access.allowedUsers still holds the example's "@alice:example.org", "@*:example.org": list the Matrix ids (or patterns) of the people who may use the bot.`,
    ]);
  });

  test("--config without a file is an error, not the default file", async () => {
    const { code, stderr } = await BotProcess.runToExit(env({}), 30_000, ["--config"]);
    assert.equal(code, 2);
    assert.equal(stderr[0], "--config needs a file name, e.g. --config config/config.yaml");
  });

  test("a placeholder token from the environment: named with its variable, exit code 2", async () => {
    const { code, stderr, text } = await BotProcess.runToExit(env({ MATRIX_ACCESS_TOKEN: "syt_replace_me" }));
    assert.equal(code, 2, text);
    assert.equal(stderr[0], `matrix.accessToken (from MATRIX_ACCESS_TOKEN) is still the example's placeholder "syt_replace_me": put the bot's access token there, or set matrix.userId and matrix.password instead.`);
  });

  test("an unreachable homeserver: exit code 1, before the embedded OpenCode server starts", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { code, stderr, stdout, text } = await BotProcess.runToExit(env({ MATRIX_HOMESERVER_URL: url }));
    assert.equal(code, 1, text);
    assert.equal(stderr[0], `Cannot reach the homeserver at ${url} (matrix.homeserverUrl, from MATRIX_HOMESERVER_URL): connection refused. Is the homeserver (e.g. Synapse) running, and is the port right?`);
    assert.equal(stderr.length, 1, text);
    assert.ok(!embeddedStarted(text), text);
    assert.match(fatalLog(stdout)?.err?.stack ?? "", /ECONNREFUSED/, "the JSON log keeps the detail");
  });

  test("a token the homeserver refuses: exit code 2, before the embedded OpenCode server starts", async () => {
    const { code, stderr, text } = await BotProcess.runToExit(env({ MATRIX_ACCESS_TOKEN: "syt_made_up_and_refused" }));
    assert.equal(code, 2, text);
    assert.equal(stderr[0], "The homeserver refused the access token (matrix.accessToken, from MATRIX_ACCESS_TOKEN): M_UNKNOWN_TOKEN (Invalid access token passed). Make a new one (sign in as the bot, e.g. in Element: Settings → Help & About → Access Token), or set matrix.userId and matrix.password instead.");
    assert.ok(!embeddedStarted(text), text);
  });

  test("a wrong password: exit code 2, naming both settings", async () => {
    const { code, stderr, text } = await BotProcess.runToExit(env({ MATRIX_ACCESS_TOKEN: "", MATRIX_USER_ID: account.userId, MATRIX_PASSWORD: "not-the-password" }));
    assert.equal(code, 2, text);
    assert.equal(stderr[0], `The homeserver refused the login of ${account.userId} (matrix.userId and matrix.password, from MATRIX_USER_ID and MATRIX_PASSWORD): M_FORBIDDEN (Invalid username or password). Check the user id and the password.`);
    assert.ok(!embeddedStarted(text), text);
  });

  test("a database directory that cannot be made (a file in the way; root too is stopped by that): exit code 2", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "not a directory\n");
    const { code, stderr, text } = await BotProcess.runToExit(env({ BOT_DATABASE_PATH: join(file, "data", "bot.db") }));
    assert.equal(code, 2, text);
    assert.equal(stderr[0], `Cannot open the database ${join(file, "data", "bot.db")} (database.path, from BOT_DATABASE_PATH): ${file} is a file, not a directory. Choose a path in a directory the bot's user may write, or fix the directory's owner and permissions.`);
    assert.ok(!embeddedStarted(text), text);
  });

  test("an OpenCode URL never reached: exit code 1, saying why it stops", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { code, stderr, text } = await BotProcess.runToExit(env({ OPENCODE_SERVER_URL: url }));
    assert.equal(code, 1, text);
    assert.deepEqual(stderr, [
      `Cannot reach OpenCode at ${url} (opencode.serverUrl, from OPENCODE_SERVER_URL): connection refused. Is \`opencode serve\` running there? (Without opencode.serverUrl the bot starts its own.)`,
      "The bot has never reached this URL, so it is most likely wrong; once it has, the bot waits for OpenCode instead of stopping.",
    ]);
  });
});

describe("--check", () => {
  test("a table of every part with one failing: the OpenCode URL; exit code 1, nothing started or created", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const e = env({ OPENCODE_SERVER_URL: url });
    const { code, stdout, stderr, text } = await BotProcess.runToExit(e, 30_000, ["--check"]);
    assert.equal(code, 1, text);
    assert.deepEqual(stderr, []);
    const [config, homeserver, opencode, sandbox, letta, database, workspace, summary, ...rest] = stdout;
    assert.ok(config?.startsWith("✅ config      /dev/null, with MATRIX_HOMESERVER_URL, MATRIX_ACCESS_TOKEN, BOT_ALLOWED_USERS, OPENCODE_SERVER_URL, OPENCODE_WORKSPACE_DIR"), config);
    assert.match(homeserver ?? "", new RegExp(`^✅ homeserver  ${stack.synapse.baseUrl} answers \\(Matrix v1\\.\\d+\\); the token belongs to ${account.userId}$`));
    assert.equal(opencode, `❌ OpenCode    Cannot reach OpenCode at ${url} (opencode.serverUrl, from OPENCODE_SERVER_URL): connection refused. Is \`opencode serve\` running there? (Without opencode.serverUrl the bot starts its own.)`);
    assert.equal(sandbox, "➖ sandbox     not the bot's to set up: OpenCode runs at opencode.serverUrl");
    assert.equal(letta, "➖ Letta       not configured (no letta.baseUrl): no !letta commands");
    assert.equal(database, `✅ database    ${e.BOT_DATABASE_PATH} will be created at the first start`);
    assert.equal(workspace, `✅ workspace   ${e.OPENCODE_WORKSPACE_DIR} is writable`);
    assert.equal(summary, "1 of 7 checks failed.");
    assert.deepEqual(rest, []);
    assert.ok(!existsSync(dirname(e.BOT_DATABASE_PATH ?? "")) && !existsSync(e.OPENCODE_WORKSPACE_DIR ?? ""), "no database or workspace made");
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { startTestOpencode, testOpencodeConfig, type TestOpencode } from "../harness/opencode.ts";
import { loadStackInfo } from "../harness/stack.ts";
import { TestEnv, embeddedServerEnv, splitFooter, waitForFinalReply } from "./env.ts";

// The agent is untrusted: a prompt injection makes it run any command. What it can reach from
// the embedded server must not make it the bot (Matrix token or password), post as the bot
// (notify token) or use the bot's Letta account; and the server must not take orders from a
// local process that does not know its password.

const random = (what: string): string => `${what}-${randomBytes(16).toString("hex")}`;
const basic = (user: string, password: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` });

describe("the agent behind the embedded server", () => {
  let env: TestEnv;
  let workspace: string;
  let botConfigPath: string;
  const configMarker = random("config-only-secret");
  const botSecrets: Record<string, string> = {
    MATRIX_PASSWORD: random("matrix-password"),
    BOT_NOTIFY_TOKEN: random("notify-token"),
    LETTA_API_TOKEN: random("letta-token"),
  };
  const providerKey = random("sk-provider");
  const unnamedKey = random("sk-not-named");

  before(async () => {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, "boundary-"));
    workspace = join(dir, "workspace");
    const configPath = join(dir, "opencode.json");
    // bash runs without asking, even on paths outside the project: the injected command goes
    // through as it would for a careless operator.
    writeFileSync(configPath, JSON.stringify(testOpencodeConfig(stack.model.baseUrl, "allow", { permission: { external_directory: "allow" } })));
    // The bot's own config file, outside the workspace, holding something only the bot may read.
    botConfigPath = join(dir, "bot-config", "config.yaml");
    mkdirSync(dirname(botConfigPath));
    writeFileSync(botConfigPath, `# ${configMarker}\nlog:\n  level: debug\n`);
    env = await TestEnv.create({
      name: "boundary",
      botEnv: {
        ...embeddedServerEnv(dir, workspace, configPath),
        ...botSecrets,
        BOUNDARY_PROVIDER_API_KEY: providerKey,
        BOUNDARY_OTHER_API_KEY: unnamedKey,
        OPENCODE_PASS_ENV: "BOUNDARY_PROVIDER_API_KEY",
        BOT_CONFIG: botConfigPath,
        // alice is the bot's operator: she may restart the server.
        BOT_ADMINS: "@alice-boundary-*:localhost",
      },
    });
  });
  after(async () => {
    await env?.close();
  });

  const secrets = (): Record<string, string> => ({ MATRIX_ACCESS_TOKEN: env.accounts.bot.accessToken, ...botSecrets });

  /** The embedded server's URL, as the bot's /health reports it. */
  const embeddedUrl = async (): Promise<string> => {
    const health = (await (await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`)).json()) as { ok: boolean; opencode: Array<{ url: string }> };
    assert.equal(health.ok, true);
    return health.opencode[0]?.url ?? "";
  };

  test("`env` run by the agent shows none of the bot's secrets, only the variables the operator named", async () => {
    const command = "env > leaked-env.txt; grep -E 'MATRIX|BOT_|LETTA|_API_KEY=' leaked-env.txt | sort | tr '\\n' ' '";
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, `!oc bash: ${command}`);
    const reply = splitFooter((await waitForFinalReply(env, root, root, sentAt, 90_000)).body).text;
    // The agent's answer quotes the first line of the command's output: the operator's key, and nothing of the bot's.
    assert.match(reply, new RegExp(`^▶️ bash \`env > leaked-env\\.txt; .*\` ✓\n\nCommand finished: BOUNDARY_PROVIDER_API_KEY=${providerKey}$`));

    const file = join(workspace, "leaked-env.txt");
    assert.ok(existsSync(file), "the agent's command ran in the workspace");
    const leaked = readFileSync(file, "utf8");
    assert.match(leaked, /^PATH=/m, "a usable environment");
    assert.ok(leaked.includes(`BOUNDARY_PROVIDER_API_KEY=${providerKey}`), "the key named in OPENCODE_PASS_ENV reaches the agent");
    assert.ok(!leaked.includes(unnamedKey), "a variable nobody named stays with the bot");
    for (const [name, value] of Object.entries(secrets())) {
      assert.ok(!leaked.includes(value), `${name}'s value is in the agent's environment`);
      assert.doesNotMatch(leaked, new RegExp(`^${name}=`, "m"));
    }

    const room = await env.users.alice.roomMessages(env.roomId, 300);
    for (const [name, value] of Object.entries(secrets())) {
      const seen = room.filter((e) => JSON.stringify(e.content).includes(value));
      assert.deepEqual(seen.map((e) => e.event_id), [], `${name} shows in the room`);
    }
  });

  test("the agent cannot touch the bot's database, read its config file or its process's environment", async () => {
    // The issue's attack: schedule a prompt behind the allowlist's back, and read what the bot holds.
    const insert = `INSERT INTO scheduled_prompts (room_id, text, due_at, status, created_by, created_at) VALUES ('${env.roomId}', 'pwned by the agent', 0, 'pending', '@agent:evil', 0)`;
    const python = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit(); print('db: inserted')";
    const command = [
      `python3 -c "${python}" ${env.dbPath} "${insert}" 2>&1 | tail -1 > attack.txt`,
      `tr '\\0' '\\n' 2>>attack.txt < /proc/${env.bot.pid}/environ >> attack.txt`,
      `cat ${botConfigPath} >> attack.txt 2>&1`,
      "echo attack-done >> attack.txt; head -1 attack.txt",
    ].join("; ");
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, `!oc bash: ${command}`);
    assert.match(splitFooter((await waitForFinalReply(env, root, root, sentAt, 90_000)).body).text, /^▶️ bash `python3 .*` ✓\n\nCommand finished: /);

    const seen = readFileSync(join(workspace, "attack.txt"), "utf8");
    assert.match(seen, /^sqlite3\.OperationalError: no such table: scheduled_prompts\n/, "the database the agent sees is not the bot's");
    assert.match(seen, /attack-done\n$/, "the whole command ran");
    assert.ok(!seen.includes(configMarker), "the config file's content");
    for (const [name, value] of Object.entries(secrets())) assert.ok(!seen.includes(value), `${name} from /proc/<bot>/environ`);
    assert.deepEqual(env.query("SELECT text FROM scheduled_prompts"), [], "no row was added to the bot's database");
  });

  test("the embedded server refuses a request without its password; the bot's own requests go through", async () => {
    const url = await embeddedUrl();
    for (const path of ["/global/health", "/session"]) {
      assert.equal((await fetch(`${url}${path}`)).status, 401, `GET ${path} without a password`);
      assert.equal((await fetch(`${url}${path}`, { headers: basic("opencode", "guess-the-password") })).status, 401, `GET ${path} with a wrong password`);
    }
    // The password is the server's; a process of the same user can read it from the server's environment.
    const started = await env.bot.waitForLog((l) => l.msg === "started embedded OpenCode server");
    const serverEnv = readFileSync(`/proc/${Number(started.pid)}/environ`, "utf8").split("\0");
    const password = serverEnv.find((v) => v.startsWith("OPENCODE_SERVER_PASSWORD="))?.slice("OPENCODE_SERVER_PASSWORD=".length) ?? "";
    assert.ok(password.length >= 24, "a long random password");
    assert.ok(!Object.values(secrets()).includes(password));
    assert.equal((await fetch(`${url}/session`, { headers: basic("opencode", password) })).status, 200);
    const inLog = env.bot.lines.filter((l) => l.includes(password));
    assert.deepEqual(inLog, [], "the password is scrubbed from the bot's log");

    // The same password after `!oc restart-server`: the bot keeps talking to it.
    assert.match(await env.ask("!oc restart-server"), /^🔄 Restarted the OpenCode server/);
    assert.equal(await embeddedUrl(), url);
    assert.equal((await fetch(`${url}/global/health`)).status, 401);
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc still there after the restart");
    assert.equal(splitFooter((await waitForFinalReply(env, root, root, sentAt, 60_000)).body).text, "Echo: still there after the restart");
  });
});

describe("an external OpenCode server with only OPENCODE_SERVER_PASSWORD", () => {
  let env: TestEnv;
  let server: TestOpencode;
  const password = random("oc-password");

  before(async () => {
    const stack = loadStackInfo();
    const dir = mkdtempSync(join(stack.workDir, "locked-oc-"));
    const workspace = join(dir, "workspace");
    // As docker-compose runs it: a password, OpenCode's default user name.
    server = await startTestOpencode({ workspaceDir: workspace, stateDir: join(dir, "state"), modelBaseUrl: stack.model.baseUrl, password });
    env = await TestEnv.create({
      name: "lockedoc",
      botEnv: { OPENCODE_SERVER_URL: server.url, OPENCODE_WORKSPACE_DIR: workspace, OPENCODE_SERVER_PASSWORD: password },
    });
  });
  after(async () => {
    await env?.close();
    await server?.stop();
  });

  test("the bot signs in as OpenCode's default user and a prompt gets its answer", async () => {
    assert.equal((await fetch(`${server.url}/session`)).status, 401, "the server is locked");
    const sentAt = performance.now();
    const root = await env.users.alice.sendText(env.roomId, "!oc hello through a locked door");
    assert.equal(splitFooter((await waitForFinalReply(env, root, root, sentAt, 60_000)).body).text, "Echo: hello through a locked door");
    const health = (await (await fetch(`http://127.0.0.1:${env.bot.httpPort}/health`)).json()) as { ok: boolean };
    assert.equal(health.ok, true);
  });
});

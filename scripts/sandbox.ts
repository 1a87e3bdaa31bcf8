// `npm run sandbox [-- [--scripted [--letta]] [--keep]]`: a complete local playground for newcomers.
// Boots Synapse from the project's venv (installing it the first time, with progress), registers
// the bot and a human account, creates a room with both, starts OpenCode and the bot, prints how
// to log in with Element or any Matrix client, and runs until Ctrl-C, then stops everything and
// removes its state (.cache/sandbox/run-<pid>/).
//   --scripted  OpenCode talks to the offline scripted model of the tests (no provider account needed)
//               instead of the bot's embedded `opencode serve` with your own provider configuration
//   --letta     also a Letta server (scripts/sandbox-letta.ts) with an agent for `!letta`; needs --scripted
//   --keep      leave the state directory (workspace, logs, databases) in place on exit
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isBotOnlyVariable } from "../src/process/child-env.ts";
import { waitFor } from "../test/harness/net.ts";
import { startTestOpencode } from "../test/harness/opencode.ts";
import { startScriptedModel } from "../test/harness/scripted-model.ts";
import { SYNAPSE_VERSION, ensureSynapseInstalled, registerUser, startSynapse } from "../test/harness/synapse.ts";
import { startBot } from "./sandbox-bot.ts";
import { LETTA_NEEDS_SCRIPTED, startSandboxLetta } from "./sandbox-letta.ts";

const repoDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cacheDir = join(repoDir, ".cache");
const sandboxRoot = join(cacheDir, "sandbox");
const args = new Set(process.argv.slice(2));
const scripted = args.has("--scripted");
const keep = args.has("--keep");
const letta = args.has("--letta");

if (args.has("--help") || args.has("-h")) {
  process.stdout.write(`${readHeader()}\n`);
  process.exit(0);
}
const unknown = [...args].filter((a) => !["--scripted", "--letta", "--keep"].includes(a));
if (unknown.length > 0) {
  process.stderr.write(`sandbox: unknown option ${unknown.join(" ")} (try --help)\n`);
  process.exit(2);
}
if (letta && !scripted) {
  process.stderr.write(LETTA_NEEDS_SCRIPTED);
  process.exit(2);
}

function readHeader(): string {
  return [
    "npm run sandbox [-- [--scripted [--letta]] [--keep]]",
    "  Starts Synapse, OpenCode and the bot on 127.0.0.1 and prints Matrix login details.",
    "  --scripted  use the offline scripted model instead of your own OpenCode provider configuration",
    "  --letta     also start a Letta server (installed into .cache/letta-venv the first time, about 90 s)",
    "              with an agent that answers `!letta <message>` from the scripted model; needs --scripted",
    "  --keep      keep .cache/sandbox/run-<pid>/ (workspace, logs, databases) after Ctrl-C",
  ].join("\n");
}

const t0 = performance.now();
const secs = (from = t0): string => `${((performance.now() - from) / 1000).toFixed(1)} s`;
const say = (line: string): void => void process.stdout.write(`[sandbox] ${line}\n`);
const rel = (p: string): string => relative(process.cwd(), p) || ".";

// ---- state directory: one per run, so two sandboxes (or a sandbox and its test) never collide ----
mkdirSync(sandboxRoot, { recursive: true });
for (const name of readdirSync(sandboxRoot)) {
  const pid = Number(/^run-(\d+)$/.exec(name)?.[1]);
  if (pid && pid !== process.pid && !isAlive(pid)) rmSync(join(sandboxRoot, name), { recursive: true, force: true });
}
const runDir = join(sandboxRoot, `run-${process.pid}`);
rmSync(runDir, { recursive: true, force: true });
const workspaceDir = join(runDir, "workspace");
mkdirSync(workspaceDir, { recursive: true });

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// ---- clean-up: every started piece registers how to stop it; stopped in reverse order ----
type Cleanup = { name: string; stop: () => Promise<void>; kill: () => void };
const cleanups: Cleanup[] = [];
let stopping = false;
let failed = false;
const lateStops: Array<Promise<void>> = [];

function onCleanup(c: Cleanup): void {
  // Something that finished starting after Ctrl-C: stop it right away.
  if (stopping) lateStops.push(c.stop().catch(() => {}));
  else cleanups.push(c);
}

async function shutdown(code: number): Promise<never> {
  stopping = true;
  for (const c of [...cleanups].reverse()) {
    const started = performance.now();
    try {
      await Promise.race([c.stop(), new Promise((_, rej) => setTimeout(() => rej(new Error("timed out")), 30_000))]);
      say(`stopped ${c.name} (${secs(started)})`);
    } catch (err) {
      say(`stopping ${c.name} failed: ${(err as Error).message}; killing it`);
      c.kill();
    }
  }
  await Promise.all(lateStops);
  if (keep || failed) say(`state kept in ${rel(runDir)}`);
  else rmSync(runDir, { recursive: true, force: true });
  say(code === 0 ? "all stopped and cleaned up" : `exiting with code ${code}`);
  process.exit(code);
}

let firstSignalAt = 0;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    if (firstSignalAt > 0) {
      // One Ctrl-C can arrive twice (to the process group, and forwarded by a wrapper): only a
      // later, second press means "kill now".
      if (performance.now() - firstSignalAt < 1500) return;
      say(`${sig} again: killing everything now`);
      for (const c of cleanups) c.kill();
      process.exit(130);
    }
    firstSignalAt = performance.now();
    process.stdout.write("\n");
    say(`${sig}: stopping (press Ctrl-C again to kill at once)`);
    void shutdown(0);
  });
}

function killQuietly(pid: number): void {
  try {
    if (pid > 0) process.kill(pid, "SIGKILL");
  } catch { /* already gone */ }
}

class Interrupted extends Error {}
const checkpoint = (): void => {
  if (stopping) throw new Interrupted();
};

async function matrix<T>(baseUrl: string, token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

function hasOwnOpencodeConfig(): boolean {
  const home = homedir();
  const config = process.env.XDG_CONFIG_HOME ?? join(home, ".config");
  const data = process.env.XDG_DATA_HOME ?? join(home, ".local", "share");
  return ["opencode.json", "opencode.jsonc", "config.json"].some((f) => existsSync(join(config, "opencode", f)))
    || existsSync(join(data, "opencode", "auth.json"))
    || !!process.env.OPENCODE_CONFIG || !!process.env.OPENCODE_CONFIG_CONTENT;
}

async function main(): Promise<void> {
  say(`state in ${rel(runDir)}; OpenCode: ${scripted ? "scripted offline model (--scripted)" : "your own provider configuration"}${letta ? "; Letta too (--letta)" : ""}`);

  // 1. Synapse: install into the project's venv the first time (with progress), then boot.
  const synapseP = (async () => {
    const tInstall = performance.now();
    let installing = false;
    let ticker: NodeJS.Timeout | undefined;
    await ensureSynapseInstalled(cacheDir, (line) => {
      if (!installing) {
        installing = true;
        say(`first run: installing Synapse ${SYNAPSE_VERSION} from PyPI into ${rel(join(cacheDir, "venv"))} (a minute or two; later runs skip this)`);
        ticker = setInterval(() => say(`… still installing Synapse (${secs(tInstall)})`), 15_000);
      }
      if (/^(Collecting|Downloading|Installing|Successfully|Building|installing|synapse)/.test(line.trim())) say(`pip │ ${line.trim()}`);
    }).finally(() => clearInterval(ticker));
    if (installing) say(`Synapse installed in ${secs(tInstall)}`);
    checkpoint();
    const synapse = await startSynapse({ cacheDir, workDir: runDir, rateLimits: "raised", log: (l) => say(l) });
    onCleanup({ name: "synapse", stop: () => synapse.stop(), kill: () => killQuietly(synapse.pid) });
    return synapse;
  })();
  synapseP.catch(() => {}); // awaited below

  // 2. In --scripted mode, the scripted model and a test OpenCode server (and Letta), beside Synapse.
  const modelP = (async () => {
    if (!scripted) return undefined;
    const model = await startScriptedModel();
    onCleanup({ name: "scripted model", stop: () => model.close(), kill: () => {} });
    return model;
  })();
  modelP.catch(() => {});
  const opencodeP = (async () => {
    const model = await modelP;
    if (!model) return undefined;
    const tOc = performance.now();
    const opencode = await startTestOpencode({ workspaceDir, stateDir: join(runDir, "opencode-state"), modelBaseUrl: model.baseUrl });
    onCleanup({ name: `opencode (pid ${opencode.pid})`, stop: () => opencode.stop(), kill: () => opencode.kill("SIGKILL") });
    say(`opencode serve ready on ${opencode.url} (scripted model at ${model.baseUrl}) in ${secs(tOc)}`);
    return opencode;
  })();
  opencodeP.catch(() => {});
  const lettaP = (async () => {
    const model = await modelP;
    if (!letta || !model) return undefined;
    return startSandboxLetta({
      cacheDir, workDir: join(runDir, "letta"), modelBaseUrl: model.baseUrl, say, rel, checkpoint,
      onStarted: (name, stop, kill) => onCleanup({ name, stop, kill }),
    });
  })();
  lettaP.catch(() => {});

  const synapse = await synapseP;
  checkpoint();

  // 3. Accounts and the room. The human creates it and invites the bot, which joins on start.
  const password = `sandbox-${randomBytes(6).toString("hex")}`;
  const [botAccount, human] = await Promise.all([
    registerUser(synapse.baseUrl, synapse.sharedSecret, "bot", { password: randomBytes(12).toString("hex") }),
    registerUser(synapse.baseUrl, synapse.sharedSecret, "you", { password }),
  ]);
  const prefix = "!oc";
  const { room_id: roomId } = await matrix<{ room_id: string }>(synapse.baseUrl, human.accessToken, "POST", "/_matrix/client/v3/createRoom", {
    preset: "private_chat",
    name: "OpenCode sandbox",
    topic: `Write "${prefix} <prompt>" to start an OpenCode session${letta ? ', "!letta <message>" to talk to a Letta agent' : ""}; answers come in a thread. "${prefix} help" lists the commands.`,
    invite: [botAccount.userId],
  });
  say(`registered ${human.userId} and ${botAccount.userId}; created room ${roomId}`);

  const opencode = await opencodeP;
  const lettaServer = await lettaP;
  checkpoint();
  if (!scripted && !hasOwnOpencodeConfig()) {
    say("note: no OpenCode configuration found (~/.config/opencode, ~/.local/share/opencode/auth.json);");
    say("      OpenCode falls back to its defaults. Run `npx opencode auth login` once, or use --scripted.");
  }

  // 4. The bot.
  const providerKeys = Object.keys(process.env).filter((name) => /_API_KEY$/.test(name) && !isBotOnlyVariable(name));
  const tBot = performance.now();
  const botEnv: Record<string, string> = {
    BOT_CONFIG: "/dev/null", // a config/config.yaml of the checkout must not steer the sandbox
    MATRIX_HOMESERVER_URL: synapse.baseUrl,
    MATRIX_ACCESS_TOKEN: botAccount.accessToken,
    BOT_ALLOWED_USERS: human.userId,
    BOT_ADMINS: human.userId, // the sandbox's only user is its operator too (`!letta new`, `!oc restart-server`)
    BOT_COMMAND_PREFIX: prefix,
    OPENCODE_WORKSPACE_DIR: workspaceDir,
    BOT_DATABASE_PATH: join(runDir, "bot", "bot.db"),
    BOT_HTTP_HOST: "127.0.0.1",
    BOT_HTTP_PORT: "0",
    BOT_EDIT_WINDOW_MS: "500",
    LOG_LEVEL: "info",
    ...(opencode ? { OPENCODE_SERVER_URL: opencode.url } : {}),
    ...lettaServer?.botEnv,
    // The embedded OpenCode sees no variable of the bot's environment it is not told to: pass
    // the provider API keys of this shell.
    ...(opencode || providerKeys.length === 0 ? {} : { OPENCODE_PASS_ENV: providerKeys.join(",") }),
  };
  // The embedded OpenCode may need to install its provider packages on the first start.
  const bot = await startBot({
    env: botEnv, logPath: join(runDir, "bot.log"), timeoutMs: opencode ? 60_000 : 180_000,
    repoDir, say, rel, onCleanup, isStopping: () => stopping,
  });
  checkpoint();
  await waitFor(async () => {
    const r = await matrix<{ joined: Record<string, unknown> }>(synapse.baseUrl, human.accessToken, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`);
    return botAccount.userId in r.joined;
  }, { timeoutMs: 30_000, intervalMs: 200, what: "the bot to join the sandbox room" });
  say(`bot ${bot.userId} ready (pid ${bot.child.pid}) and in the room after ${secs(tBot)}`);
  checkpoint();

  const login = {
    homeserverUrl: synapse.baseUrl, userId: human.userId, username: "you", password, roomId,
    botUserId: botAccount.userId, botHealthUrl: `http://127.0.0.1:${bot.httpPort}/health`, stateDir: runDir, scripted,
    ...(lettaServer ? { letta: { baseUrl: lettaServer.baseUrl, agent: lettaServer.agentName, agentId: lettaServer.agentId } } : {}),
  };
  writeFileSync(join(runDir, "login.json"), JSON.stringify(login, null, 2));
  const example = scripted ? `${prefix} say hello   (the scripted model answers "Echo: say hello")` : `${prefix} Create hello.py that prints hello`;
  const line = "─".repeat(78);
  process.stdout.write([
    line,
    ` Sandbox ready in ${secs()}. Log in with Element or any Matrix client:`,
    "",
    `   Homeserver URL:  ${login.homeserverUrl}`,
    `   User:            ${login.userId}   (user name: ${login.username})`,
    `   Password:        ${login.password}`,
    `   Room:            ${login.roomId}   "OpenCode sandbox", already joined`,
    "",
    " Element (Desktop, or https://app.element.io in a browser on this machine): Sign in → next to the",
    ` homeserver click "Edit" → enter the Homeserver URL above → user name "${login.username}" and the password.`,
    " Synapse listens on 127.0.0.1 only: use a client on this machine.",
    "",
    ` In the room write:  ${example}`,
    ...(lettaServer ? [`               or:  ${lettaServer.example}`] : []),
    ` Bot:     ${login.botUserId}, health at ${login.botHealthUrl}`,
    ` Logs:    ${rel(bot.logPath)}, ${rel(join(runDir, "synapse", "homeserver.log"))}${opencode ? `, ${rel(join(runDir, "opencode-state", "opencode.log"))}` : ""}${lettaServer ? `, ${rel(lettaServer.logPath)}` : ""}`,
    ` Files:   the agent works in ${rel(workspaceDir)}`,
    ` Ctrl-C stops everything${keep ? "" : ` and removes ${rel(runDir)} (--keep to keep it)`}.`,
    line,
    "",
  ].join("\n"));

  // 5. Run until a signal; a child that dies on its own ends the sandbox too.
  const botExit = await bot.exited;
  if (!stopping) {
    failed = true;
    say(`the bot exited on its own (${botExit}); see ${rel(bot.logPath)}`);
    await shutdown(1);
  }
}

main().catch(async (err: unknown) => {
  if (err instanceof Interrupted || stopping) return; // shutdown() is already under way
  failed = true;
  say(`failed after ${secs()}: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
});

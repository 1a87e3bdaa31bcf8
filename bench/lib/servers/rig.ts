// The servers phase's set-up of servers and clients: three real `opencode serve` (the stack's as
// `default`, two more started here with their own workspace and state, the same scripted model),
// an event recorder on each, the bot configured with all three, Alice, and the counting proxy.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MatrixTestUser } from "../../../test/harness/matrix-user.ts";
import { startTestOpencode, type TestOpencode } from "../../../test/harness/opencode.ts";
import type { Stack } from "../../../test/harness/stack.ts";
import type { RegisteredUser } from "../../../test/harness/synapse.ts";
import { ProxyProcess } from "../../counting-proxy.ts";
import { BenchBot, type BenchBotOptions } from "../bot.ts";
import { OpencodeEventRecorder } from "../oc-events.ts";

export interface ServersConfig {
  /** Rooms created and bound round-robin (default 1000). */
  rooms: number;
  /** Sessions streaming at once on each server (default 20). */
  perServer: number;
  /** Words of each answer in the burst (a), and in the outage round (b). */
  words: number;
  outageWords: number;
  /** Room creations (and binding commands) in flight at once. */
  concurrency: number;
  /** A final later than this after its session went idle is late; not final after `timeoutMs`: lost. */
  lateMs: number;
  timeoutMs: number;
  /** The target for telling a dead server's threads. */
  noticeTargetMs: number;
}

export interface ServersContext {
  cfg: ServersConfig;
  stack: Stack;
  /** The benchmark's subscription to the stack's OpenCode (the server `default`). */
  recorder: OpencodeEventRecorder;
  workDir: string;
  stateDir: string;
  logDir: string;
  reg: (name: string) => Promise<RegisteredUser>;
  botOptions: (over: Partial<BenchBotOptions> & Pick<BenchBotOptions, "homeserverUrl" | "accessToken" | "allowedUsers" | "databasePath">) => BenchBotOptions;
  say: (line: string) => void;
  markLoad: (phase: string, at: "start" | "end") => void;
  cleanups: Array<() => Promise<unknown>>;
}

const names = ["default", "second", "third"] as const;
/** The server killed in the outage round. */
const victim = "third";

/** What the rounds work with once servers and clients are up. */
export interface ServersRig {
  ctx: ServersContext;
  cfg: ServersConfig;
  names: typeof names;
  victim: typeof victim;
  recorders: Map<string, OpencodeEventRecorder>;
  ocOf: (name: string) => TestOpencode;
  wsOf: (name: string) => string;
  al: MatrixTestUser;
  botUser: string;
  proxy: ProxyProcess;
  dbPath: string;
  opts: BenchBotOptions;
  bot: BenchBot;
  /** The processes whose CPU a round measures. */
  pids: () => Record<string, number>;
}

export async function startServersRig(ctx: ServersContext): Promise<ServersRig> {
  const { stack, say } = ctx;
  const dir = join(ctx.workDir, "servers");
  mkdirSync(dir, { recursive: true });

  // Two more real OpenCode servers, each with its own workspace and state, the same scripted model.
  say(`servers: starting two more opencode serve (${names.slice(1).join(", ")})`);
  const extra = new Map<string, { oc: TestOpencode; ws: string }>();
  await Promise.all(names.slice(1).map(async (name) => {
    const ws = join(dir, `ws-${name}`);
    const oc = await startTestOpencode({ workspaceDir: ws, stateDir: join(dir, `oc-${name}`), modelBaseUrl: stack.info.model.baseUrl });
    extra.set(name, { oc, ws });
  }));
  // A cleanup that hangs must not hang the benchmark: each gets 15 s.
  const cleanup = (what: string, fn: () => Promise<unknown>): void => void ctx.cleanups.push(async () => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      fn().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(() => resolve(say(`  cleanup: ${what} did not finish within 15 s; going on`)), 15_000))),
    ]);
    clearTimeout(timer);
  });
  cleanup("stopping the two OpenCode servers", () => Promise.allSettled([...extra.values()].map((x) => x.oc.stop())));
  const recorders = new Map<string, OpencodeEventRecorder>([["default", ctx.recorder]]);
  for (const [name, x] of extra) {
    const r = new OpencodeEventRecorder(x.oc.url, x.ws);
    await r.start({ reconnect: true });
    recorders.set(name, r);
    cleanup(`stopping the event recorder of ${name}`, () => r.stop());
  }
  const ocOf = (name: string): TestOpencode => (name === "default" ? stack.opencode : (extra.get(name) as { oc: TestOpencode }).oc);

  const configFile = join(dir, "bot-config.yaml");
  writeFileSync(configFile, [
    "opencode:",
    "  servers:",
    ...[...extra].flatMap(([name, x]) => [`    ${name}:`, `      url: ${x.oc.url}`, `      projectRoots: [${x.ws}]`]),
    "",
  ].join("\n"));

  const aliceAccount = await ctx.reg("alice-servers");
  const al = new MatrixTestUser(stack.info.synapse.baseUrl, aliceAccount);
  await al.startSync();
  cleanup("stopping Alice's sync", () => al.stopSync());
  const botAccount = await ctx.reg("servers-bot");
  const botUser = botAccount.userId;
  const proxy = await ProxyProcess.start(stack.info.synapse.baseUrl);
  cleanup("stopping the proxy", () => proxy.stop());
  const dbPath = join(ctx.stateDir, "servers-bot.db");
  const opts = ctx.botOptions({
    homeserverUrl: proxy.url, accessToken: botAccount.accessToken, allowedUsers: [al.userId], databasePath: dbPath,
  });
  opts.extraEnv = { ...opts.extraEnv, BOT_CONFIG: configFile };
  const bot = await BenchBot.start(opts);

  const wsOf = (name: string): string => (name === "default" ? stack.info.workspaceDir : (extra.get(name) as { ws: string }).ws);
  const pids = (): Record<string, number> => ({
    bot: bot.pid, synapse: stack.synapse.pid, bench: process.pid, proxy: proxy.pid,
    ...Object.fromEntries(names.map((n) => [`opencode-${n}`, ocOf(n).pid])),
  });
  return { ctx, cfg: ctx.cfg, names, victim, recorders, ocOf, wsOf, al, botUser, proxy, dbPath, opts, bot, pids };
}

// What every phase shares: the stack booted once for the whole run (Synapse on loopback, the
// scripted model, `opencode serve`), the benchmark's own subscription to OpenCode's events,
// the report being filled, the progress line, the load marks and the cleanups run at the end.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { MatrixTestUser } from "../../test/harness/matrix-user.ts";
import { bootStack, type Stack } from "../../test/harness/stack.ts";
import { registerUser, SYNAPSE_VERSION, type RegisteredUser } from "../../test/harness/synapse.ts";
import { benchDir, type BenchBotOptions } from "./bot.ts";
import type { BenchConfig } from "./config.ts";
import { OpencodeEventRecorder } from "./oc-events.ts";
import type { Report } from "./report.ts";
import { round } from "./stats.ts";

export type BotOptionsFor = (over: Partial<BenchBotOptions> & Pick<BenchBotOptions, "homeserverUrl" | "accessToken" | "allowedUsers" | "databasePath">) => BenchBotOptions;

export interface BenchContext {
  cfg: BenchConfig;
  /** performance.now() at the run's start: the progress line's clock and the report's duration. */
  t00: number;
  say: (line: string) => void;
  loads: Array<{ phase: string; at: string; load1: number }>;
  markLoad: (phase: string, at: "start" | "end") => void;
  resultsDir: string;
  profileDir: string;
  logDir: string;
  workDir: string;
  stateDir: string;
  stack: Stack;
  /** Synapse's URL. */
  hs: string;
  reg: (name: string) => Promise<RegisteredUser>;
  recorder: OpencodeEventRecorder;
  cleanups: Array<() => Promise<unknown>>;
  report: Report;
  botOptions: BotOptionsFor;
  /** The one Alice the relay and scale phases share, registered and syncing on first use. */
  getAlice: () => Promise<MatrixTestUser>;
}

/** Makes the work and result directories, boots the stack and starts the report. */
export async function startBench(cfg: BenchConfig): Promise<BenchContext> {
  const t00 = performance.now();
  const say = (line: string): void => void process.stderr.write(`[bench +${((performance.now() - t00) / 1000).toFixed(0)}s] ${line}\n`);
  // Others may share the machine: the 1-minute load average at each phase's start and end goes into the JSON.
  const loads: Array<{ phase: string; at: string; load1: number }> = [];
  const markLoad = (phase: string, at: "start" | "end"): void => void loads.push({ phase, at, load1: round(os.loadavg()[0] ?? 0, 2) });
  const resultsDir = join(benchDir, "results");
  const profileDir = join(resultsDir, "profiles");
  const logDir = join(resultsDir, "logs"); // the bots' log lines of the latest run
  mkdirSync(resultsDir, { recursive: true });
  if (cfg.profile) mkdirSync(profileDir, { recursive: true });
  const workDir = mkdtempSync(join(os.tmpdir(), "bot-bench-"));
  // The bots' databases in a directory of their own: the bot refuses state beside the agent's workspace.
  const stateDir = join(workDir, "bot-state");
  mkdirSync(stateDir);

  say(`work dir ${workDir}; booting Synapse, the scripted model and opencode serve`);
  const stack: Stack = await bootStack(workDir, { rateLimits: "raised" });
  for (const [name, ms] of stack.timings) say(`  ${name}: ${(ms / 1000).toFixed(1)} s`);
  const hs = stack.info.synapse.baseUrl;
  const reg = (name: string): Promise<RegisteredUser> => registerUser(hs, stack.info.synapse.sharedSecret, `${name}-${Date.now().toString(36)}`);
  const recorder = new OpencodeEventRecorder(stack.info.opencode.url, stack.info.workspaceDir);
  await recorder.start();

  const cleanups: Array<() => Promise<unknown>> = [];
  const git = (...a: string[]): string => {
    try {
      return execFileSync("git", a, { cwd: join(benchDir, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "";
    }
  };
  const report: Report = {
    date: new Date().toISOString(),
    commit: `${git("rev-parse", "--short", "HEAD") || "?"}${git("status", "--porcelain", "src") ? " (src modified)" : ""}`,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "?",
      memGb: round(os.totalmem() / 2 ** 30, 0),
      node: process.version,
      synapse: SYNAPSE_VERSION,
      platform: `${os.platform()} ${os.release()}`,
    },
    config: cfg,
    phases: {},
  };

  function botOptions(over: Partial<BenchBotOptions> & Pick<BenchBotOptions, "homeserverUrl" | "accessToken" | "allowedUsers" | "databasePath">): BenchBotOptions {
    return {
      opencodeUrl: stack.info.opencode.url,
      workspaceDir: stack.info.workspaceDir,
      editWindowMs: cfg.windowMs,
      extraEnv: cfg.botEnv,
      ...over,
    };
  }

  let alice: MatrixTestUser | undefined;
  let aliceAccount: RegisteredUser | undefined;

  async function getAlice(): Promise<MatrixTestUser> {
    if (alice) return alice;
    aliceAccount = await reg("alice");
    alice = new MatrixTestUser(hs, aliceAccount);
    await alice.startSync();
    cleanups.push(() => (alice as MatrixTestUser).stopSync());
    return alice;
  }

  return {
    cfg, t00, say, loads, markLoad, resultsDir, profileDir, logDir, workDir, stateDir,
    stack, hs, reg, recorder, cleanups, report, botOptions, getAlice,
  };
}

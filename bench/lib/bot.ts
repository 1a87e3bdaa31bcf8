// The bot as the benchmark runs it: the real `npm start` entry (via the test harness's
// BotProcess), with the loop-lag probe preloaded and its RSS read from /proc.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { BotProcess, type LogLine } from "../../test/harness/bot-process.ts";
import { processCpuMs } from "./cpu.ts";

export const benchDir = join(import.meta.dirname, "..");
const probeUrl = pathToFileURL(join(benchDir, "loop-lag-probe.ts")).href;

export interface BenchBotOptions {
  homeserverUrl: string;
  accessToken: string;
  allowedUsers: string[];
  opencodeUrl: string;
  workspaceDir: string;
  databasePath: string;
  editWindowMs: number;
  /** Preload the loop-lag probe (default). The start phase goes without: a TypeScript file, it would add Node's type stripping (about 55 ms) to a start that has none. */
  loopLagProbe?: boolean;
  /** Write a V8 CPU profile of the whole process into this directory (on exit). */
  cpuProfileDir?: string;
  logLevel?: string;
  /** More environment (config overrides for experiments). */
  extraEnv?: Record<string, string>;
}

export interface LoopLag {
  periodMs: number;
  samples: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  lagMeanMs: number;
  /** Loop stalls over 50 ms: how many, their total, and the CPU the process used during them. */
  stalls: number;
  stallMs: number;
  stallCpuMs: number;
  worstStalls: Array<{ ms: number; cpuMs: number }>;
  rssMb: number;
  heapUsedMb: number;
}

export function botEnv(o: BenchBotOptions): Record<string, string> {
  const nodeOptions = o.loopLagProbe === false ? [] : [`--import=${probeUrl}`];
  if (o.cpuProfileDir) nodeOptions.push("--cpu-prof", `--cpu-prof-dir=${o.cpuProfileDir}`);
  return {
    MATRIX_HOMESERVER_URL: o.homeserverUrl,
    MATRIX_ACCESS_TOKEN: o.accessToken,
    BOT_ALLOWED_USERS: o.allowedUsers.join(","),
    OPENCODE_SERVER_URL: o.opencodeUrl,
    OPENCODE_WORKSPACE_DIR: o.workspaceDir,
    BOT_DATABASE_PATH: o.databasePath,
    BOT_HTTP_PORT: "0",
    BOT_EDIT_WINDOW_MS: String(o.editWindowMs),
    LOG_LEVEL: o.logLevel ?? "info",
    BOT_CONFIG: "/dev/null",
    ...(nodeOptions.length > 0 ? { NODE_OPTIONS: nodeOptions.join(" ") } : {}),
    ...o.extraEnv,
  };
}

// A benchmark that dies half-way must not leave bots running ("exit" also fires on an uncaught error).
const running = new Set<BotProcess>();
process.on("exit", () => {
  for (const b of running) b.proc.kill("SIGTERM");
});

export class BenchBot {
  readonly bot: BotProcess;
  /** ms from spawning the process to its "bot ready" log line. */
  readonly startMs: number;
  /** CPU time the process used until it was ready (independent of how busy the machine is). */
  readonly startCpuMs: number;
  private lagSeq = 0;

  private constructor(bot: BotProcess, startMs: number, startCpuMs: number) {
    this.bot = bot;
    this.startMs = startMs;
    this.startCpuMs = startCpuMs;
  }

  static async start(o: BenchBotOptions): Promise<BenchBot> {
    const t0 = performance.now();
    const bot = await BotProcess.start(botEnv(o));
    const startMs = performance.now() - t0;
    running.add(bot);
    return new BenchBot(bot, startMs, processCpuMs(bot.pid));
  }

  get pid(): number {
    return this.bot.pid;
  }

  /** Event-loop delay since the previous call (the first call covers the time since start). */
  async loopLag(): Promise<LoopLag> {
    const seq = ++this.lagSeq;
    const line = this.bot.waitForLog((l: LogLine) => l.msg === "bench.loop-lag" && l.seq === seq, 10_000);
    process.kill(this.bot.pid, "SIGUSR2");
    return (await line) as unknown as LoopLag;
  }

  memory(): { rssMb: number; hwmMb: number } {
    return procMemory(this.bot.pid);
  }

  logLines(match: (l: LogLine) => boolean): LogLine[] {
    return this.logLinesSince(0, match);
  }

  logLinesSince(from: number, match: (l: LogLine) => boolean): LogLine[] {
    const out: LogLine[] = [];
    for (const raw of this.bot.lines.slice(from)) {
      if (!raw.startsWith("{")) continue;
      try {
        const l = JSON.parse(raw) as LogLine;
        if (match(l)) out.push(l);
      } catch {
        /* not a log line */
      }
    }
    return out;
  }

  /** Stops the bot; with `logFile`, its log lines are written there (for post-mortems). */
  async stop(logFile?: string): Promise<number | null> {
    const code = await this.bot.stop("SIGTERM");
    running.delete(this.bot);
    if (logFile) {
      mkdirSync(dirname(logFile), { recursive: true });
      writeFileSync(logFile, `${this.bot.lines.join("\n")}\n`);
    }
    return code;
  }
}

/** VmRSS (now) and VmHWM (peak since start) of a process, in MiB. */
export function procMemory(pid: number): { rssMb: number; hwmMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

/** Samples a process's RSS every `everyMs` to find the peak of one period. */
export class RssSampler {
  private readonly pid: number;
  private timer: NodeJS.Timeout | undefined;
  peakMb = 0;
  samples: number[] = [];

  constructor(pid: number, everyMs = 250) {
    this.pid = pid;
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): void {
    try {
      const { rssMb } = procMemory(this.pid);
      this.samples.push(rssMb);
      this.peakMb = Math.max(this.peakMb, rssMb);
    } catch {
      /* the process is gone */
    }
  }

  stop(): number {
    this.sample();
    clearInterval(this.timer);
    this.timer = undefined;
    return this.peakMb;
  }
}

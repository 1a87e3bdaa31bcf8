import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { botEntryFile } from "../../src/startup/bundle.ts";

const repoDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface LogLine {
  level?: number;
  msg?: string;
  [key: string]: unknown;
}

/**
 * The bot as users run it: `npm start` (the built launcher dist/bot/start.mjs, else src/main.ts) in its own process, configured by environment,
 * its JSON log lines captured (for readiness, for assertions and for the secret scan).
 */
export class BotProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  /** What the bot wrote to stderr alone: the plain-words reasons of a failed start. */
  readonly stderrLines: string[] = [];
  readonly stdoutLines: string[] = [];
  httpPort = 0;
  /** Wall-clock time of the spawn (ms), to set against the `time` of its log lines. */
  readonly spawnedAt = Date.now();
  private readonly waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<number | null>;

  private constructor(env: Record<string, string>, args: string[] = []) {
    // The flags of `npm start`.
    this.proc = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", "--disable-warning=DEP0060", botEntryFile(repoDir), ...args], {
      cwd: repoDir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => this.proc.once("exit", (code) => resolve(code)));
    const lineReader = (also: string[]): ((chunk: Buffer) => void) => {
      let buf = "";
      return (chunk) => {
        buf += chunk.toString("utf8");
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          also.push(line);
          this.onLine(line);
        }
      };
    };
    this.proc.stdout?.on("data", lineReader(this.stdoutLines));
    this.proc.stderr?.on("data", lineReader(this.stderrLines));
  }

  static async start(env: Record<string, string>, timeoutMs = 45_000): Promise<BotProcess> {
    const bot = new BotProcess(env);
    const ready = bot.waitForLog((l) => l.msg === "bot ready", timeoutMs);
    const exit = bot.exited.then((code) => {
      throw new Error(`bot exited with ${code} before it was ready:\n${bot.lines.slice(-30).join("\n")}`);
    });
    const line = await Promise.race([ready, exit]);
    bot.httpPort = Number(line.httpPort);
    return bot;
  }

  /**
   * Runs the bot (with `args`, e.g. --check) until it exits on its own (a configuration it refuses):
   * its exit code, all its output, and its stderr and stdout apart. Killed after `timeoutMs`.
   */
  static async runToExit(env: Record<string, string>, timeoutMs = 30_000, args: string[] = []): Promise<{ code: number | null; text: string; stderr: string[]; stdout: string[] }> {
    const bot = new BotProcess(env, args);
    // "close", not "exit": by then the last lines of its output have been read too.
    const closed = new Promise<number | null>((resolve) => bot.proc.once("close", (code: number | null) => resolve(code)));
    const timer = setTimeout(() => bot.proc.kill("SIGKILL"), timeoutMs);
    const code = await closed;
    clearTimeout(timer);
    return { code, text: bot.text, stderr: bot.stderrLines, stdout: bot.stdoutLines };
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  get text(): string {
    return this.lines.join("\n");
  }

  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    for (const raw of this.lines) {
      const l = parse(raw);
      if (l && match(l)) return Promise.resolve(l);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a bot log line; last lines:\n${this.lines.slice(-20).join("\n")}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }

  /** Sends `signal` and resolves with the exit code (null when killed by a signal). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }

  private onLine(line: string): void {
    this.lines.push(line);
    if (process.env.BOT_LOG_ECHO) process.stderr.write(`[bot ${this.pid}] ${line}\n`);
    const parsed = parse(line);
    if (!parsed) return;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w && w.match(parsed)) {
        this.waiters.splice(i, 1);
        w.resolve(parsed);
      }
    }
  }
}

function parse(line: string): LogLine | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

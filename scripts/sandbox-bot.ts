// The sandbox's bot: `npm start` (the built launcher, else src/main.ts), configured by environment, its log in a file, its
// warnings and errors on the sandbox's terminal; resolves once it logged "bot ready".
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { envOverrides } from "../src/config/load.ts";
import { botEntryFile } from "../src/startup/bundle.ts";

export interface BotHandle { child: ChildProcess; exited: Promise<string>; httpPort: number; userId: string; logPath: string }

export interface StartBotOptions {
  env: Record<string, string>;
  logPath: string;
  timeoutMs: number;
  repoDir: string;
  say: (line: string) => void;
  rel: (path: string) => string;
  onCleanup: (c: { name: string; stop: () => Promise<void>; kill: () => void }) => void;
  isStopping: () => boolean;
}

export function startBot({ env, logPath, timeoutMs, repoDir, say, rel, onCleanup, isStopping }: StartBotOptions): Promise<BotHandle> {
  // Config overrides from the caller's shell must not leak into the sandbox's bot.
  const base: Record<string, string | undefined> = { ...process.env };
  for (const { env: name } of envOverrides) delete base[name];
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", botEntryFile(repoDir)], {
    cwd: repoDir,
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<string>((res) => child.once("exit", (code, sig) => res(sig ? `signal ${sig}` : `code ${code}`)));
  onCleanup({
    name: `bot (pid ${child.pid})`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
    kill: () => void child.kill("SIGKILL"),
  });
  const log = createWriteStream(logPath, { flags: "a" });
  const tail: string[] = [];
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the bot was not ready within ${timeoutMs / 1000} s; see ${rel(logPath)}`)), timeoutMs);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.write(`${line}\n`);
        tail.push(line);
        if (tail.length > 20) tail.shift();
        let entry: { level?: number; msg?: string; httpPort?: number; userId?: string; err?: { message?: string } } | undefined;
        try {
          entry = line.startsWith("{") ? JSON.parse(line) : undefined;
        } catch { /* not JSON */ }
        if (isStopping()) return; // shutdown noise (a sync cut off by Synapse stopping) stays in the log file
        if (!entry) {
          // Node's own warnings (deprecations in dependencies) stay in the log file.
          if (line.trim() && !/^\(node:\d+\)|^\(Use `node --trace/.test(line)) say(`bot │ ${line}`);
          return;
        }
        if ((entry.level ?? 0) >= 40) say(`bot │ ${entry.level! >= 50 ? "ERROR" : "WARN"} ${entry.msg ?? ""}${entry.err?.message ? `: ${entry.err.message}` : ""}`);
        if (entry.msg === "bot ready") {
          clearTimeout(timer);
          res({ child, exited, httpPort: Number(entry.httpPort), userId: String(entry.userId), logPath });
        }
      });
    }
    void exited.then((how) => {
      clearTimeout(timer);
      rej(new Error(`the bot exited (${how}) before it was ready. Last lines:\n${tail.join("\n")}`));
    });
  });
}

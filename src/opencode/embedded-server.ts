// Starts and supervises a local `opencode serve` process.
import { spawn } from "node:child_process";
import { closeSync, constants, existsSync, ftruncateSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { childEnv } from "../process/child-env.ts";
import { bwrapArgs, opencodeStateDirs, type SandboxLayout } from "../process/sandbox.ts";
import { basicAuthHeaders, type OpencodeAuth } from "./server-auth.ts";

export interface EmbeddedServerOptions {
  cwd: string; // project/workspace directory
  homeDir?: string; // sets HOME and XDG_* so state is isolated; default: leave the user's
  configContent?: object; // passed as OPENCODE_CONFIG_CONTENT
  // The server and every tool the agent runs inherit its environment: an allowlist (see
  // childEnv), the bot's variables named in passEnv (e.g. a provider's API key), then env.
  passEnv?: readonly string[];
  env?: Record<string, string>;
  // Basic auth the server demands (OPENCODE_SERVER_USERNAME/PASSWORD); its health check uses it too.
  auth?: OpencodeAuth;
  port?: number; // default 0 = random
  readyTimeoutMs?: number; // default 20000
  onLog?: (line: string) => void;
  binary?: string; // default: resolved from the opencode-ai package
  // Run inside bubblewrap with this view of the machine (see sandbox.ts); cwd and OpenCode's own
  // state directories are added to the writable places.
  sandbox?: SandboxLayout;
  // Detached (only without a sandbox): the output goes to this file and the server leads a process
  // group of its own, so a bot killed with -9 leaves it running for its next start to adopt (see
  // server-record.ts) instead of losing the turn. In a sandbox bwrap's --die-with-parent takes the
  // server along with the bot, so there it keeps its pipes.
  logFile?: string;
  /** Called as soon as the process exists, before it is ready: its record must outlive a crash during the start. */
  onSpawn?: (pid: number) => void;
}

export interface EmbeddedServer {
  url: string;
  pid: number;
  stop(): Promise<void>; // SIGTERM, then SIGKILL after 5 s
  kill(signal?: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

const LISTENING = /opencode server listening on (https?:\/\/\S+)/;
// eslint-disable-next-line no-control-regex -- strip ANSI colour codes from its error output
const ansi = /\x1b\[[0-9;]*m/g;
const LOG_TAIL = 30;
const STOP_GRACE_MS = 5000;

function isRealBinary(file: string): boolean {
  // Without postinstall, opencode-ai/bin/opencode.exe is a small stub; the real one is a ~185 MB executable.
  try {
    return statSync(file).size > 1_000_000;
  } catch {
    return false;
  }
}

function platformPackages(): string[] {
  const platform = ({ darwin: "darwin", linux: "linux", win32: "windows" } as Record<string, string>)[process.platform] ?? process.platform;
  const base = `opencode-${platform}-${process.arch}`;
  if (process.arch !== "x64") return [base, `${base}-musl`];
  let avx2 = true;
  if (process.platform === "linux") {
    try {
      avx2 = /(^|\s)avx2(\s|$)/i.test(readFileSync("/proc/cpuinfo", "utf8"));
    } catch { /* assume a modern CPU */ }
  }
  const order = avx2 ? [base, `${base}-baseline`] : [`${base}-baseline`, base];
  return [...order, ...order.map((n) => `${n}-musl`)];
}

/** Path of the opencode executable shipped by the `opencode-ai` npm package (or its platform package). */
export function resolveOpencodeBinary(): string {
  const fromEnv = process.env.OPENCODE_BINARY;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  const req = createRequire(import.meta.url);
  const requires = [req];
  try {
    const pkg = req.resolve("opencode-ai/package.json");
    const linked = path.join(path.dirname(pkg), "bin", "opencode.exe");
    if (isRealBinary(linked)) return linked;
    requires.push(createRequire(pkg)); // platform packages may be nested under opencode-ai
  } catch { /* opencode-ai not installed: try the platform packages directly */ }
  const exe = process.platform === "win32" ? "opencode.exe" : "opencode";
  for (const name of platformPackages()) {
    for (const r of requires) {
      try {
        const bin = path.join(path.dirname(r.resolve(`${name}/package.json`)), "bin", exe);
        if (isRealBinary(bin)) return bin;
      } catch { /* not installed */ }
    }
  }
  throw new Error("opencode binary not found: install the opencode-ai package (with its platform package) or set OPENCODE_BINARY");
}

function isolatedHome(homeDir: string): Record<string, string> {
  return {
    HOME: homeDir,
    USERPROFILE: homeDir,
    XDG_CONFIG_HOME: path.join(homeDir, ".config"),
    XDG_DATA_HOME: path.join(homeDir, ".local", "share"),
    XDG_STATE_HOME: path.join(homeDir, ".local", "state"),
    XDG_CACHE_HOME: path.join(homeDir, ".cache"),
  };
}

async function healthy(url: string, headers: Record<string, string>, deadline: number, gaveUp: () => boolean): Promise<boolean> {
  while (Date.now() < deadline && !gaveUp()) {
    try {
      const res = await fetch(new URL("/global/health", url), { headers, signal: AbortSignal.timeout(Math.max(100, Math.min(3000, deadline - Date.now()))) });
      if (res.ok) return true;
    } catch { /* retry */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Past this size the follower empties the log file of a detached server (it only feeds debug lines). */
const LOG_FILE_MAX = 4 * 1024 * 1024;

/**
 * Follows a growing file line by line from `offset` (the output of a detached server, which has
 * no pipe to the bot). Returns a function that reads what is left and stops following.
 */
export function followFile(file: string, offset: number, onLine: (line: string) => void, everyMs = 200): () => void {
  let pos = offset;
  let rest = "";
  const decoder = new StringDecoder("utf8");
  const chunk = Buffer.alloc(64 * 1024);
  const read = (): void => {
    let fd: number;
    try { fd = openSync(file, "r+"); } catch { return; }
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, pos)) > 0; ) {
        pos += n;
        rest += decoder.write(chunk.subarray(0, n));
      }
      // The server appends (O_APPEND), so emptying the file is safe; lines written since the read above are lost.
      if (pos > LOG_FILE_MAX) ftruncateSync(fd, (pos = 0));
    } finally { closeSync(fd); }
    const lines = rest.split("\n");
    rest = lines.pop() ?? "";
    for (const l of lines) onLine(l);
  };
  const timer = setInterval(read, everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    read();
    if (rest) onLine(rest);
    rest = "";
  };
}

/** What runs for `opts`: the command, its arguments and its environment (server-record.ts hashes them to see a changed setup). */
export function embeddedLaunch(opts: EmbeddedServerOptions, binary: string): { command: string; args: string[]; env: Record<string, string> } {
  const env = childEnv({
    passEnv: opts.passEnv ?? [],
    extra: {
      OPENCODE_DISABLE_MODELS_FETCH: "1",
      OPENCODE_DISABLE_AUTOUPDATE: "1",
      OPENCODE_DISABLE_SHARE: "1",
      OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      ...(opts.homeDir ? isolatedHome(opts.homeDir) : {}),
      ...(opts.configContent ? { OPENCODE_CONFIG_CONTENT: JSON.stringify(opts.configContent) } : {}),
      ...opts.env,
      ...(opts.auth ? { OPENCODE_SERVER_PASSWORD: opts.auth.password } : {}),
      ...(opts.auth?.username !== undefined ? { OPENCODE_SERVER_USERNAME: opts.auth.username } : {}),
    },
  });
  const args = ["serve", "--port", String(opts.port ?? 0), "--hostname", "127.0.0.1", "--print-logs", "--log-level", "INFO"];
  return opts.sandbox
    ? { command: "bwrap", args: bwrapArgs({ ...opts.sandbox, writable: [opts.cwd, ...opts.sandbox.writable, ...opencodeStateDirs(env)] }, binary, args), env }
    : { command: binary, args, env };
}

export async function startEmbeddedOpencode(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  if (!existsSync(opts.cwd)) throw new Error(`opencode workspace directory does not exist: ${opts.cwd}`);
  const binary = opts.binary ?? resolveOpencodeBinary();
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const { command, args: commandArgs, env } = embeddedLaunch(opts, binary);
  const detached = opts.logFile !== undefined && !opts.sandbox;
  // O_APPEND, so that followFile may empty the file under the writing server.
  const logFd = detached ? openSync(opts.logFile as string, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND, 0o600) : undefined;
  const child = spawn(command, commandArgs, { cwd: opts.cwd, env, detached, stdio: logFd === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", logFd, logFd] });
  if (logFd !== undefined) closeSync(logFd);
  if (child.pid !== undefined) opts.onSpawn?.(child.pid);
  // A detached server leads its process group: the signal reaches the commands the agent runs too.
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (detached && child.pid !== undefined) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch { /* already gone */ }
  };

  const tail: string[] = [];
  let onListening: ((url: string) => void) | undefined;
  const pushLine = (line: string) => {
    if (!line) return;
    tail.push(line);
    if (tail.length > LOG_TAIL) tail.shift();
    opts.onLog?.(line);
    const m = onListening && LISTENING.exec(line);
    if (m?.[1]) onListening?.(m[1]);
  };
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue; // detached: followed in its file below
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) pushLine(l.replace(/\r$/, "").replace(ansi, ""));
    });
    stream.on("end", () => { pushLine(buf); buf = ""; });
  }
  const unfollow = detached ? followFile(opts.logFile as string, 0, (l) => pushLine(l.replace(/\r$/, "").replace(ansi, ""))) : undefined;

  let exitCode: number | null | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      exitCode = code; // null when killed by a signal
      resolve(code);
    });
    child.once("error", (e) => {
      // Spawning failed (e.g. ENOENT): there will be no "exit" event.
      if (child.pid !== undefined) return;
      spawnError = e;
      exitCode = null;
      resolve(null);
    });
  });
  // If this process exits without stopping the server, do not leave it running.
  // (A bot killed by a signal runs no handler: a detached server then lives on to be adopted.)
  const killOnExit = () => { if (exitCode === undefined) signal("SIGTERM"); };
  process.once("exit", killOnExit);
  void exited.then(() => {
    process.removeListener("exit", killOnExit);
    unfollow?.();
  });

  const failure = (why: string) =>
    new Error(`opencode serve ${why} (binary ${binary}${opts.sandbox ? ", in a bwrap sandbox" : ""}, cwd ${opts.cwd})\n--- last ${tail.length} log lines ---\n${tail.join("\n")}`);

  let timer: NodeJS.Timeout | undefined;
  const deadline = Date.now() + readyTimeoutMs;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      onListening = resolve;
      void exited.then((code) =>
        reject(failure(spawnError ? `failed to spawn: ${spawnError.message}` : `exited with code ${code} before it was ready`)));
      timer = setTimeout(() => reject(failure(`printed no "listening" line within ${readyTimeoutMs} ms`)), readyTimeoutMs);
    });
    onListening = undefined;
    const ok = await Promise.race([healthy(url, basicAuthHeaders(opts.auth), deadline, () => exitCode !== undefined), exited.then(() => false)]);
    if (!ok) throw failure(exitCode !== undefined ? `exited with code ${exitCode} during the health check` : `GET ${url}/global/health failed`);

    const stop = async () => {
      if (exitCode !== undefined) return;
      signal("SIGTERM");
      let grace: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((r) => { grace = setTimeout(() => r(true), STOP_GRACE_MS); }),
      ]);
      clearTimeout(grace);
      if (timedOut) {
        signal("SIGKILL");
        await exited;
      }
    };
    return {
      url: url.replace(/\/$/, ""),
      pid: child.pid!,
      stop,
      kill: (sig: NodeJS.Signals = "SIGTERM") => { if (exitCode === undefined) signal(sig); },
      exited,
    };
  } catch (e) {
    if (exitCode === undefined) {
      signal("SIGKILL");
      await exited;
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops `server` and starts a new one with the same options on the same port, so that clients
 * keep their URL (`!oc restart-server`, after a change to opencode.json). The port is free
 * once the old process has exited; a few tries cover a socket that lingers.
 */
export async function restartEmbeddedOpencode(server: EmbeddedServer, opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const port = Number(new URL(server.url).port);
  await server.stop();
  let lastError: unknown;
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      return await startEmbeddedOpencode({ ...opts, port });
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw lastError;
}

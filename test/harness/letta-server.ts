// Starts a real self-hosted Letta REST server (PyPI `letta` 0.16.8, the last server release) for end-to-end tests.
// See LETTA-NOTES.md beside this file for why it looks the way it does. In short:
//  - 0.16.8's database layer is PostgreSQL-only (server/db.py always builds an asyncpg engine; with no
//    LETTA_PG_URI it dials postgres://letta:letta@localhost:5432/letta), and its tables need pgvector.
//    Debian bookworm has no pgvector package, so we run a private PostgreSQL 16 + pgvector from the PyPI
//    wheel `pgserver` 0.1.4 (it ships bin/postgres, initdb and vector.so), on a free loopback port.
//  - The wheel has no alembic migrations; they come from the `letta` 0.16.8 sdist (alembic/ + alembic.ini).
//  - The server is launched through a small Python prelude that blocks every non-loopback DNS lookup and
//    connect (so it can never reach outside) and turns `nltk.download("punkt_tab")` (run at startup,
//    it fetches from GitHub) into a no-op.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort, waitFor } from "./net.ts";

export const LETTA_VERSION = "0.16.8";
/** Dependencies are resolved as of the day after 0.16.8 was uploaded (2026-05-14), plus the pins below. */
const UPLOADED_PRIOR_TO = "2026-05-15T00:00:00Z";
/**
 * Versions seen working together here. pydantic 2.14 breaks mcp 1.12.4 (the mcp that the `server` extra's
 * uvicorn==0.29.0 pin leads to): "cannot import name 'eval_type_backport' from 'pydantic._internal._typing_extra'".
 */
const CONSTRAINTS = [
  "pydantic==2.13.5",
  "mcp==1.12.4",
  "fastmcp==2.12.5",
  "uvicorn==0.29.0",
  "sqlalchemy==2.0.54",
  "fastapi==0.136.1",
  "starlette==1.7.0",
  "openai==2.54.0",
  "asyncpg==0.31.0",
  "pg8000==1.31.5",
  "pgvector==0.4.2",
  "pgserver==0.1.4",
];
const PACKAGES = [`letta[server,sqlite]==${LETTA_VERSION}`, "asyncpg", "pg8000", "pgvector", "pgserver==0.1.4"];
/** Bump when the install recipe changes, so cached venvs are rebuilt. */
const INSTALL_KEY = `letta-${LETTA_VERSION}-r1`;

export type Log = (line: string) => void;

export interface LettaInstall {
  venv: string;
  python: string;
  alembicDir: string; // holds alembic.ini and alembic/
  pgBin: string; // pgserver's PostgreSQL 16 bin/ (postgres, initdb, psql)
}

export interface LettaServerOptions {
  cacheDir: string; // persistent; holds the venv (~1.1 GB) and a migrated database template
  workDir: string; // per run: HOME/LETTA_DIR for the server, letta.log, postgres.log
  modelBaseUrl: string; // OpenAI-compatible base URL, including /v1 (e.g. the scripted model's baseUrl)
  log?: Log;
  port?: number;
  readyTimeoutMs?: number; // default 180 s
}

export interface LettaServer {
  baseUrl: string; // http://127.0.0.1:PORT (no /v1)
  /** pid of the running Letta server process (changes after restart()). */
  readonly pid: number;
  /** Model handle to use in POST /v1/agents/ ("openai-proxy/<id>" for a custom OPENAI_BASE_URL). */
  modelHandle(modelId: string): string;
  /** An embedding handle the server accepts (served by modelBaseUrl's /embeddings). */
  embeddingHandle: string;
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  restart(): Promise<void>;
}

const noop: Log = () => {};

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; log: Log; what: string }): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.status !== 0) {
    const tail = out.split("\n").filter((l) => !l.includes("WARNING: Location")).slice(-40).join("\n");
    throw new Error(`${opts.what} failed (exit ${r.status ?? r.signal}): ${cmd} ${args.join(" ")}\n${tail}`);
  }
  return out;
}

async function withLock<T>(lockDir: string, log: Log, fn: () => Promise<T> | T): Promise<T> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // a lock older than 15 minutes is from a dead installer
      const age = Date.now() - (fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 15 * 60_000) { fs.rmSync(lockDir, { recursive: true, force: true }); continue; }
      if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lockDir}`, { cause: err });
      log(`waiting for ${lockDir}`);
      await sleep(2000);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

function installPaths(cacheDir: string): LettaInstall {
  const venv = path.resolve(cacheDir, "letta-venv");
  return {
    venv,
    python: path.join(venv, "bin", "python"),
    alembicDir: path.resolve(cacheDir, "letta-alembic"),
    pgBin: path.join(venv, "lib", "python3.11", "site-packages", "pgserver", "pginstall", "bin"),
  };
}

/**
 * Makes sure the Letta venv, the migrations and PostgreSQL+pgvector are in cacheDir (about 80-90 s and
 * 1.1 GB the first time; instant after). Needs python3.11 with venv, and PyPI.
 */
export async function ensureLettaInstalled(cacheDir: string, log: Log = noop): Promise<LettaInstall> {
  const p = installPaths(cacheDir);
  const marker = path.join(p.venv, ".harness-installed");
  const done = () => fs.existsSync(marker) && fs.readFileSync(marker, "utf8").trim() === INSTALL_KEY;
  if (done()) return p;
  fs.mkdirSync(cacheDir, { recursive: true });
  return withLock(path.resolve(cacheDir, ".letta-install.lock"), log, () => {
    if (done()) return p;
    const t0 = Date.now();
    fs.rmSync(p.venv, { recursive: true, force: true });
    const py = process.env.LETTA_PYTHON ?? "python3.11";
    const python = spawnSync(py, ["--version"]).status === 0 ? py : "python3";
    log(`creating venv ${p.venv} with ${python}`);
    run(python, ["-m", "venv", p.venv], { log, what: "python -m venv" });
    const pip = path.join(p.venv, "bin", "pip");
    // pip >= 26 has --uploaded-prior-to
    run(pip, ["install", "-q", "--upgrade", "pip>=26"], { log, what: "pip upgrade" });
    const constraints = path.join(p.venv, "harness-constraints.txt");
    fs.writeFileSync(constraints, CONSTRAINTS.join("\n") + "\n");
    log(`pip install ${PACKAGES.join(" ")} (about 80 s)`);
    run(pip, ["install", "-q", "--uploaded-prior-to", UPLOADED_PRIOR_TO, "-c", constraints, ...PACKAGES], { log, what: "pip install letta" });

    // alembic migrations live only in the sdist
    const sdistDir = fs.mkdtempSync(path.join(os.tmpdir(), "letta-sdist-"));
    try {
      run(pip, ["download", "-q", "--no-deps", "--no-binary", ":all:", `letta==${LETTA_VERSION}`, "-d", sdistDir], { log, what: "pip download letta sdist" });
      const tgz = path.join(sdistDir, `letta-${LETTA_VERSION}.tar.gz`);
      run("tar", ["-xzf", tgz, "-C", sdistDir, `letta-${LETTA_VERSION}/alembic`, `letta-${LETTA_VERSION}/alembic.ini`], { log, what: "extract migrations" });
      fs.rmSync(p.alembicDir, { recursive: true, force: true });
      fs.cpSync(path.join(sdistDir, `letta-${LETTA_VERSION}`), p.alembicDir, { recursive: true });
    } finally {
      fs.rmSync(sdistDir, { recursive: true, force: true });
    }
    if (!fs.existsSync(path.join(p.pgBin, "postgres"))) throw new Error(`pgserver did not provide ${p.pgBin}/postgres`);
    // the template database is tied to this install
    fs.rmSync(path.resolve(cacheDir, "letta-pgtemplate"), { recursive: true, force: true });
    fs.writeFileSync(marker, INSTALL_KEY + "\n");
    log(`letta ${LETTA_VERSION} installed in ${Math.round((Date.now() - t0) / 1000)} s`);
    return p;
  });
}

// ---------------------------------------------------------------- PostgreSQL (pgserver's 16.2 + pgvector 0.6.2)

interface PgUser { uid: number; gid: number; name: string }

/** PostgreSQL refuses to run as root; as root we run it as the `postgres` user (or `nobody`). */
function pgRunAs(): PgUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ["postgres", "nobody"]) {
    const r = spawnSync("id", ["-u", name], { encoding: "utf8" });
    const g = spawnSync("id", ["-g", name], { encoding: "utf8" });
    if (r.status === 0 && g.status === 0) return { name, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  }
  throw new Error("running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL");
}

function asUser(user: PgUser | undefined, cmd: string, args: string[]): [string, string[]] {
  if (!user) return [cmd, args];
  return ["setpriv", [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--", cmd, ...args]];
}

function chownTree(dir: string, user: PgUser | undefined): void {
  if (user) run("chown", ["-R", `${user.uid}:${user.gid}`, dir], { log: noop, what: "chown" });
}

/** setpriv (util-linux) can ask the kernel to kill its program when our process dies. */
const hasSetpriv = process.platform === "linux" && spawnSync("setpriv", ["--version"], { stdio: "ignore" }).status === 0;

function startPostgresProcess(inst: LettaInstall, dataDir: string, port: number, user: PgUser | undefined, logFile: string): ChildProcess {
  let [cmd, args] = asUser(user, path.join(inst.pgBin, "postgres"), [
    "-D", dataDir, "-h", "127.0.0.1", "-p", String(port), "-k", dataDir,
    // throwaway test data: durability off
    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    "-c", "max_connections=200", "-c", "shared_buffers=64MB",
  ]);
  // A SIGKILLed parent (a test runner's timeout, a killed sandbox) runs no exit handler: the
  // kernel stops postgres instead. setpriv sets that after switching user (a switch clears it).
  if (hasSetpriv) [cmd, args] = cmd === "setpriv" ? [cmd, ["--pdeathsig=KILL", ...args]] : ["setpriv", ["--pdeathsig=KILL", "--", cmd, ...args]];
  const out = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { stdio: ["ignore", out, out] });
  fs.closeSync(out);
  return child;
}

async function waitPgReady(inst: LettaInstall, port: number, child: ChildProcess, logFile: string): Promise<void> {
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}; see ${logFile}`);
    return spawnSync(path.join(inst.pgBin, "pg_isready"), ["-h", "127.0.0.1", "-p", String(port), "-q"]).status === 0;
  }, { timeoutMs: 30_000, intervalMs: 100, what: `postgres on port ${port}` });
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutMs).then(() => true)]);
  if (timedOut) {
    child.kill("SIGKILL");
    await exited;
  }
}

/**
 * A migrated, empty Letta database cluster kept in cacheDir, so that each start copies it (well under a
 * second) instead of running initdb + 167 alembic migrations (about 7 s).
 */
async function ensurePgTemplate(cacheDir: string, inst: LettaInstall, user: PgUser | undefined, log: Log): Promise<string> {
  const tpl = path.resolve(cacheDir, "letta-pgtemplate");
  const ok = path.join(tpl, ".harness-ok");
  if (fs.existsSync(ok)) return tpl;
  return withLock(path.resolve(cacheDir, ".letta-pgtemplate.lock"), log, async () => {
    if (fs.existsSync(ok)) return tpl;
    const t0 = Date.now();
    fs.rmSync(tpl, { recursive: true, force: true });
    fs.mkdirSync(tpl, { recursive: true });
    const dataDir = path.join(tpl, "data");
    chownTree(tpl, user);
    const [icmd, iargs] = asUser(user, path.join(inst.pgBin, "initdb"), ["-D", dataDir, "-U", "letta", "--auth=trust", "-E", "UTF8", "--no-locale"]);
    run(icmd, iargs, { log, what: "initdb" });
    const port = await freePort();
    const logFile = path.join(tpl, "postgres.log");
    if (user) { fs.writeFileSync(logFile, ""); fs.chownSync(logFile, user.uid, user.gid); }
    const pg = startPostgresProcess(inst, dataDir, port, user, logFile);
    try {
      await waitPgReady(inst, port, pg, logFile);
      run(path.join(inst.pgBin, "psql"), ["-h", "127.0.0.1", "-p", String(port), "-U", "letta", "-d", "postgres", "-qc", "CREATE DATABASE letta"], { log, what: "createdb" });
      run(path.join(inst.pgBin, "psql"), ["-h", "127.0.0.1", "-p", String(port), "-U", "letta", "-d", "letta", "-qc", "CREATE EXTENSION IF NOT EXISTS vector"], { log, what: "create extension vector" });
      const home = fs.mkdtempSync(path.join(os.tmpdir(), "letta-alembic-home-"));
      try {
        // alembic uses pg8000, which rejects an sslmode/ssl query parameter: give it a bare URI
        run(path.join(inst.venv, "bin", "alembic"), ["upgrade", "head"], {
          cwd: inst.alembicDir, log, what: "alembic upgrade head",
          env: { ...lettaBaseEnv(home), LETTA_PG_URI: `postgresql://letta@127.0.0.1:${port}/letta` },
        });
      } finally {
        fs.rmSync(home, { recursive: true, force: true });
      }
    } finally {
      await stopProcess(pg, "SIGINT", 15_000);
    }
    fs.writeFileSync(ok, "ok\n");
    log(`letta database template ready in ${Math.round((Date.now() - t0) / 1000)} s`);
    return tpl;
  });
}

// ---------------------------------------------------------------- Letta

/** Python prelude: dies with its parent, loopback-only networking, no NLTK download, then Letta's own start_server(). */
const LAUNCHER = String.raw`
import sys, socket, ipaddress, ctypes, signal
# Killed with its parent even when that parent is SIGKILLed (PR_SET_PDEATHSIG = 1, Linux only).
try: ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except Exception: pass
def _local(h):
    h = h.decode() if isinstance(h, bytes) else str(h)
    if h in ("localhost", "", "None"):
        return True
    try:
        return ipaddress.ip_address(h.split("%")[0]).is_loopback
    except ValueError:
        return False
_gai = socket.getaddrinfo
def getaddrinfo(host, *a, **k):
    if host is not None and not _local(host):
        sys.stderr.write("[letta-harness] blocked DNS lookup of %s\n" % (host,))
        raise socket.gaierror(socket.EAI_NONAME, "letta-harness: no network but loopback")
    return _gai(host, *a, **k)
socket.getaddrinfo = getaddrinfo
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _check(s, addr):
    if s.family in (socket.AF_INET, socket.AF_INET6) and not _local(addr[0]):
        sys.stderr.write("[letta-harness] blocked connect to %s\n" % (addr,))
        raise ConnectionRefusedError("letta-harness: no network but loopback")
def connect(self, addr):
    _check(self, addr)
    return _connect(self, addr)
def connect_ex(self, addr):
    _check(self, addr)
    return _connect_ex(self, addr)
socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
import nltk
nltk.download = lambda *a, **k: True
from letta.server.rest_api.app import start_server
start_server(host=sys.argv[1], port=int(sys.argv[2]))
`;

function lettaBaseEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(LETTA_|OPENAI_|ANTHROPIC_|GEMINI_|GROQ_|MISTRAL_|TOGETHER_|SENTRY_|DD_|OTEL_)/.test(k) || /_proxy$/i.test(k)) delete env[k];
  }
  return {
    ...env,
    HOME: home,
    LETTA_DIR: path.join(home, ".letta"),
    NO_PROXY: "127.0.0.1,localhost,::1",
    no_proxy: "127.0.0.1,localhost,::1",
    PYTHONUNBUFFERED: "1",
    PYTHONWARNINGS: "ignore",
    // all of these are off by default in 0.16.8 (no SENTRY_DSN, datadog disabled, no OTLP endpoint); belt and braces
    LETTA_TELEMETRY_ENABLE_DATADOG: "false",
    DD_TRACE_ENABLED: "false",
    DD_INSTRUMENTATION_TELEMETRY_ENABLED: "false",
    DD_REMOTE_CONFIGURATION_ENABLED: "false",
    OTEL_SDK_DISABLED: "true",
    HF_HUB_OFFLINE: "1",
    DO_NOT_TRACK: "1",
    TIKTOKEN_CACHE_DIR: path.join(home, "tiktoken"),
  };
}

/**
 * As root, PostgreSQL runs as another user, who cannot enter a checkout inside a private (0700)
 * directory such as `mktemp -d` or /root: initdb then fails to load its own libpq. In that case
 * PostgreSQL's files and the database template live in a world-traversable directory of their own.
 */
function pgReachable(inst: LettaInstall, cacheDir: string, user: PgUser | undefined, log: Log): { inst: LettaInstall; pgCacheDir: string } {
  if (!user) return { inst, pgCacheDir: cacheDir };
  // Both must load their libraries and find themselves: `postgres --version` alone exits 0 while
  // complaining "invalid binary … Permission denied", and initdb fails only at loading libpq.
  const works = ["initdb", "postgres"].every((bin) => {
    const [cmd, args] = asUser(user, path.join(inst.pgBin, bin), ["--version"]);
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return r.status === 0 && r.stderr.trim() === "";
  });
  if (works) return { inst, pgCacheDir: cacheDir };
  const shared = path.join(os.tmpdir(), `matrix-agent-bot-${INSTALL_KEY}-pg-${user.uid}`);
  // The binaries find their libraries through RPATH $ORIGIN/../../../pgserver.libs: keep that layout.
  const pginstall = path.dirname(inst.pgBin);
  const sitePackages = path.dirname(path.dirname(pginstall));
  const pgBin = path.join(shared, "pgserver", "pginstall", "bin");
  const marker = path.join(shared, ".copied");
  if (!fs.existsSync(marker)) {
    log(`the ${user.name} user cannot reach ${inst.pgBin} (private directory); copying PostgreSQL to ${shared}`);
    fs.rmSync(shared, { recursive: true, force: true });
    fs.mkdirSync(shared, { recursive: true, mode: 0o755 });
    fs.chmodSync(shared, 0o755);
    fs.cpSync(pginstall, path.join(shared, "pgserver", "pginstall"), { recursive: true });
    fs.cpSync(path.join(sitePackages, "pgserver.libs"), path.join(shared, "pgserver.libs"), { recursive: true });
    run("chmod", ["-R", "a+rX", shared], { log: noop, what: "chmod" });
    fs.writeFileSync(marker, "ok\n");
  }
  return { inst: { ...inst, pgBin }, pgCacheDir: shared };
}

export async function startLettaServer(opts: LettaServerOptions): Promise<LettaServer> {
  const log = opts.log ?? noop;
  const cacheDir = path.resolve(opts.cacheDir);
  const workDir = path.resolve(opts.workDir);
  fs.mkdirSync(workDir, { recursive: true });
  const user = pgRunAs();
  const { inst, pgCacheDir } = pgReachable(await ensureLettaInstalled(cacheDir, log), cacheDir, user, log);
  const tpl = await ensurePgTemplate(pgCacheDir, inst, user, log);

  // PostgreSQL's data lives in its own world-traversable temp dir (workDir may sit under a 0700 mkdtemp).
  const pgRoot = fs.mkdtempSync(path.join(os.tmpdir(), "letta-pg-"));
  fs.chmodSync(pgRoot, 0o755);
  const dataDir = path.join(pgRoot, "data");
  fs.cpSync(path.join(tpl, "data"), dataDir, { recursive: true });
  fs.chmodSync(dataDir, 0o700);
  chownTree(pgRoot, user);
  const pgLog = path.join(pgRoot, "postgres.log");
  fs.writeFileSync(pgLog, "");
  if (user) fs.chownSync(pgLog, user.uid, user.gid);
  const pgPort = await freePort();
  const pg = startPostgresProcess(inst, dataDir, pgPort, user, pgLog);
  await waitPgReady(inst, pgPort, pg, pgLog);
  log(`postgres for letta on 127.0.0.1:${pgPort} (${dataDir})`);

  const port = opts.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const home = path.join(workDir, "home");
  fs.mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...lettaBaseEnv(home),
    // "ssl" in the URI stops db.py from forcing connect_args ssl="require"
    LETTA_PG_URI: `postgresql://letta@127.0.0.1:${pgPort}/letta?ssl=disable`,
    OPENAI_BASE_URL: opts.modelBaseUrl.replace(/\/$/, ""),
    OPENAI_API_KEY: "sk-scripted-test",
  };
  const logFile = path.join(workDir, "letta.log");
  let child: ChildProcess | undefined;
  let stopped = false;

  const startLetta = async (): Promise<void> => {
    const t0 = Date.now();
    const out = fs.openSync(logFile, "a");
    let ready = false;
    const c = spawn(inst.python, ["-c", LAUNCHER, "127.0.0.1", String(port)], { cwd: workDir, env, stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    let pending = "";
    const onData = (buf: Buffer) => {
      fs.writeSync(out, buf);
      pending += buf.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const l of lines) {
        if (l.includes("[letta-harness] blocked")) log(`letta: ${l}`);
        // Once it is up, errors are what tests provoke (unknown agents, failing models): letta.log has them.
        else if (!ready && /ERROR|Traceback|CRITICAL/.test(l)) log(`letta: ${l}`);
      }
    };
    c.stdout?.on("data", onData);
    c.stderr?.on("data", onData);
    c.once("exit", () => fs.closeSync(out));
    await waitFor(async () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`letta exited (${c.exitCode ?? c.signalCode}) during startup; see ${logFile}`);
      const r = await fetch(`${baseUrl}/v1/health/`, { signal: AbortSignal.timeout(2000) });
      return r.ok;
    }, { timeoutMs: opts.readyTimeoutMs ?? 180_000, intervalMs: 250, what: `letta at ${baseUrl} (log: ${logFile})` }).catch((err: unknown) => {
      const e = err as Error;
      if (c.exitCode === null) c.kill("SIGKILL");
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").slice(-30).join("\n") : "";
      e.message += `\n--- letta.log tail ---\n${tail}`;
      throw e;
    });
    ready = true;
    log(`letta ${LETTA_VERSION} ready at ${baseUrl} in ${((Date.now() - t0) / 1000).toFixed(1)} s (pid ${c.pid})`);
  };

  const stopLetta = async (): Promise<void> => {
    if (child) await stopProcess(child, "SIGTERM", 10_000);
  };

  const onExit = () => {
    child?.kill("SIGKILL");
    pg.kill("SIGKILL");
  };
  process.once("exit", onExit);

  try {
    await startLetta();
  } catch (err) {
    await stopProcess(pg, "SIGINT", 10_000);
    fs.rmSync(pgRoot, { recursive: true, force: true });
    process.removeListener("exit", onExit);
    throw err;
  }

  return {
    baseUrl,
    get pid() {
      return child?.pid ?? -1;
    },
    modelHandle: (modelId: string) => `openai-proxy/${modelId}`,
    embeddingHandle: "openai/text-embedding-3-small",
    kill(signal: NodeJS.Signals = "SIGKILL") {
      child?.kill(signal);
    },
    async restart() {
      if (stopped) throw new Error("letta server was stopped");
      await stopLetta();
      await startLetta();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopLetta();
      await stopProcess(pg, "SIGINT", 15_000);
      process.removeListener("exit", onExit);
      if (fs.existsSync(pgLog)) fs.copyFileSync(pgLog, path.join(workDir, "postgres.log"));
      fs.rmSync(pgRoot, { recursive: true, force: true });
    },
  };
}

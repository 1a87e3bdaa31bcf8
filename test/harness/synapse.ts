import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { closeSync, existsSync, openSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import YAML from "yaml";
import { freePort, waitFor } from "./net.ts";

export interface SynapseOptions {
  cacheDir: string; // e.g. <repo>/.cache: holds the venv and the generated config template
  workDir: string; // temp dir for this instance; Synapse's files go to <workDir>/synapse
  rateLimits?: "raised" | "default";
  log?: (line: string) => void;
}
export interface RegisteredUser { userId: string; accessToken: string; password: string; deviceId?: string }
export interface SynapseHandle {
  baseUrl: string; serverName: string; port: number; dataDir: string;
  pid: number; // changes on restart()
  sharedSecret: string; // registration_shared_secret, for registerUser() from other processes
  registerUser(localpart: string, opts?: { admin?: boolean; password?: string }): Promise<RegisteredUser>;
  /** Lifts the message rate limit for one user (for suites that keep Synapse's default limits). */
  exemptFromRateLimits(userId: string): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

export const SYNAPSE_VERSION = "1.163.2";
// Bump when the cached template layout changes so stale caches are not reused.
const TEMPLATE_REV = 2;
const SERVER_NAME = "localhost";
const BOOT_TIMEOUT_MS = 60_000;
const KILL_AFTER_MS = 10_000;
const RAISED_LIMIT_KEYS = [
  "rc_message", "rc_registration", "rc_login.address", "rc_login.account", "rc_login.failed_attempts",
  "rc_joins.local", "rc_joins.remote", "rc_joins_per_room", "rc_invites.per_room", "rc_invites.per_user",
  "rc_invites.per_issuer", "rc_room_creation", "rc_media_create", "rc_presence.per_user",
];
const noop = (): void => {};

/** Runs a command to completion, passing its output lines through `log`. */
function run(cmd: string, args: string[], log: (l: string) => void = noop): Promise<{ code: number; out: string }> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  for (const input of [child.stdout, child.stderr]) {
    createInterface({ input }).on("line", (l) => {
      out += `${l}\n`;
      if (l.trim()) log(l);
    });
  }
  return new Promise((res, rej) => {
    child.on("error", rej);
    child.on("close", (code) => res({ code: code ?? -1, out }));
  });
}

/** Asking Python costs ~0.4 s per suite, so pip's dist-info dir answers when it can. */
async function installedVersion(venv: string, python: string): Promise<string | undefined> {
  const libs = await readdir(join(venv, "lib")).catch(() => [] as string[]);
  const info = `matrix_synapse-${SYNAPSE_VERSION}.dist-info`;
  if (existsSync(python) && libs.some((d) => existsSync(join(venv, "lib", d, "site-packages", info)))) return SYNAPSE_VERSION;
  if (!existsSync(python)) return undefined;
  const r = await run(python, ["-c", "import sys, synapse; sys.stdout.write(synapse.__version__)"]);
  return r.code === 0 ? r.out.trim() : undefined;
}

/** mkdir is atomic, so it serves as a cross-process lock for parallel suites sharing one cache. */
async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const tryLock = (): Promise<boolean> => mkdir(lockDir).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === "EEXIST") return false;
    throw err;
  });
  while (!(await tryLock())) {
    // A crashed holder would block everyone forever; installs never take 15 minutes.
    const age = Date.now() - (await stat(lockDir).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > 15 * 60_000) await rm(lockDir, { recursive: true, force: true });
    else await sleep(500);
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

export async function ensureSynapseInstalled(cacheDir: string, log: (l: string) => void = noop): Promise<string> {
  const venv = resolve(cacheDir, "venv");
  const python = join(venv, "bin", "python");
  if ((await installedVersion(venv, python)) === SYNAPSE_VERSION) return python;
  await mkdir(cacheDir, { recursive: true });
  return withLock(join(cacheDir, "venv.lock"), async () => {
    const found = await installedVersion(venv, python);
    if (found === SYNAPSE_VERSION) return python; // another process installed it meanwhile
    log(found ? `synapse ${found} found, installing ${SYNAPSE_VERSION}` : `installing synapse ${SYNAPSE_VERSION} into ${venv}`);
    if (!existsSync(python)) {
      const r = await run("python3", ["-m", "venv", venv], log);
      if (r.code !== 0) throw new Error(`python3 -m venv ${venv} failed (exit ${r.code}):\n${r.out}`);
    }
    const pip = ["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"];
    const r = await run(python, [...pip, `matrix-synapse==${SYNAPSE_VERSION}`], log);
    if (r.code !== 0) throw new Error(`pip install matrix-synapse==${SYNAPSE_VERSION} failed (exit ${r.code})`);
    const now = await installedVersion(venv, python);
    if (now !== SYNAPSE_VERSION) throw new Error(`synapse not importable after install (found ${now ?? "nothing"})`);
    log(`synapse ${SYNAPSE_VERSION} installed`);
    return python;
  });
}

/**
 * `--generate-config` costs ~1.4 s of Python start-up and creating the SQLite schema
 * ~0.25 s of every first boot, so both happen once per cache and instances copy
 * the result. Sharing secrets and the signing key between throwaway test servers is harmless.
 */
async function ensureTemplate(python: string, cacheDir: string, log: (l: string) => void): Promise<string> {
  const dir = resolve(cacheDir, `synapse-template-${SYNAPSE_VERSION}-r${TEMPLATE_REV}`);
  if (existsSync(join(dir, "homeserver.yaml"))) return dir;
  const t0 = performance.now();
  const tmp = await mkdtemp(join(resolve(cacheDir), "synapse-template-tmp-"));
  try {
    const r = await run(python, [
      "-m", "synapse.app.homeserver", "--server-name", SERVER_NAME, "--config-path", join(tmp, "homeserver.yaml"),
      "--data-directory", tmp, "--generate-config", "--report-stats=no",
    ]);
    if (r.code !== 0) throw new Error(`synapse --generate-config failed (exit ${r.code}):\n${r.out}`);
    const [seedDir, port] = [join(tmp, "seed"), await freePort()];
    await mkdir(seedDir);
    const configPath = await writeConfig(tmp, seedDir, port, false);
    const seed = new SynapseInstance({ python, configPath, dataDir: seedDir, port, secret: "", log });
    await seed.boot();
    await seed.stop(); // a clean shutdown checkpoints the WAL, so the .db file alone is complete
    await rename(join(seedDir, "homeserver.db"), join(tmp, "homeserver.db"));
    await rm(seedDir, { recursive: true });
    await rename(tmp, dir).catch((err: unknown) => {
      // Lost the race against a parallel suite: its template is just as good.
      if (!existsSync(join(dir, "homeserver.yaml"))) throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  log(`synapse: generated config and database template in ${Math.round(performance.now() - t0)}ms`);
  return dir;
}

async function writeConfig(templateDir: string, dataDir: string, port: number, raised: boolean): Promise<string> {
  const doc = YAML.parseDocument(await readFile(join(templateDir, "homeserver.yaml"), "utf8"));
  const keyFile = `${SERVER_NAME}.signing.key`;
  await copyFile(join(templateDir, keyFile), join(dataDir, keyFile));
  await writeFile(join(dataDir, "log.config.yaml"), YAML.stringify({
    version: 1,
    formatters: { precise: { format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" } },
    // Plain FileHandler: the generated buffered handler delays lines a failure report needs.
    handlers: { file: { class: "logging.FileHandler", formatter: "precise", filename: join(dataDir, "homeserver.log") } },
    root: { level: "WARNING", handlers: ["file"] },
    disable_existing_loggers: false,
  }));
  // Only the client resource (no federation), and no ::1: not every sandbox has IPv6.
  const resources = [{ names: ["client"], compress: false }];
  const settings: Record<string, unknown> = {
    server_name: SERVER_NAME, public_baseurl: `http://127.0.0.1:${port}/`,
    listeners: [{ port, bind_addresses: ["127.0.0.1"], type: "http", tls: false, x_forwarded: false, resources }],
    database: { name: "sqlite3", args: { database: join(dataDir, "homeserver.db") } },
    pid_file: join(dataDir, "homeserver.pid"), log_config: join(dataDir, "log.config.yaml"),
    media_store_path: join(dataDir, "media_store"), signing_key_path: join(dataDir, keyFile),
    enable_registration: false, report_stats: false, suppress_key_server_warning: true, trusted_key_servers: [],
    presence: { enabled: false },
    bcrypt_rounds: 4, // the default 12 costs ~0.25 s per registration/login; test passwords need no protection
    // Pushes go to a test's push gateway on loopback (test/harness/push-gateway.ts), which the
    // default ip_range_blacklist refuses; only this one address is let through.
    ip_range_whitelist: ["127.0.0.1/32"],
    push: { enabled: true, include_content: true },
  };
  if (raised) for (const k of RAISED_LIMIT_KEYS) settings[k] = { per_second: 1000, burst_count: 1000 };
  for (const [k, v] of Object.entries(settings)) doc.setIn(k.split("."), doc.createNode(v));
  const path = join(dataDir, "homeserver.yaml");
  await writeFile(path, String(doc));
  return path;
}

/** Last `n` lines written after byte `from`, so a report shows only the failing boot. */
async function tail(path: string, n: number, from: number): Promise<string> {
  const buf = await readFile(path).catch(() => Buffer.alloc(0));
  return buf.subarray(from).toString("utf8").split("\n").filter((l) => l.length > 0).slice(-n).join("\n");
}

const sizeOf = async (path: string): Promise<number> => (await stat(path).catch(() => ({ size: 0 }))).size;

// A crashed or killed test run must not leave Synapse daemons behind. An "exit"
// handler misses signals and runner timeouts, so the kernel does it instead: the
// child asks for SIGKILL when its parent dies (PR_SET_PDEATHSIG = 1, Linux only).
const BOOTSTRAP = [
  "import ctypes, signal",
  "try: ctypes.CDLL(None).prctl(1, signal.SIGKILL)",
  "except Exception: pass",
  "from synapse.app.homeserver import main",
  "main()",
].join("\n");

class SynapseInstance implements SynapseHandle {
  readonly serverName = SERVER_NAME;
  readonly baseUrl: string;
  readonly port: number;
  readonly dataDir: string;
  readonly stdoutPath: string;
  readonly #python: string;
  readonly #configPath: string;
  readonly sharedSecret: string;
  readonly #log: (l: string) => void;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #adminToken: string | undefined;

  constructor(o: { python: string; configPath: string; dataDir: string; port: number; secret: string; log: (l: string) => void }) {
    [this.#python, this.#configPath, this.#log] = [o.python, o.configPath, o.log];
    [this.port, this.dataDir, this.sharedSecret] = [o.port, o.dataDir, o.secret];
    this.baseUrl = `http://127.0.0.1:${o.port}`;
    this.stdoutPath = join(o.dataDir, "synapse.stdout.log");
  }

  get pid(): number {
    return this.#child?.pid ?? -1;
  }

  async boot(): Promise<void> {
    const t0 = performance.now();
    const logPath = join(this.dataDir, "homeserver.log");
    const [outFrom, logFrom] = [await sizeOf(this.stdoutPath), await sizeOf(logPath)];
    // Appending keeps the output of runs before a restart for post-mortems.
    const fd = openSync(this.stdoutPath, "a");
    const child = spawn(this.#python, ["-c", BOOTSTRAP, "-c", this.#configPath], {
      cwd: this.dataDir, stdio: ["ignore", fd, fd], env: { ...process.env, PYTHONUNBUFFERED: "1" },
    });
    closeSync(fd);
    this.#child = child;
    let exitInfo: string | undefined;
    this.#exited = new Promise((res) => {
      const done = (info: string): void => {
        exitInfo ??= info;
        res();
      };
      child.once("error", (err) => done(`spawn error ${err.message}`));
      child.once("exit", (code, signal) => done(signal ? `signal ${signal}` : `exit code ${String(code)}`));
    });
    let outcome: "ok" | "exited" | "timeout";
    try {
      outcome = await waitFor(async () => {
        if (exitInfo) return "exited" as const;
        const r = await fetch(`${this.baseUrl}/health`, { signal: AbortSignal.timeout(2000) });
        return r.ok ? ("ok" as const) : false;
      }, { timeoutMs: BOOT_TIMEOUT_MS, intervalMs: 25, what: "synapse /health" });
    } catch {
      outcome = "timeout";
      await this.stop();
    }
    if (outcome !== "ok") {
      const what = outcome === "exited" ? `exited early (${exitInfo ?? "?"})` : `did not answer /health in ${BOOT_TIMEOUT_MS}ms`;
      let msg = `Synapse on port ${this.port} ${what}. Last lines of ${this.stdoutPath}:\n${await tail(this.stdoutPath, 30, outFrom)}`;
      // Once running, Synapse redirects stdout into its log, so a hang is only visible there.
      const logTail = await tail(logPath, 30, logFrom);
      if (outcome === "timeout" && logTail) msg += `\nLast lines of ${logPath}:\n${logTail}`;
      throw new Error(msg);
    }
    this.#log(`synapse: pid ${child.pid ?? "?"} ready on ${this.baseUrl} in ${Math.round(performance.now() - t0)}ms`);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
    await this.#exited;
    clearTimeout(killer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.boot();
  }

  registerUser(localpart: string, opts?: { admin?: boolean; password?: string }): Promise<RegisteredUser> {
    return registerUser(this.baseUrl, this.sharedSecret, localpart, opts);
  }

  async exemptFromRateLimits(userId: string): Promise<void> {
    this.#adminToken ??= (await this.registerUser("harness-admin", { admin: true })).accessToken;
    const url = `${this.baseUrl}/_synapse/admin/v1/users/${encodeURIComponent(userId)}/override_ratelimit`;
    await jsonRequest("POST", url, { messages_per_second: 0, burst_count: 0 }, this.#adminToken);
  }
}

/** Shared-secret registration; standalone so test files in other processes can create users. */
export async function registerUser(
  baseUrl: string, sharedSecret: string, localpart: string, opts: { admin?: boolean; password?: string } = {},
): Promise<RegisteredUser> {
  const url = `${baseUrl}/_synapse/admin/v1/register`;
  const password = opts.password ?? `${localpart}-password`;
  const admin = opts.admin ?? false;
  const { nonce } = await jsonRequest<{ nonce: string }>("GET", url);
  const mac = createHmac("sha1", sharedSecret)
    .update(`${nonce}\0${localpart}\0${password}\0${admin ? "admin" : "notadmin"}`).digest("hex");
  type Reply = { user_id: string; access_token: string; device_id?: string };
  const r = await jsonRequest<Reply>("POST", url, { nonce, username: localpart, password, admin, mac });
  return { userId: r.user_id, accessToken: r.access_token, password, deviceId: r.device_id };
}

async function jsonRequest<T>(method: string, url: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${new URL(url).pathname} failed: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

export async function startSynapse(opts: SynapseOptions): Promise<SynapseHandle> {
  const log = opts.log ?? noop;
  const python = await ensureSynapseInstalled(opts.cacheDir, log);
  const templateDir = await ensureTemplate(python, opts.cacheDir, log);
  const dataDir = resolve(opts.workDir, "synapse");
  await mkdir(dataDir, { recursive: true });
  // An existing database means the caller reuses a work dir on purpose: keep its data.
  if (!existsSync(join(dataDir, "homeserver.db"))) await copyFile(join(templateDir, "homeserver.db"), join(dataDir, "homeserver.db"));
  type Template = { registration_shared_secret: string };
  const secret = (YAML.parse(await readFile(join(templateDir, "homeserver.yaml"), "utf8")) as Template).registration_shared_secret;
  // freePort() releases the port before Synapse binds it, so a parallel suite may
  // steal it; retry with a fresh port in that (rare) case.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configPath = await writeConfig(templateDir, dataDir, port, opts.rateLimits !== "default");
    const inst = new SynapseInstance({ python, configPath, dataDir, port, secret, log });
    try {
      await inst.boot();
      return inst;
    } catch (err) {
      if (attempt >= 3 || !/Address already in use/i.test(String(err))) throw err;
      log(`synapse: port ${port} was taken, retrying`);
    }
  }
}

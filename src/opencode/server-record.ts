// The embedded `opencode serve` must never outlive the bot unnoticed. Without a sandbox it runs
// detached (embedded-server.ts), so that a bot killed with -9 does not take the turn in flight
// down with it; the record in the bot's database is how the next start finds that server again:
//   - adopt: the pid is still the process that was spawned (same start time), an `opencode serve`
//     on the recorded port, started with the same settings, and it answers its health check with
//     the recorded password. No second server; the turn reconciliation follows the running turn.
//   - reap: ours, but unhealthy or started with other settings: SIGTERM, SIGKILL after 5 s.
//   - start fresh: nothing recorded, the process is gone, or its pid is another process now.
// A graceful stop stops the server (adopted or not) and deletes the record. In a bubblewrap
// sandbox --die-with-parent takes the server along with the bot, so its record finds it gone.
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { addSecret, type Logger } from "../log.ts";
import type { Db } from "../store/db.ts";
import { embeddedLaunch, followFile, resolveOpencodeBinary, restartEmbeddedOpencode, startEmbeddedOpencode, type EmbeddedServer, type EmbeddedServerOptions } from "./embedded-server.ts";
import { generateOpencodeAuth, type OpencodeAuth } from "./server-auth.ts";
import { probeOpencode } from "./server-check.ts";

export interface ServerRecord {
  pid: number;
  procStart: string | null;
  port: number;
  username: string;
  password: string;
  binary: string;
  version: string | null;
  sandboxed: boolean;
  workspace: string;
  spec: string;
  logFile: string | null;
  startedAt: number;
}

interface RawRecord {
  pid: number; proc_start: string | null; port: number; username: string; password: string; binary: string; version: string | null;
  sandboxed: number; workspace: string; spec: string; log_file: string | null; started_at: number;
}

/** The row of an embedded server in the bot's database (the bot starts one, named "opencode"). */
export class ServerRecordStore {
  private readonly db: Db;
  private readonly name: string;

  constructor(db: Db, name = "opencode") {
    this.db = db;
    this.name = name;
  }

  get(): ServerRecord | undefined {
    const r = this.db.prepare("SELECT * FROM embedded_server WHERE name = ?").get(this.name) as RawRecord | undefined;
    if (!r) return undefined;
    return {
      pid: r.pid, procStart: r.proc_start, port: r.port, username: r.username, password: r.password, binary: r.binary, version: r.version,
      sandboxed: r.sandboxed === 1, workspace: r.workspace, spec: r.spec, logFile: r.log_file, startedAt: r.started_at,
    };
  }

  put(r: ServerRecord): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO embedded_server (name, pid, proc_start, port, username, password, binary, version, sandboxed, workspace, spec, log_file, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(this.name, r.pid, r.procStart, r.port, r.username, r.password, r.binary, r.version, r.sandboxed ? 1 : 0, r.workspace, r.spec, r.logFile, r.startedAt);
  }

  setVersion(version: string): void {
    this.db.prepare("UPDATE embedded_server SET version = ? WHERE name = ?").run(version, this.name);
  }

  delete(): void {
    this.db.prepare("DELETE FROM embedded_server WHERE name = ?").run(this.name);
  }
}

/** A living process as /proc shows it: its arguments, its start time, whether it leads its process group. Undefined when gone (or a zombie). */
export function procInfo(pid: number): { args: string[]; start: string; leader: boolean } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name in parentheses (which may hold spaces): state, ppid, pgrp, … field 22 starttime.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (f[0] === "Z" || f[0] === "X") return undefined;
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return { args, start: f[19] ?? "", leader: Number(f[2]) === pid };
  } catch {
    return undefined;
  }
}

/** `opencode … serve … --port <port>`: what the bot runs (directly, or as bwrap's command). */
export function isOpencodeServe(args: string[], port: number): boolean {
  return args.some((a) => path.basename(a).includes("opencode")) && args.includes("serve") && args.some((a, i) => a === "--port" && args[i + 1] === String(port));
}

const STOP_GRACE_MS = 5000;
/** How long a recorded server that refuses connections or times out is asked again before it is reaped. */
const HEALTH_BUDGET_MS = 8000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A recorded server that is not the bot's child: signalled by pid, its end seen in /proc. */
function recordedServer(rec: ServerRecord, onLog?: (line: string) => void): EmbeddedServer {
  const alive = (): boolean => {
    const p = procInfo(rec.pid);
    return p !== undefined && (rec.procStart === null || p.start === rec.procStart);
  };
  // A detached server leads its process group: the commands the agent runs go with it.
  const leader = procInfo(rec.pid)?.leader ?? false;
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (alive()) process.kill(leader ? -rec.pid : rec.pid, sig);
    } catch { /* gone meanwhile */ }
  };
  let unfollow: (() => void) | undefined;
  if (rec.logFile && onLog) {
    let size = 0;
    try { size = statSync(rec.logFile).size; } catch { /* no output yet */ }
    unfollow = followFile(rec.logFile, size, onLog);
  }
  // As for a server the bot spawned: a bot that exits without stopping it does not leave it running.
  const killOnExit = (): void => signal("SIGTERM");
  process.once("exit", killOnExit);
  const exited = new Promise<number | null>((resolve) => {
    const timer = setInterval(() => {
      if (alive()) return;
      clearInterval(timer);
      process.removeListener("exit", killOnExit);
      unfollow?.();
      resolve(null);
    }, 250);
    timer.unref();
  });
  return {
    url: `http://127.0.0.1:${rec.port}`,
    pid: rec.pid,
    exited,
    kill: signal,
    stop: async () => {
      signal("SIGTERM");
      signal("SIGCONT"); // a stopped (SIGSTOP) server acts on the TERM only once it runs again
      if (!(await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]))) {
        signal("SIGKILL");
        await exited;
      }
    },
  };
}

type Verdict = { act: "adopt"; version: string } | { act: "reap" | "gone"; why: string };

/** The decision on a server the last run recorded (see the top of this file). */
async function judge(rec: ServerRecord, opts: EmbeddedServerOptions, spec: string): Promise<Verdict> {
  const p = procInfo(rec.pid);
  if (!p) return { act: "gone", why: "its process has ended" };
  if ((rec.procStart !== null && p.start !== rec.procStart) || !isOpencodeServe(p.args, rec.port)) return { act: "gone", why: "its pid belongs to another process now" };
  if (rec.binary !== opts.binary) return { act: "reap", why: "started from another opencode binary" };
  if (rec.sandboxed !== (opts.sandbox !== undefined)) return { act: "reap", why: `started ${rec.sandboxed ? "in" : "without"} a sandbox` };
  if (rec.workspace !== opts.cwd) return { act: "reap", why: "started in another workspace" };
  if (rec.spec !== spec) return { act: "reap", why: "started with other settings (environment, sandbox layout or binary)" };
  const end = Date.now() + HEALTH_BUDGET_MS;
  for (;;) {
    const probe = await probeOpencode(`http://127.0.0.1:${rec.port}`, { username: rec.username, password: rec.password });
    if (probe.ok) return { act: "adopt", version: probe.version };
    // Refused credentials or a foreign answer will not change; a busy or starting server may.
    if (probe.kind !== "unreachable" || Date.now() > end) return { act: "reap", why: `unhealthy (${probe.kind}: ${probe.problem})` };
    await sleep(500);
  }
}

/** How the server is started, but for port and password: a record with another spec is another server. */
function specOf(opts: EmbeddedServerOptions, binary: string): string {
  const { command, args, env } = embeddedLaunch({ ...opts, port: 0, auth: undefined }, binary);
  const st = statSync(binary); // an updated binary at the same path is another server
  return createHash("sha256").update(JSON.stringify([command, args, Object.entries(env).sort(), opts.cwd, st.size, st.mtimeMs])).digest("hex");
}

/** A free loopback port, chosen before the spawn: the identity check looks for it in the command line. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export type KeeperOptions = Omit<EmbeddedServerOptions, "auth" | "port" | "logFile" | "onSpawn">;

/** Starts (or adopts) the embedded server, restarts and stops it, and keeps its record true. */
export class EmbeddedServerKeeper {
  private readonly store: ServerRecordStore;
  private readonly log: Logger;
  private readonly logFile: string | undefined;
  private opts: EmbeddedServerOptions | undefined;
  private current: EmbeddedServer | undefined;

  constructor(d: { db: Db; log: Logger }) {
    this.store = new ServerRecordStore(d.db);
    this.log = d.log;
    // A detached server writes to a file beside the database (no pipe outlives the bot); an
    // in-memory database keeps no record, so its server is not detached either.
    this.logFile = d.db.memory ? undefined : path.join(path.dirname(path.resolve(d.db.name)), "opencode-server.log");
  }

  get server(): EmbeddedServer {
    if (!this.current) throw new Error("the embedded OpenCode server has not been started");
    return this.current;
  }

  async start(base: KeeperOptions): Promise<{ server: EmbeddedServer; auth: Required<OpencodeAuth>; adopted: boolean }> {
    const begun = Date.now();
    const binary = base.binary ?? resolveOpencodeBinary();
    const opts: EmbeddedServerOptions = { ...base, binary, ...(base.sandbox || !this.logFile ? {} : { logFile: this.logFile }) };
    const spec = specOf(opts, binary);
    const rec = this.store.get();
    let previous = "none";
    if (rec) {
      const verdict = await judge(rec, opts, spec);
      const was = { pid: rec.pid, url: `http://127.0.0.1:${rec.port}`, startedAt: new Date(rec.startedAt).toISOString() };
      if (verdict.act === "adopt") {
        const auth = { username: rec.username, password: rec.password };
        addSecret(auth.password);
        this.opts = { ...opts, auth, port: rec.port, onSpawn: (pid) => this.record(pid, spec) };
        this.current = recordedServer(rec, opts.onLog);
        if (verdict.version !== rec.version) this.store.setVersion(verdict.version);
        this.log.info({ ...was, version: verdict.version, sandbox: rec.sandboxed ? "bwrap" : "none", tookMs: Date.now() - begun }, "adopted embedded OpenCode server");
        return { server: this.current, auth, adopted: true };
      }
      if (verdict.act === "reap") {
        await recordedServer(rec).stop();
        this.log.info({ ...was, reason: verdict.why, tookMs: Date.now() - begun }, "reaped embedded OpenCode server");
      } else {
        this.log.info({ ...was, reason: verdict.why }, "the embedded OpenCode server of the last run is gone");
      }
      previous = verdict.act === "reap" ? "reaped" : "gone";
      this.store.delete();
    }
    // A fresh server gets a fresh password: nothing else knows it, so no other local process can drive it.
    const auth = generateOpencodeAuth();
    addSecret(auth.password);
    this.opts = { ...opts, auth, port: await freePort(), onSpawn: (pid) => this.record(pid, spec) };
    this.current = await this.launch(() => startEmbeddedOpencode(this.opts as EmbeddedServerOptions));
    this.log.info({ url: this.current.url, pid: this.current.pid, sandbox: opts.sandbox ? "bwrap" : "none", detached: opts.logFile !== undefined, previous, tookMs: Date.now() - begun }, "started embedded OpenCode server");
    return { server: this.current, auth, adopted: false };
  }

  /** `!oc restart-server`: stops the server (adopted or not) and starts it on the same port with the same password. */
  async restart(): Promise<{ oldPid: number; server: EmbeddedServer }> {
    const old = this.server;
    this.current = await this.launch(() => restartEmbeddedOpencode(old, this.opts as EmbeddedServerOptions));
    return { oldPid: old.pid, server: this.current };
  }

  /** A graceful stop: the server goes with the bot, and so does its record. */
  async stop(): Promise<void> {
    try {
      await this.current?.stop();
    } finally {
      this.store.delete();
    }
  }

  private async launch(start: () => Promise<EmbeddedServer>): Promise<EmbeddedServer> {
    let server: EmbeddedServer;
    try {
      server = await start();
    } catch (err) {
      this.store.delete(); // the failed process was killed: nothing to adopt or reap
      throw err;
    }
    const probe = await probeOpencode(server.url, this.opts?.auth);
    if (probe.ok) this.store.setVersion(probe.version);
    return server;
  }

  /** Written at the spawn, before the server is ready: a bot killed while it starts must find it too. */
  private record(pid: number, spec: string): void {
    const o = this.opts as EmbeddedServerOptions & { auth: Required<OpencodeAuth> };
    this.store.put({
      pid, procStart: procInfo(pid)?.start ?? null, port: o.port ?? 0, username: o.auth.username, password: o.auth.password, binary: o.binary ?? "",
      version: null, sandboxed: o.sandbox !== undefined, workspace: o.cwd, spec, logFile: o.logFile ?? null, startedAt: Date.now(),
    });
  }
}

import { spawn, type ChildProcess } from "node:child_process";
import { Readable, Writable } from "node:stream";
import { client, ndJsonStream, PROTOCOL_VERSION, type ClientConnection, type ClientContext, type RequestPermissionRequest, type RequestPermissionResponse, type SessionNotification } from "@agentclientprotocol/sdk";
import type { Logger } from "../log.ts";
import { bwrapArgs, type SandboxLayout } from "../process/sandbox.ts";

export interface AgentProcessOptions {
  name: string;
  command: string;
  args: string[];
  cwd: string;
  /** The whole environment of the agent (childEnv: the agent must never see the bot's secrets). */
  env: Record<string, string>;
  /** Run inside bubblewrap with this view of the machine (the bot's state hidden); undefined: as it is. */
  sandbox?: SandboxLayout | undefined;
  log: Logger;
  onUpdate: (n: SessionNotification) => void;
  onPermission: (req: RequestPermissionRequest, signal: AbortSignal) => Promise<RequestPermissionResponse>;
  /** The process ended on its own (not by `stop`); it is restarted after a backoff. */
  onExit: (why: string) => void;
}

/** Backoff between restarts of a process that keeps dying; reset once one has lived a minute. */
const firstDelayMs = 1000;
const maxDelayMs = 30_000;
const stableMs = 60_000;

/**
 * One agent process speaking ACP over stdio, serving every session of its agent. Started on
 * first use (or by `start`), restarted with backoff when it dies; a new process knows none of
 * the sessions of the old one (`generation` tells them apart).
 */
export class AgentProcess {
  private readonly o: AgentProcessOptions;
  private child: ChildProcess | undefined;
  private conn: ClientConnection | undefined;
  private starting: Promise<ClientContext> | undefined;
  private stopping = false;
  private delayMs = firstDelayMs;
  private restartTimer: NodeJS.Timeout | undefined;
  generation = 0;
  loadSession = false;
  lastError: string | undefined;
  agentInfo: string | undefined;

  constructor(o: AgentProcessOptions) {
    this.o = o;
  }

  get running(): boolean {
    return this.conn !== undefined && !this.conn.signal.aborted;
  }

  /** The connection, once the agent has answered `initialize`; starts the process if none runs. */
  ready(): Promise<ClientContext> {
    if (this.stopping) return Promise.reject(new Error("the bot is stopping"));
    if (this.conn && !this.conn.signal.aborted) return Promise.resolve(this.conn.agent);
    this.starting ??= this.spawn().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async spawn(): Promise<ClientContext> {
    const { o } = this;
    const startedAt = Date.now();
    const [command, args] = o.sandbox ? ["bwrap", bwrapArgs(o.sandbox, o.command, o.args)] : [o.command, o.args];
    const child = spawn(command, args, { cwd: o.cwd, env: o.env, stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    const gen = ++this.generation;
    const failedToSpawn = new Promise<never>((_, reject) => child.once("error", (err) => reject(new Error(`could not start \`${o.command}\`: ${err.message}`))));
    failedToSpawn.catch(() => undefined);
    let stderrTail = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-2000);
      for (const line of chunk.split("\n")) if (line.trim()) o.log.debug({ agent: o.name, line }, "agent stderr");
    });
    const stream = ndJsonStream(Writable.toWeb(child.stdin as Writable) as WritableStream<Uint8Array>, Readable.toWeb(child.stdout as Readable) as ReadableStream<Uint8Array>);
    const conn = client()
      .onNotification("session/update", (ctx) => o.onUpdate(ctx.params))
      .onRequest("session/request_permission", (ctx) => o.onPermission(ctx.params, ctx.signal))
      .connect(stream);
    child.once("exit", (code, signal) => {
      conn.close();
      if (this.child === child) this.child = undefined;
      if (this.conn === conn) this.conn = undefined;
      if (this.stopping) return;
      const why = signal ? `killed by ${signal}` : `exit code ${code}`;
      const last = stderrTail.trim().split("\n").pop();
      this.lastError = `${o.name} stopped (${why})${last ? `: ${last.slice(0, 200)}` : ""}`;
      o.log.warn({ agent: o.name, code, signal, stderr: stderrTail.slice(-500) }, "ACP agent process ended");
      if (gen === this.generation && this.conn === undefined) this.scheduleRestart(Date.now() - startedAt);
      o.onExit(why);
    });
    try {
      const init = await Promise.race([
        conn.agent.request("initialize", { protocolVersion: PROTOCOL_VERSION, clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false } }),
        failedToSpawn,
        conn.closed.then(() => Promise.reject(new Error(`${o.name} exited before it was ready${stderrTail ? `: ${stderrTail.trim().split("\n").pop()?.slice(0, 200)}` : ""}`))),
      ]);
      this.loadSession = init.agentCapabilities?.loadSession === true;
      this.agentInfo = (init as { agentInfo?: { name?: string; version?: string } }).agentInfo?.version;
      this.conn = conn;
      this.lastError = undefined;
      o.log.info({ agent: o.name, pid: child.pid, loadSession: this.loadSession, ms: Date.now() - startedAt }, "ACP agent ready");
      return conn.agent;
    } catch (err) {
      this.lastError = (err as Error).message;
      conn.close();
      child.kill("SIGKILL");
      throw err;
    }
  }

  private scheduleRestart(livedMs: number): void {
    if (livedMs > stableMs) this.delayMs = firstDelayMs;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, maxDelayMs);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.stopping && !this.running) this.ready().catch((err: unknown) => this.o.log.warn({ err, agent: this.o.name }, "restarting the ACP agent failed"));
    }, delay);
    this.restartTimer.unref();
  }

  /** Ends the process (and with it every session's turn); nothing restarts it. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    this.conn?.close();
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  }
}

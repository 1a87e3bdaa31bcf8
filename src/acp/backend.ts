import type { ClientContext, RequestPermissionRequest, RequestPermissionResponse, SessionNotification } from "@agentclientprotocol/sdk";
import { titleFrom, type AgentBackend, type BackendHealth, type PromptRequest } from "../commands/backend.ts";
import type { CommandSpec } from "../commands/types.ts";
import type { Logger } from "../log.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { AgentProcess } from "./agent-process.ts";
import type { AcpPermissions } from "./permissions.ts";
import type { TurnEngine } from "../turns/engine.ts";
import { TurnLanes } from "../turns/lanes.ts";
import { TurnQueue, type QueuedTurn } from "../turns/queue.ts";
import type { AcpTurnStore } from "./store.ts";
import { runTurn, type ActiveTurn, type TurnJob } from "./turn.ts";

export interface AcpBackendDeps {
  name: string;
  prefix: string;
  cwd: string;
  command: string;
  db: Db;
  inbox: Inbox;
  threads: ThreadStore;
  turns: AcpTurnStore;
  sender: MatrixSender;
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
  engine: TurnEngine;
}

/** What a waiting prompt needs to start its turn (its row holds the rest). */
interface QueuedPrompt {
  turnId: number;
  /** What is sent to the agent (attributed: "[Alice] …"). */
  text: string;
}

const threadKey = (roomId: string, root: string): string => `${roomId}\u0000${root}`;

/**
 * An agent that speaks the Agent Client Protocol, behind its own prefix: a thread is an ACP
 * session, one prompt at a time per thread (later ones wait, `🕐 N`). The agent process is
 * shared by all sessions; when it (or the bot) restarts, a thread's next prompt resumes its
 * session with `session/load`, or starts a new one and says so.
 */
export class AcpBackend implements AgentBackend {
  readonly name: string;
  readonly prefix: string;
  readonly promptSummary: string;
  readonly commands: CommandSpec[];
  readonly d: AcpBackendDeps;
  process!: AgentProcess;
  permissions!: AcpPermissions;
  /** One turn at a time per thread; the prompts waiting for it are in the durable queue. */
  private readonly lanes: TurnLanes<QueuedPrompt>;
  /** Turns in flight by session id: where the agent's updates and permission requests go. */
  private readonly active = new Map<string, ActiveTurn>();
  /** Sessions the current agent process knows: created or loaded in its generation. */
  private readonly known = new Map<string, number>();
  private isStopping = false;

  constructor(deps: AcpBackendDeps, commandsOf: (backend: AcpBackend) => CommandSpec[] = () => []) {
    this.d = deps;
    this.name = deps.name;
    this.prefix = deps.prefix;
    this.promptSummary = `starts a session with the ${deps.name} agent (ACP); the answer streams into a thread on your message`;
    this.commands = commandsOf(this);
    this.lanes = new TurnLanes(new TurnQueue<QueuedPrompt>(deps.db, deps.name), (item) => this.runQueued(item), deps.log);
  }

  /** Wires the process and the permission desk, which call back into the backend. */
  wire(process: AgentProcess, permissions: AcpPermissions): void {
    this.process = process;
    this.permissions = permissions;
  }

  /** Whether a thread's session is answering, and how many prompts wait. */
  load(thread: ThreadRow): { busy: boolean; queued: number } {
    const key = threadKey(thread.roomId, thread.rootEventId);
    return { busy: this.lanes.isBusy(key), queued: this.lanes.queue.count(key) };
  }

  async startThread(req: PromptRequest, root: string): Promise<void> {
    const agent = await this.process.ready();
    const { sessionId } = await agent.request("session/new", { cwd: this.d.cwd, mcpServers: [] });
    this.known.set(sessionId, this.process.generation);
    const text = await this.attributed(req);
    const queueId = this.d.db.transaction(() => {
      this.d.threads.insert({ roomId: req.roomId, rootEventId: root, backend: this.name, sessionId, title: titleFrom(req.text, `${this.name} session`), startedBy: req.sender, directory: this.d.cwd });
      return this.record(req, root, sessionId, text);
    })();
    this.submit(threadKey(req.roomId, root), queueId);
  }

  async followUp(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    const text = await this.attributed(req);
    const queueId = this.d.db.transaction(() => {
      this.d.threads.touch(thread.roomId, thread.rootEventId);
      return this.record(req, thread.rootEventId, thread.sessionId, text);
    })();
    return { queued: this.submit(threadKey(thread.roomId, thread.rootEventId), queueId) };
  }

  /** The turn row, its queue entry and the inbox mark commit together: a restart finds the prompt waiting, or running, never twice. */
  private record(req: PromptRequest, root: string, sessionId: string, text: string): number {
    const row = this.d.turns.add({ agent: this.name, roomId: req.roomId, rootEventId: root, sessionId, promptEventId: req.eventId, promptedBy: req.sender }, "queued");
    this.d.inbox.markDone(req.eventId);
    return this.lanes.queue.add({ key: threadKey(req.roomId, root), roomId: req.roomId, rootEventId: root }, { roomId: req.roomId, eventId: req.eventId, sender: req.sender, text: req.text }, { turnId: row.id, text });
  }

  private async attributed(req: PromptRequest): Promise<string> {
    const name = await this.d.displayName(req.roomId, req.sender).catch(() => req.sender);
    const files = req.files?.length ? ` (attachments are not passed to ${this.name}: ${req.files.map((f) => f.filename).join(", ")})` : "";
    return `[${name}] ${req.text}${files}`;
  }

  /** Starts the thread's lane, or leaves the prompt queued behind its turn. Returns the queue position (0 = now). */
  private submit(key: string, queueId: number): number {
    return this.lanes.kick(key) ? 0 : this.lanes.queue.position(key, queueId);
  }

  private async runQueued(item: QueuedTurn<QueuedPrompt>): Promise<void> {
    const row = this.d.turns.get(item.payload.turnId);
    const thread = this.d.threads.get(item.roomId, item.rootEventId);
    if (row?.status !== "queued") return;
    if (!thread) {
      this.d.turns.finish(row.id, "failed", { stopReason: "forgotten" });
      return;
    }
    const job: TurnJob = { row, thread, text: item.payload.text, target: { roomId: item.roomId, threadRoot: item.rootEventId, replyTo: item.req.eventId } };
    try {
      await runTurn(
        {
          agentName: this.name, engine: this.d.engine, turns: this.d.turns, log: this.d.log,
          session: (j, note) => this.session(j, note),
          attach: (sessionId, turn) => (turn ? this.active.set(sessionId, turn) : this.active.delete(sessionId)),
          stopping: () => this.isStopping,
          explain: (err) => this.explain(err),
        },
        job,
      );
    } catch (err) {
      this.d.log.error({ err, agent: this.name }, "ACP turn failed");
      this.d.turns.finish(row.id, "failed");
    }
  }

  /** A session the running process knows for the job's thread: loaded again after a restart, else new. */
  private async session(job: TurnJob, note: (text: string) => void): Promise<{ agent: ClientContext; sessionId: string }> {
    const agent = await this.process.ready();
    const thread = this.d.threads.get(job.thread.roomId, job.thread.rootEventId) ?? job.thread;
    if (this.known.get(thread.sessionId) === this.process.generation) return { agent, sessionId: thread.sessionId };
    let why = `${this.name} cannot resume sessions (no \`loadSession\`)`;
    if (this.process.loadSession) {
      // The agent replays the conversation as updates while loading; none is routed to a turn yet.
      try {
        await agent.request("session/load", { sessionId: thread.sessionId, cwd: this.d.cwd, mcpServers: [] });
        this.known.set(thread.sessionId, this.process.generation);
        return { agent, sessionId: thread.sessionId };
      } catch (err) {
        why = `${this.name} could not resume it (${(err as Error).message})`;
      }
    }
    const { sessionId } = await agent.request("session/new", { cwd: this.d.cwd, mcpServers: [] });
    this.known.set(sessionId, this.process.generation);
    this.d.turns.moveThread(thread.roomId, thread.rootEventId, sessionId);
    note(`ℹ️ The earlier session of this thread is gone (${why}); this is a new session, without what was said before.`);
    return { agent, sessionId };
  }

  private explain(err: unknown): string {
    if (!this.process.running && this.process.lastError) return `${this.process.lastError}. It is restarting; write in this thread to go on.`;
    return (err as Error).message || String(err);
  }

  onUpdate(n: SessionNotification): void {
    this.active.get(n.sessionId)?.onUpdate(n.update);
  }

  async onPermission(req: RequestPermissionRequest, signal: AbortSignal): Promise<RequestPermissionResponse> {
    const turn = this.active.get(req.sessionId);
    // A request outside any turn (e.g. while a session loads) has nobody to ask.
    if (!turn) return { outcome: { outcome: "cancelled" } };
    const name = turn.translator.toolName(req.toolCall.toolCallId);
    return this.permissions.ask(turn.job.thread, turn.job.row.promptedBy, req, name, signal);
  }

  onReaction(roomId: string, eventId: string, key: string, sender: string): Promise<boolean> {
    return this.permissions.onReaction(roomId, eventId, key, sender);
  }

  /** `abort`: cancels the thread's turn and drops the prompts waiting behind it. */
  async abort(thread: ThreadRow): Promise<{ running: boolean; dropped: number }> {
    const dropped = this.lanes.queue.clear(threadKey(thread.roomId, thread.rootEventId));
    for (const q of dropped) this.d.turns.finish(q.payload.turnId, "failed", { stopReason: "dropped" });
    const turn = [...this.active.entries()].find(([, t]) => t.job.thread.roomId === thread.roomId && t.job.thread.rootEventId === thread.rootEventId);
    if (turn && this.process.running) {
      await this.permissions.cancelIn(thread);
      await (await this.process.ready()).notify("session/cancel", { sessionId: turn[0] });
    }
    return { running: turn !== undefined, dropped: dropped.length };
  }

  /** The agent process ended on its own: its pending permission requests go with it. */
  onProcessExit(): void {
    this.known.clear();
    void this.permissions.expireAll(true).catch((err: unknown) => this.d.log.warn({ err }, "could not close permission requests"));
  }

  async start(): Promise<void> {
    await this.process.ready().catch((err: unknown) => this.d.log.warn({ err, agent: this.name }, "the ACP agent did not start; will try again on the next prompt"));
  }

  /** Turns a previous run left open were cut off with its agent process: each thread is told. */
  async reconcile(): Promise<void> {
    await this.permissions.expireAll(false);
    const waiting = new Set(this.lanes.queue.all().map((q) => q.payload.turnId));
    for (const row of this.d.turns.open(this.name)) {
      if (waiting.has(row.id)) continue;
      this.d.turns.finish(row.id, "failed", { stopReason: "restart" });
      const target: ThreadTarget = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.replyEventId ?? row.promptEventId };
      const text =
        row.status === "running"
          ? `⚠️ The bot restarted while ${this.name} was working on this, and the agent stopped with it: that answer was cut off. Write in this thread to go on; the session is resumed.`
          : `⚠️ The bot restarted before this message reached ${this.name}. It was not sent: send it again if you still want an answer.`;
      await this.d.sender.send(row.roomId, threadMessage(target, text, { notice: true })).catch((err: unknown) => this.d.log.warn({ err }, "could not tell a thread about a cut-off ACP turn"));
    }
    // Prompts that were waiting when the bot stopped never reached the agent: they go now, in order.
    this.lanes.resume();
  }

  /** Ends the agent process; turns in flight stay open for the next start's reconcile, waiting prompts stay queued. */
  async stop(): Promise<void> {
    this.isStopping = true;
    const stopped = this.lanes.stop(5000);
    await this.process.stop();
    await stopped;
  }

  health(): BackendHealth {
    const p = this.process;
    return { name: this.name, ok: p.running || p.lastError === undefined, command: this.d.command, running: p.running, activeTurns: this.active.size, error: p.lastError ?? null };
  }
}

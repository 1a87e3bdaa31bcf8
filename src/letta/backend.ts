import { randomUUID } from "node:crypto";
import { titleFrom, type AgentBackend, type PromptRequest } from "../commands/backend.ts";
import type { CommandSpec } from "../commands/types.ts";
import type { Logger } from "../log.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import { describeLettaError, type AgentInfo, type LettaApi } from "./api.ts";
import type { LettaRoomStore, LettaTurnRow, LettaTurnStore } from "./store.ts";
import { runTurn, type TurnJob } from "./turn.ts";

export interface LettaBackendDeps {
  prefix: string;
  api: LettaApi;
  db: Db;
  threads: ThreadStore;
  inbox: Inbox;
  rooms: LettaRoomStore;
  turns: LettaTurnStore;
  sender: MatrixSender;
  /** The name people see, for attributing messages in a shared agent ("[Alice] …"). */
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
  /** Agent (name or id) for rooms that chose none. */
  defaultAgent: string | undefined;
  /** Model and embedding handles for `new`. */
  model: string | undefined;
  embedding: string | undefined;
  editWindowMs: number;
  timeoutMs: number;
  /** Turns that take at least this long end with a notice that mentions who asked. */
  completionNoticeAfterMs: number;
}


/** Thrown when a room has no agent to talk to; the message is the answer. */
class NoAgent extends Error {
  override name = "NoAgent";
}

/**
 * Letta behind `!letta`: a room talks to one agent (bound with `use`, or the configured
 * default); every thread started with `!letta <message>` continues with that agent. One
 * message at a time per agent: Letta handles an agent's messages one after another.
 */
export class LettaBackend implements AgentBackend {
  readonly name = "letta" as const;
  readonly prefix: string;
  readonly promptSummary = "send a message to the room's Letta agent; the answer streams into a thread on your message";
  readonly commands: CommandSpec[];
  readonly d: LettaBackendDeps;
  /** Agents answering now, each with the jobs waiting behind it. */
  private readonly busy = new Map<string, TurnJob[]>();
  private readonly running = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private defaultResolved: AgentInfo | undefined;

  /** `commandsOf` builds the `!letta` commands for this backend (passed in, so that they may know the backend and it need not know them). */
  constructor(deps: LettaBackendDeps, commandsOf: (backend: LettaBackend) => CommandSpec[] = () => []) {
    this.d = deps;
    this.prefix = deps.prefix;
    this.commands = commandsOf(this);
  }

  get api(): LettaApi {
    return this.d.api;
  }

  /** Whether an agent is answering, and how many messages wait for it. */
  load(agentId: string): { busy: boolean; queued: number } {
    const q = this.busy.get(agentId);
    return { busy: q !== undefined, queued: q?.length ?? 0 };
  }

  hint(): string {
    const p = this.prefix;
    return `No Letta agent for this room yet: list them with \`${p} agents\`, pick one with \`${p} use <name>\`, or create one with \`${p} new <name>\`.`;
  }

  /** The agent a room talks to: its binding, else the configured default (looked up once). */
  async roomAgent(roomId: string): Promise<AgentInfo> {
    const bound = this.d.rooms.get(roomId);
    if (bound) return { id: bound.agentId, name: bound.agentName, model: "" };
    const ref = this.d.defaultAgent;
    if (ref === undefined) throw new NoAgent(this.hint());
    if (this.defaultResolved) return this.defaultResolved;
    const found = await this.d.api.findAgents(ref);
    if (found.length === 0) throw new NoAgent(`The default Letta agent \`${ref}\` (letta.defaultAgent) is not on the server. ${this.hint()}`);
    if (found.length > 1) throw new NoAgent(`Several Letta agents are named \`${ref}\` (letta.defaultAgent); configure one by id: ${found.map((a) => `\`${a.id}\``).join(", ")}.`);
    this.defaultResolved = found[0] as AgentInfo;
    return this.defaultResolved;
  }

  async startThread(req: PromptRequest, root: string): Promise<void> {
    const target: ThreadTarget = { roomId: req.roomId, threadRoot: root, replyTo: req.eventId };
    let agent: AgentInfo;
    try {
      agent = await this.roomAgent(req.roomId);
    } catch (err) {
      const text = err instanceof NoAgent ? err.message : `⚠️ ${describeLettaError(err, this.d.api.baseUrl)}`;
      await this.d.sender.send(req.roomId, threadMessage(target, text, { notice: true }));
      return;
    }
    const text = await this.attributed(req);
    // The thread, the turn and the inbox mark commit together: after a crash the message was
    // either never taken (and is handled again) or is recorded and never sent twice.
    const row = this.d.db.transaction(() => {
      this.d.threads.insert({
        roomId: req.roomId,
        rootEventId: root,
        backend: "letta",
        sessionId: agent.id,
        title: titleFrom(req.text, "Letta conversation"),
        startedBy: req.sender,
        agent: agent.name,
      });
      return this.record(req, root, agent.id);
    })();
    const queued = this.submit({ row, agentId: agent.id, agentName: agent.name, text, target });
    if (queued > 0) await this.d.sender.react(req.roomId, req.eventId, `🕐 ${queued}`);
  }

  async followUp(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    const text = await this.attributed(req);
    const row = this.d.db.transaction(() => {
      this.d.threads.touch(thread.roomId, thread.rootEventId);
      return this.record(req, thread.rootEventId, thread.sessionId);
    })();
    const target = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId };
    return { queued: this.submit({ row, agentId: thread.sessionId, agentName: thread.agent ?? thread.sessionId, text, target }) };
  }

  private record(req: PromptRequest, root: string, agentId: string): LettaTurnRow {
    const row = this.d.turns.start({ roomId: req.roomId, rootEventId: root, agentId, promptEventId: req.eventId, otid: randomUUID(), promptedBy: req.sender });
    this.d.inbox.markDone(req.eventId);
    return row;
  }

  private async attributed(req: PromptRequest): Promise<string> {
    const name = await this.d.displayName(req.roomId, req.sender).catch(() => req.sender);
    const files = req.files?.length ? ` (attachments are not passed to Letta: ${req.files.map((f) => f.filename).join(", ")})` : "";
    return `[${name}] ${req.text}${files}`;
  }

  /** Runs the job now, or queues it behind the agent's current turn. Returns the queue position. */
  private submit(job: TurnJob): number {
    const queue = this.busy.get(job.agentId);
    if (queue) {
      queue.push(job);
      return queue.length;
    }
    this.busy.set(job.agentId, []);
    const done = this.drain(job).finally(() => this.running.delete(done));
    this.running.add(done);
    return 0;
  }

  private async drain(first: TurnJob): Promise<void> {
    let job: TurnJob | undefined = first;
    while (job) {
      try {
        const outcome = await runTurn(
          { api: this.d.api, sender: this.d.sender, turns: this.d.turns, log: this.d.log, editWindowMs: this.d.editWindowMs, timeoutMs: this.d.timeoutMs },
          job,
          this.stopping.signal,
        );
        if (outcome.status === "done" && outcome.totalMs >= this.d.completionNoticeAfterMs && job.row.promptedBy) {
          const who = job.row.promptedBy;
          await this.d.sender
            .send(job.row.roomId, threadMessage({ ...job.target, replyTo: outcome.replyId ?? job.target.replyTo }, `✅ ${pill(who).markdown} done.`, { mentions: [who] }))
            .catch((err: unknown) => this.d.log.warn({ err }, "could not post the completion notice"));
        }
      } catch (err) {
        this.d.log.error({ err, agentId: job.agentId }, "Letta turn failed");
        this.d.turns.finish(job.row.id, "failed");
      }
      job = this.stopping.signal.aborted ? undefined : this.busy.get(first.agentId)?.shift();
    }
    for (const left of this.busy.get(first.agentId) ?? []) this.d.turns.finish(left.row.id, "failed");
    this.busy.delete(first.agentId);
  }

  /**
   * At start-up: turns a previous process left running were cut off. Their messages are not
   * sent again (Letta may have them already); the thread says so.
   */
  async reconcile(): Promise<void> {
    for (const row of this.d.turns.running()) {
      this.d.turns.finish(row.id, "failed");
      const target = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.replyEventId ?? row.promptEventId };
      const text = row.replyEventId
        ? "⚠️ The bot restarted while this answer was streaming. The message was not sent again; Letta may have finished it."
        : "⚠️ The bot restarted before this message reached Letta. It was not sent: send it again if you still want an answer.";
      await this.d.sender.send(row.roomId, threadMessage(target, text, { notice: true })).catch((err: unknown) => this.d.log.warn({ err }, "could not tell a thread about a cut-off Letta turn"));
    }
  }

  /** Resolves when no turn is running or waiting. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  /** Lets answers in flight finish for up to `graceMs`, then cuts them off (their replies say so). */
  async stop(graceMs = 10_000): Promise<void> {
    for (const q of this.busy.values()) q.length = 0;
    const all = Promise.all([...this.running]);
    const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref());
    await Promise.race([all, timer]);
    this.stopping.abort();
    await all;
  }
}

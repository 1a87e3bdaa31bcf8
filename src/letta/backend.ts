import { randomUUID } from "node:crypto";
import { titleFrom, type AgentBackend, type PromptRequest } from "../commands/backend.ts";
import type { CommandSpec } from "../commands/types.ts";
import type { Logger } from "../log.ts";
import { crashPoint } from "../process/crash-point.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { Inbox } from "../store/inbox.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { TurnEngine } from "../turns/engine.ts";
import { TurnLanes } from "../turns/lanes.ts";
import { TurnQueue, type QueuedTurn } from "../turns/queue.ts";
import { describeLettaError, type AgentInfo, type LettaApi } from "./api.ts";
import { LettaApprovalStore, type ApprovalRow } from "./approval-store.ts";
import { LettaApprovals } from "./approvals.ts";
import type { LettaHooks } from "./hooks.ts";
import type { LettaPrompt, LettaRoomStore, LettaTurnStore } from "./store.ts";
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
  engine: TurnEngine;
  timeoutMs: number;
}


/** What a waiting message needs to start its turn (its row holds the rest). */
interface QueuedMessage extends LettaPrompt {
  turnId: number;
  /** A turn a previous process left running, put first in its agent's queue at start-up. */
  recover?: boolean | undefined;
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
  /** Set by app.ts when Letta agents may delegate to OpenCode (src/mcp/); empty otherwise. */
  readonly hooks: LettaHooks = {};
  /** The agents' tool approvals, asked and answered in their threads. */
  readonly approvals: LettaApprovals;
  /** One turn at a time per agent; the messages waiting for it are in the durable queue. */
  private readonly lanes: TurnLanes<QueuedMessage>;
  private readonly stopping = new AbortController();
  private defaultResolved: AgentInfo | undefined;

  /** `commandsOf` builds the `!letta` commands for this backend (passed in, so that they may know the backend and it need not know them). */
  constructor(deps: LettaBackendDeps, commandsOf: (backend: LettaBackend) => CommandSpec[] = () => []) {
    this.d = deps;
    this.prefix = deps.prefix;
    this.commands = commandsOf(this);
    this.lanes = new TurnLanes(new TurnQueue<QueuedMessage>(deps.db, "letta"), (item) => this.runQueued(item), deps.log);
    this.approvals = new LettaApprovals({
      ...deps, store: new LettaApprovalStore(deps.db), continueAfter: (row, approve, by, reason) => this.continueAfter(row, approve, by, reason),
    });
  }

  /** Reactions in Letta threads: on the agent's approval requests, else (delegated permission requests) the hooks'. */
  async onReaction(roomId: string, eventId: string, key: string, sender: string): Promise<boolean> {
    if (await this.approvals.onReaction(roomId, eventId, key, sender)) return true;
    return (await this.hooks.onReaction?.(roomId, eventId, key, sender)) ?? false;
  }

  /**
   * The answer to an approval request is a turn of the thread, queued first for the agent (Letta
   * takes nothing else before it): it sends the answer and streams the rest of the agent's run.
   * It pushes who asked the turn that stopped. Called inside the transaction that decides.
   */
  private continueAfter(row: ApprovalRow, approve: boolean, by: string, reason: string | undefined): () => void {
    const promptEventId = row.messageEventId ?? row.replyEventId ?? row.rootEventId;
    const title = this.d.threads.get(row.roomId, row.rootEventId)?.title ?? undefined;
    const prompt: LettaPrompt = { agentName: row.agentName, text: "", title, approval: { id: row.id, approve, reason } };
    const turn = this.d.turns.start({ roomId: row.roomId, rootEventId: row.rootEventId, agentId: row.agentId, promptEventId, otid: randomUUID(), promptedBy: row.askedOf }, prompt);
    this.d.threads.touch(row.roomId, row.rootEventId);
    this.lanes.queue.add(
      { key: row.agentId, roomId: row.roomId, rootEventId: row.rootEventId },
      { roomId: row.roomId, eventId: promptEventId, sender: by, text: approve ? "(approved)" : `(denied${reason ? `: ${reason}` : ""})` },
      { ...prompt, turnId: turn.id },
      { front: true },
    );
    return () => void this.lanes.kick(row.agentId);
  }

  get api(): LettaApi {
    return this.d.api;
  }

  /** Whether an agent is answering, and how many messages wait for it. */
  load(agentId: string): { busy: boolean; queued: number } {
    return { busy: this.lanes.isBusy(agentId), queued: this.lanes.queue.count(agentId) };
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
    const title = titleFrom(req.text, "Letta conversation");
    const queueId = this.d.db.transaction(() => {
      this.d.threads.insert({
        roomId: req.roomId,
        rootEventId: root,
        backend: "letta",
        sessionId: agent.id,
        title,
        startedBy: req.sender,
        agent: agent.name,
      });
      return this.record(req, root, agent.id, { agentName: agent.name, text, title });
    })();
    crashPoint("thread-row");
    const queued = this.submit(agent.id, queueId);
    if (queued > 0) await this.d.sender.react(req.roomId, req.eventId, `🕐 ${queued}`);
  }

  async followUp(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    const text = await this.attributed(req);
    const queueId = this.d.db.transaction(() => {
      this.d.threads.touch(thread.roomId, thread.rootEventId);
      return this.record(req, thread.rootEventId, thread.sessionId, { agentName: thread.agent ?? thread.sessionId, text, title: thread.title ?? undefined });
    })();
    return { queued: this.submit(thread.sessionId, queueId) };
  }

  /** The turn row, the queue entry and the inbox mark commit together: a restart finds the message waiting, or running. */
  private record(req: PromptRequest, root: string, agentId: string, m: LettaPrompt): number {
    const row = this.d.turns.start({ roomId: req.roomId, rootEventId: root, agentId, promptEventId: req.eventId, otid: randomUUID(), promptedBy: req.sender }, m);
    this.d.inbox.markDone(req.eventId);
    return this.lanes.queue.add({ key: agentId, roomId: req.roomId, rootEventId: root }, { roomId: req.roomId, eventId: req.eventId, sender: req.sender, text: req.text }, { ...m, turnId: row.id });
  }

  private async attributed(req: PromptRequest): Promise<string> {
    const name = await this.d.displayName(req.roomId, req.sender).catch(() => req.sender);
    const files = req.files?.length ? ` (attachments are not passed to Letta: ${req.files.map((f) => f.filename).join(", ")})` : "";
    return `[${name}] ${req.text}${files}`;
  }

  /** Starts the agent's lane, or leaves the message queued behind its turn. Returns the queue position (0 = now). */
  private submit(agentId: string, queueId: number): number {
    return this.lanes.kick(agentId) ? 0 : this.lanes.queue.position(agentId, queueId);
  }

  private async runQueued(item: QueuedTurn<QueuedMessage>): Promise<void> {
    const row = this.d.turns.get(item.payload.turnId);
    if (row?.status !== "running") return;
    crashPoint("turn-row");
    const answer = item.payload.approval;
    const asked = answer && this.approvals.store.get(answer.id);
    if (answer && !asked) return this.d.turns.finish(row.id, "failed");
    const job: TurnJob = {
      row, agentId: item.key, agentName: item.payload.agentName, text: item.payload.text, title: item.payload.title,
      target: { roomId: item.roomId, threadRoot: item.rootEventId, replyTo: item.req.eventId },
      approval: answer && asked ? { calls: asked.calls, approve: answer.approve, reason: answer.reason } : undefined,
    };
    try {
      const recovered = item.payload.recover ? { sentAt: this.d.turns.pending(row.id)?.sentAt } : undefined;
      await runTurn({ api: this.d.api, engine: this.d.engine, turns: this.d.turns, log: this.d.log, timeoutMs: this.d.timeoutMs, approvals: this.approvals }, job, this.stopping.signal, recovered);
    } catch (err) {
      this.d.log.error({ err, agentId: job.agentId }, "Letta turn failed");
      this.d.turns.finish(job.row.id, "failed");
    }
  }

  /**
   * At start-up: turns a previous process left running were cut off. Each goes first in its
   * agent's queue, before the messages that waited for it: its answer is read from Letta's run
   * if Letta took the message, and the message is sent only if Letta provably never had it
   * (runTurn). Turns recorded without their prompt (by an older version) are told in their thread.
   */
  async reconcile(): Promise<void> {
    await this.approvals.reconcile();
    const waiting = new Set(this.lanes.queue.all().map((q) => q.payload.turnId));
    const cutOff = this.d.turns.running().filter((row) => !waiting.has(row.id));
    // Newest first: each goes to the front, so the oldest ends up first.
    for (const row of cutOff.toReversed()) {
      const pending = this.d.turns.pending(row.id);
      if (!pending) continue;
      const req = { roomId: row.roomId, eventId: row.promptEventId, sender: row.promptedBy, text: pending.prompt.text };
      this.lanes.queue.add({ key: row.agentId, roomId: row.roomId, rootEventId: row.rootEventId }, req, { ...pending.prompt, turnId: row.id, recover: true }, { front: true });
    }
    for (const row of cutOff) {
      if (this.d.turns.pending(row.id)) continue;
      this.d.turns.finish(row.id, "failed");
      const target = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.replyEventId ?? row.promptEventId };
      const text = row.replyEventId
        ? "⚠️ The bot restarted while this answer was streaming. The message was not sent again; Letta may have finished it."
        : "⚠️ The bot restarted before this message reached Letta. It was not sent: send it again if you still want an answer.";
      await this.d.sender.send(row.roomId, threadMessage(target, text, { notice: true })).catch((err: unknown) => this.d.log.warn({ err }, "could not tell a thread about a cut-off Letta turn"));
    }
    // Then the messages that were waiting when the bot stopped, in order.
    this.lanes.resume();
  }

  /** Resolves when no turn is running or waiting. */
  async idle(): Promise<void> {
    await this.lanes.idle();
  }

  /** Lets answers in flight finish for up to `graceMs`, then cuts them off (their replies say so); waiting messages stay queued. */
  async stop(graceMs = 10_000): Promise<void> {
    await this.lanes.stop(graceMs, () => this.stopping.abort());
  }
}

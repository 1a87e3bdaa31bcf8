import type { MatrixClient } from "matrix-bot-sdk";
import { titleFrom, type AgentBackend, type BackendHealth, type PromptRequest } from "../commands/backend.ts";
import type { CommandSpec } from "../commands/types.ts";
import type { Logger } from "../log.ts";
import { roomMessage, threadMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { ConversationSettings } from "../turns/settings.ts";
import type { OpencodeConnection } from "./connection.ts";
import type { OpencodeServers } from "./servers.ts";
import type { ServerUnit } from "./server-unit.ts";
import type { ScheduledPromptTarget } from "../schedule/scheduler.ts";
import { crashPoint } from "../process/crash-point.ts";
import { describeError } from "./errors.ts";
import type { CommandCall, PromptOptions, TurnRunner } from "./turn-runner.ts";

export interface OpencodeBackendDeps {
  prefix: string;
  /** The configured servers; each room and thread is routed to its own (servers.ts). */
  servers: OpencodeServers;
  threads: ThreadStore;
  rooms: RoomStore;
  sender: MatrixSender;
  client: MatrixClient;
  names: DisplayNames;
  log: Logger;
  db: Db;
  /** Per room: does a message sent while a turn runs wait or interrupt? (absent: it waits). */
  settings?: ConversationSettings | undefined;
}

export type { OpencodeLifecycle } from "./server-unit.ts";

/** ` . queue` at the end of a message: queue it behind the running turn (the marker is not sent). */
const queueSuffix = /\s\.\s?queue$/i;
export const stripQueueSuffix = (text: string): string => text.trimEnd().replace(queueSuffix, "").trimEnd();


/** Parses `provider/model` (the model id may itself contain slashes). */
export function parseModel(spec: string | null | undefined): { providerID: string; modelID: string } | undefined {
  if (!spec) return undefined;
  const i = spec.indexOf("/");
  if (i <= 0 || i === spec.length - 1) return undefined;
  return { providerID: spec.slice(0, i), modelID: spec.slice(i + 1) };
}

/** OpenCode behind `!oc`: sessions are threads, prompts are attributed, settings come from thread then room. */
export class OpencodeBackend implements AgentBackend, ScheduledPromptTarget {
  readonly name = "opencode" as const;
  readonly prefix: string;
  readonly promptSummary = "start a new OpenCode session; the answer streams into a thread on your message";
  readonly commands: CommandSpec[];
  readonly d: OpencodeBackendDeps;

  /** `commandsOf` builds the `!oc` commands (passed in, so that they may know the backend and it need not know them). */
  constructor(deps: OpencodeBackendDeps, commandsOf: (backend: OpencodeBackend) => CommandSpec[]) {
    this.d = deps;
    this.prefix = deps.prefix;
    this.commands = commandsOf(this);
  }

  get servers(): OpencodeServers {
    return this.d.servers;
  }

  start(): Promise<void> {
    return this.d.servers.start();
  }

  stop(): Promise<void> {
    return this.d.servers.stop();
  }

  reconcile(): Promise<void> {
    return this.d.servers.reconcile();
  }

  ready(): boolean {
    return this.d.servers.ready();
  }

  /** One entry per server (section `opencode`). */
  health(): BackendHealth[] {
    return this.d.servers.health();
  }

  activeTurns(): number {
    return this.d.servers.activeTurns();
  }

  /** A turn of this session is streaming into its thread now (the notify endpoint stays quiet then). */
  isStreaming(sessionId: string): boolean {
    return this.d.servers.all.some((u) => u.runner.isBusy(sessionId));
  }

  /** Reactions answer permission requests (✅ ♾️ ❌) and questions (1️⃣ 2️⃣ …), in their own room only; each server's desks know their own. */
  async onReaction(roomId: string, eventId: string, key: string, sender: string): Promise<boolean> {
    for (const u of this.d.servers.all) {
      if ((await u.permissions.onReaction(roomId, eventId, key, sender)) || (await u.questions.onReaction(roomId, eventId, key, sender))) return true;
    }
    return false;
  }

  /** The server `default`'s connection: delegations from Letta and their MCP permissions run there. */
  get conn(): OpencodeConnection {
    return this.d.servers.primary.conn;
  }

  /** The server `default`'s turn runner (delegations from Letta). */
  get runner(): TurnRunner {
    return this.d.servers.primary.runner;
  }

  /** The server a room's new sessions start on (`!oc server`). */
  roomServer(roomId: string): ServerUnit {
    return this.d.servers.ofRoom(roomId);
  }

  /** The server a thread's session lives on: the one it was made on, wherever the room moved since. */
  threadServer(thread: ThreadRow): ServerUnit {
    return this.d.servers.ofThread(thread);
  }

  /** For a command: the thread's server inside a thread, else the room's. */
  serverFor(ctx: { thread?: ThreadRow | undefined; msg: { roomId: string } }): ServerUnit {
    return ctx.thread ? this.threadServer(ctx.thread) : this.roomServer(ctx.msg.roomId);
  }

  /** The project directory of a room: set by `!oc project`, else the workspace of the room's server. */
  roomDirectory(roomId: string): string {
    return this.d.rooms.settings(roomId).workspaceDir ?? this.roomServer(roomId).spec.workspaceDir;
  }

  threadDirectory(thread: ThreadRow): string {
    return thread.directory ?? this.threadServer(thread).spec.workspaceDir;
  }

  async startThread(req: PromptRequest, root: string): Promise<void> {
    // A replay after a crash between the thread row and the turn finds its thread: the same
    // session goes on (no second session, no "already exists" error).
    const known = this.d.threads.get(req.roomId, root);
    const thread = known?.backend === this.name ? known : await this.createSession(req.roomId, root, req.sender, titleFrom(req.text));
    crashPoint("thread-row");
    await this.followUp(thread, req);
  }

  /** For the scheduler: a session for a scheduled prompt, on the room's server. */
  async createSessionFor(title: string, directory: string, roomId: string): Promise<string> {
    return this.newSession(this.roomServer(roomId), title, directory);
  }

  /** For the scheduler: what a new thread of the room stores as its server. */
  threadServerOf(roomId: string): string | null {
    return this.d.servers.threadColumn(this.roomServer(roomId));
  }

  /** For the scheduler: the prompt joins the thread's durable queue (inside the caller's transaction). */
  enqueue(thread: ThreadRow, req: PromptRequest): void {
    this.threadServer(thread).runner.queue.add(thread, req, this.promptOptions(thread));
  }

  /** Sends the session's next queued prompt, on whichever server has it queued. */
  async sendNext(sessionId: string): Promise<void> {
    for (const u of this.d.servers.all) if (u.runner.queueLength(sessionId) > 0) await u.runner.sendNext(sessionId);
  }

  /**
   * A message in the thread. While the agent waits for an answer to its question, the message is
   * that answer (unless it carries files, ends in ` . queue`, or comes from `!oc queue`: `asPrompt`).
   */
  async followUp(thread: ThreadRow, req: PromptRequest, opts: { asPrompt?: boolean } = {}): Promise<{ queued: number }> {
    if (!opts.asPrompt && !req.files?.length && !queueSuffix.test(req.text.trimEnd()) && (await this.answerQuestion(thread, req))) return { queued: 0 };
    const name = await this.displayName(req.roomId, req.sender);
    const attributed = { ...req, text: `[${name}] ${stripQueueSuffix(req.text)}` };
    // In an `interrupt` room a message stops the running step and goes next, unless it asks to wait.
    const runner = this.threadServer(thread).runner;
    const interrupt = !opts.asPrompt && !queueSuffix.test(req.text.trimEnd()) && this.d.settings?.busyMode(thread.roomId) === "interrupt" && runner.isBusy(thread.sessionId);
    return interrupt ? this.interrupt(thread, attributed) : runner.submit(thread, attributed, this.promptOptions(thread));
  }

  /** `now <message>`, or any message in an `interrupt` room: stops the running step; this prompt goes next. */
  interrupt(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    return this.threadServer(thread).runner.interrupt(thread, req, this.promptOptions(thread));
  }

  /** True when the message answered (or tried to answer) a pending question; a refusal is said in the thread. */
  private async answerQuestion(thread: ThreadRow, req: PromptRequest): Promise<boolean> {
    const result = await this.threadServer(thread).questions.answerText(thread.roomId, thread.rootEventId, req.text, req.sender);
    if (result.kind === "refused") {
      const target = { roomId: req.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId };
      await this.d.sender.send(req.roomId, threadMessage(target, result.why, { notice: true }));
    }
    return result.kind !== "none";
  }

  /** Runs one of OpenCode's `/commands` as a turn of the thread's session (queued like a prompt). */
  runCommand(thread: ThreadRow, req: PromptRequest, command: CommandCall): Promise<{ queued: number }> {
    return this.threadServer(thread).runner.submit(thread, req, this.promptOptions(thread), command);
  }

  promptOptions(thread: ThreadRow): PromptOptions {
    const room = this.d.rooms.settings(thread.roomId);
    return {
      directory: this.threadDirectory(thread),
      model: parseModel(thread.model ?? room.defaultModel),
      agent: thread.agent ?? room.defaultAgent ?? undefined,
    };
  }

  /** Creates a session on the room's server and maps it to the thread rooted at `root`. */
  async createSession(roomId: string, root: string, by: string, title: string): Promise<ThreadRow> {
    const unit = this.roomServer(roomId);
    const directory = this.roomDirectory(roomId);
    const sessionId = await this.newSession(unit, title, directory);
    return this.d.threads.insert({ roomId, rootEventId: root, backend: "opencode", sessionId, title, startedBy: by, directory, server: this.d.servers.threadColumn(unit) });
  }

  /** A new session on `unit`; with several servers a failure names the server (one that is away is said so in its room). */
  async newSession(unit: ServerUnit, title: string, directory: string): Promise<string> {
    const res = await unit.conn.client.session.create({ title, directory }).catch((err: unknown) => ({ data: undefined, error: err }));
    if (res.data) return res.data.id;
    const where = this.d.servers.several ? ` \`${unit.name}\`${unit.conn.state === "connected" ? "" : ` (${unit.conn.url}, not reachable now: ${unit.conn.lastError ?? unit.conn.state}; the bot keeps trying)`}` : "";
    throw new Error(`OpenCode${where} could not create a session: ${describeError(res.error)}`);
  }

  /**
   * Posts a thread root of the bot's own (for `new` and `attach`) and maps `sessionId` to it: on
   * `unit` (default: the room's server), where the session must live.
   */
  async openThread(
    roomId: string,
    sessionId: string,
    title: string,
    by: string,
    headline: string,
    settings: Partial<Pick<ThreadRow, "directory" | "model" | "agent">> = {},
    unit: ServerUnit = this.roomServer(roomId),
  ): Promise<ThreadRow> {
    const root = await this.d.sender.send(roomId, roomMessage(headline, { notice: true }));
    return this.d.threads.insert({
      roomId,
      rootEventId: root,
      backend: "opencode",
      sessionId,
      title,
      startedBy: by,
      directory: this.roomDirectory(roomId),
      ...settings,
      server: this.d.servers.threadColumn(unit),
    });
  }

  /** The name people see, for attributing prompts in a shared session. */
  displayName(roomId: string, userId: string): Promise<string> {
    return this.d.names.get(roomId, userId);
  }
}

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
import type { PermissionDesk } from "./permission-desk.ts";
import type { QuestionDesk } from "./question-desk.ts";
import type { ScheduledPromptTarget } from "../schedule/scheduler.ts";
import { crashPoint } from "../process/crash-point.ts";
import { describeError } from "./errors.ts";
import type { CommandCall, PromptOptions, TurnRunner } from "./turn-runner.ts";

export interface OpencodeBackendDeps {
  prefix: string;
  conn: OpencodeConnection;
  runner: TurnRunner;
  threads: ThreadStore;
  rooms: RoomStore;
  sender: MatrixSender;
  client: MatrixClient;
  names: DisplayNames;
  workspaceDir: string;
  log: Logger;
  db: Db;
  /** OpenCode's permission requests, answered from chat (`!oc allow`, reactions). */
  permissions: PermissionDesk;
  /** Questions from OpenCode's agent, answered from chat (number reactions, `!oc answer`, a message in the thread). */
  questions: QuestionDesk;
  /** Per room: does a message sent while a turn runs wait or interrupt? (absent: it waits). */
  settings?: ConversationSettings | undefined;
  /** Directories `!oc project` may point a room at. */
  projectRoots: string[];
  /** Starting and stopping the server connection (and the embedded server), built by the factory in index.ts. */
  lifecycle: OpencodeLifecycle;
  /** Restarts the OpenCode server the bot started itself; undefined when it uses an external one. */
  restartServer?: (() => Promise<{ oldPid: number; newPid: number; connected: boolean }>) | undefined;
}

export interface OpencodeLifecycle {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves when the turns of the last run are recovered (at once if OpenCode is not reachable yet). */
  reconcile(): Promise<void>;
  /** Connected, and the turns of the last run reconciled: scheduled prompts may go. */
  ready(): boolean;
}

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

  start(): Promise<void> {
    return this.d.lifecycle.start();
  }

  stop(): Promise<void> {
    return this.d.lifecycle.stop();
  }

  reconcile(): Promise<void> {
    return this.d.lifecycle.reconcile();
  }

  ready(): boolean {
    return this.d.lifecycle.ready();
  }

  health(): BackendHealth {
    const c = this.d.conn;
    return { name: this.name, section: "opencode", ok: c.state === "connected", url: c.url, state: c.state, reconnects: c.reconnects, error: c.lastError ?? null };
  }

  activeTurns(): number {
    return this.d.runner.activeCount;
  }

  /** A turn of this session is streaming into its thread now (the notify endpoint stays quiet then). */
  isStreaming(sessionId: string): boolean {
    return this.d.runner.isBusy(sessionId);
  }

  /** Reactions answer permission requests (✅ ♾️ ❌) and questions (1️⃣ 2️⃣ …), in their own room only. */
  async onReaction(roomId: string, eventId: string, key: string, sender: string): Promise<boolean> {
    return (await this.d.permissions.onReaction(roomId, eventId, key, sender)) || this.d.questions.onReaction(roomId, eventId, key, sender);
  }

  get conn(): OpencodeConnection {
    return this.d.conn;
  }

  get runner(): TurnRunner {
    return this.d.runner;
  }

  /** The project directory of a room: set by `!oc project`, else the configured workspace. */
  roomDirectory(roomId: string): string {
    return this.d.rooms.settings(roomId).workspaceDir ?? this.d.workspaceDir;
  }

  threadDirectory(thread: ThreadRow): string {
    return thread.directory ?? this.d.workspaceDir;
  }

  directoryOfSession(sessionId: string): string {
    const thread = this.d.threads.bySession("opencode", sessionId)[0];
    return thread ? this.threadDirectory(thread) : this.d.workspaceDir;
  }

  async startThread(req: PromptRequest, root: string): Promise<void> {
    // A replay after a crash between the thread row and the turn finds its thread: the same
    // session goes on (no second session, no "already exists" error).
    const known = this.d.threads.get(req.roomId, root);
    const thread = known?.backend === this.name ? known : await this.createSession(req.roomId, root, req.sender, titleFrom(req.text));
    crashPoint("thread-row");
    await this.followUp(thread, req);
  }

  /** For the scheduler: a session for a scheduled prompt. */
  async createSessionFor(title: string, directory: string): Promise<string> {
    const created = await this.conn.client.session.create({ title, directory });
    if (!created.data) throw new Error(`OpenCode could not create a session: ${describeError(created.error)}`);
    return created.data.id;
  }

  /** For the scheduler: the prompt joins the thread's durable queue (inside the caller's transaction). */
  enqueue(thread: ThreadRow, req: PromptRequest): void {
    this.d.runner.queue.add(thread, req, this.promptOptions(thread));
  }

  sendNext(sessionId: string): Promise<void> {
    return this.d.runner.sendNext(sessionId);
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
    const interrupt = !opts.asPrompt && !queueSuffix.test(req.text.trimEnd()) && this.d.settings?.busyMode(thread.roomId) === "interrupt" && this.d.runner.isBusy(thread.sessionId);
    return interrupt ? this.interrupt(thread, attributed) : this.d.runner.submit(thread, attributed, this.promptOptions(thread));
  }

  /** `now <message>`, or any message in an `interrupt` room: stops the running step; this prompt goes next. */
  interrupt(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    return this.d.runner.interrupt(thread, req, this.promptOptions(thread));
  }

  /** True when the message answered (or tried to answer) a pending question; a refusal is said in the thread. */
  private async answerQuestion(thread: ThreadRow, req: PromptRequest): Promise<boolean> {
    const result = await this.d.questions.answerText(thread.roomId, thread.rootEventId, req.text, req.sender);
    if (result.kind === "refused") {
      const target = { roomId: req.roomId, threadRoot: thread.rootEventId, replyTo: req.eventId };
      await this.d.sender.send(req.roomId, threadMessage(target, result.why, { notice: true }));
    }
    return result.kind !== "none";
  }

  /** Runs one of OpenCode's `/commands` as a turn of the thread's session (queued like a prompt). */
  runCommand(thread: ThreadRow, req: PromptRequest, command: CommandCall): Promise<{ queued: number }> {
    return this.d.runner.submit(thread, req, this.promptOptions(thread), command);
  }

  promptOptions(thread: ThreadRow): PromptOptions {
    const room = this.d.rooms.settings(thread.roomId);
    return {
      directory: this.threadDirectory(thread),
      model: parseModel(thread.model ?? room.defaultModel),
      agent: thread.agent ?? room.defaultAgent ?? undefined,
    };
  }

  /** Creates a session and maps it to the thread rooted at `root`. */
  async createSession(roomId: string, root: string, by: string, title: string): Promise<ThreadRow> {
    const directory = this.roomDirectory(roomId);
    const res = await this.d.conn.client.session.create({ title, directory });
    if (!res.data) throw new Error(`OpenCode could not create a session: ${describeError(res.error)}`);
    return this.d.threads.insert({ roomId, rootEventId: root, backend: "opencode", sessionId: res.data.id, title, startedBy: by, directory });
  }

  /** Posts a thread root of the bot's own (for `new` and `attach`) and maps `sessionId` to it. */
  async openThread(
    roomId: string,
    sessionId: string,
    title: string,
    by: string,
    headline: string,
    settings: Partial<Pick<ThreadRow, "directory" | "model" | "agent">> = {},
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
    });
  }

  /** The name people see, for attributing prompts in a shared session. */
  displayName(roomId: string, userId: string): Promise<string> {
    return this.d.names.get(roomId, userId);
  }
}

import type { MatrixClient } from "matrix-bot-sdk";
import { titleFrom, type AgentBackend, type BackendHealth, type PromptRequest } from "../commands/backend.ts";
import type { CommandSpec } from "../commands/types.ts";
import type { Logger } from "../log.ts";
import { roomMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { RoomStore } from "../store/rooms.ts";
import type { ThreadRow, ThreadStore } from "../store/threads.ts";
import type { OpencodeConnection } from "./connection.ts";
import type { PermissionDesk } from "./permission-desk.ts";
import type { ScheduledPromptTarget } from "../schedule/scheduler.ts";
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

  /** Reactions answer permission requests (✅ ♾️ ❌), in the request's own room only. */
  onReaction(roomId: string, eventId: string, key: string, sender: string): Promise<boolean> {
    return this.d.permissions.onReaction(roomId, eventId, key, sender);
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
    const thread = await this.createSession(req.roomId, root, req.sender, titleFrom(req.text));
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

  async followUp(thread: ThreadRow, req: PromptRequest): Promise<{ queued: number }> {
    const name = await this.displayName(req.roomId, req.sender);
    return this.d.runner.submit(thread, { ...req, text: `[${name}] ${stripQueueSuffix(req.text)}` }, this.promptOptions(thread));
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

// OpenCode work a Letta agent delegates (through the bot's MCP tools, src/mcp/): a session whose
// turns stream into the Letta thread that asked, exactly as `!oc` turns do, and whose end is
// read back as a result for the agent. The turn itself is the TurnRunner's; this file only
// starts it in the right place, watches for its end and keeps the record (migrations/009_mcp.sql).
import type { Message, Part } from "@opencode-ai/sdk/v2";
import { isAbsolute, relative, resolve } from "node:path";
import { existsSync, statSync } from "node:fs";
import type { Logger } from "../log.ts";
import { threadMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { ThreadRow } from "../store/threads.ts";
import type { OpencodeBackend } from "./backend.ts";
import { DelegationStore, type DelegationOutcome, type DelegationResult, type DelegationRow } from "./delegation-store.ts";
import { describeError } from "./errors.ts";

export type { DelegationOutcome, DelegationResult, DelegationRow } from "./delegation-store.ts";

/** Text an agent wrote, in a markdown message: its markup shown, not obeyed. */
export const shownAsText = (text: string): string => text.replace(/[\\`*_[\]<>|~#]/g, (c) => `\\${c}`);

/** Where a delegated turn renders and on whose behalf: the Letta turn that made the call. */
export interface DelegationBinding {
  agentId: string;
  agentName: string;
  roomId: string;
  rootEventId: string;
  /** The event the headline replies to (the Letta turn's reply, else its prompt). */
  replyTo: string;
  promptedBy: string;
}

export interface DelegatorDeps {
  backend: OpencodeBackend;
  db: Db;
  sender: MatrixSender;
  names: DisplayNames;
  log: Logger;
  /** How long a tool call waits for the turn before it answers "still running". */
  waitMs: number;
}

/** Thrown for calls the bot refuses; the message is what the agent reads. */
export class DelegationRefused extends Error {
  override name = "DelegationRefused";
}

type Waiter = (r: DelegationResult) => void;

/** Tools whose `filePath` is a file the turn changed. */
const editTools = new Set(["write", "edit", "multiedit"]);

export class Delegator {
  readonly store: DelegationStore;
  private readonly d: DelegatorDeps;
  /** Sessions whose turn is being watched for its end, with the tool calls waiting for it. */
  private readonly watched = new Map<string, Waiter[]>();
  private readonly finishedListeners: Array<(row: DelegationRow) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Sessions someone stopped with `abort`: their end is "aborted", whatever the model did after. */
  private readonly stoppedByPerson = new Set<string>();

  constructor(deps: DelegatorDeps) {
    this.d = deps;
    this.store = new DelegationStore(deps.db);
  }

  /** Called when a task ends with no tool call waiting for it (the result must reach the agent another way). */
  onUnclaimed(listener: (row: DelegationRow) => void): void {
    this.finishedListeners.push(listener);
  }

  /** opencode_run_task: a new session whose turn streams into the caller's thread; waits for its end (up to waitMs). */
  async runTask(b: DelegationBinding, title: string, prompt: string, project?: string): Promise<DelegationResult> {
    const oc = this.d.backend;
    // Delegated work runs on the server `default` (its turns are recovered there): the room's
    // project if the room is on that server, else that server's workspace.
    const onPrimary = oc.servers.roomServerName(b.roomId) === oc.servers.primary.name;
    const directory = project ? this.projectDir(project) : onPrimary ? oc.roomDirectory(b.roomId) : oc.servers.primary.spec.workspaceDir;
    const created = await oc.conn.client.session.create({ title, directory });
    if (!created.data) throw new Error(`OpenCode could not create a session: ${describeError(created.error)}`);
    return this.prompt(b, created.data.id, title, directory, prompt, `🛠️ Letta → OpenCode: ${shownAsText(title)}`);
  }

  /** opencode_send_message: the next turn of a session this agent delegated before, in the caller's thread. */
  async sendMessage(b: DelegationBinding, sessionId: string, text: string): Promise<DelegationResult> {
    const row = this.owned(b, sessionId);
    if (row.status === "running" || this.d.backend.runner.isBusy(sessionId)) throw new DelegationRefused(`Session ${sessionId} is still working; wait for it with opencode_task_status.`);
    return this.prompt(b, sessionId, row.title, row.directory, text, `🛠️ Letta → OpenCode: ${shownAsText(row.title)} (follow-up)`);
  }

  /** opencode_task_status: the result if done; if running, waits up to waitMs for it. */
  async status(b: DelegationBinding, sessionId: string): Promise<DelegationResult> {
    const row = this.owned(b, sessionId);
    if (row.status !== "running" && row.result) {
      this.store.claim(sessionId, "tool");
      return row.result;
    }
    return this.wait(sessionId, row.title);
  }

  /** The delegation of `sessionId`, if the calling agent made it; refused otherwise. */
  owned(b: DelegationBinding, sessionId: string): DelegationRow {
    const row = this.store.get(sessionId);
    if (!row || row.agentId !== b.agentId) throw new DelegationRefused(`Session ${sessionId} is not one this agent delegated; start one with opencode_run_task.`);
    return row;
  }

  private async prompt(b: DelegationBinding, sessionId: string, title: string, directory: string, text: string, headline: string): Promise<DelegationResult> {
    if (this.stopping) throw new DelegationRefused("The bot is shutting down; try again in a moment.");
    const oc = this.d.backend;
    const markdown = `${headline}\n\nOpenCode session \`${sessionId}\` · \`${oc.prefix} attach ${sessionId}\` (at the top level) continues it by hand.`;
    const headlineId = await this.d.sender.send(b.roomId, threadMessage({ roomId: b.roomId, threadRoot: b.rootEventId, replyTo: b.replyTo }, markdown, { notice: true }));
    this.store.start({ sessionId, agentId: b.agentId, agentName: b.agentName, roomId: b.roomId, rootEventId: b.rootEventId, headlineEventId: headlineId, promptedBy: b.promptedBy, title, directory });
    const thread = this.threadOf(this.store.get(sessionId) as DelegationRow);
    const who = await this.d.names.get(b.roomId, b.promptedBy).catch(() => b.promptedBy);
    const waiting = this.wait(sessionId, title);
    await oc.runner.submit(thread, { roomId: b.roomId, eventId: headlineId, sender: b.promptedBy, text: `[${b.agentName} (Letta), for ${who}] ${text}` }, oc.promptOptions(thread));
    return waiting;
  }

  /**
   * The Letta thread as an OpenCode thread for the runner: replies go there. It is not stored
   * in `threads` (the Letta thread's row is), so the session stays free for `!oc attach`.
   */
  private threadOf(row: DelegationRow): ThreadRow {
    return {
      roomId: row.roomId, rootEventId: row.rootEventId, backend: "opencode", sessionId: row.sessionId, title: row.title, startedBy: row.promptedBy,
      createdAt: Date.now(), lastActivityAt: Date.now(), directory: row.directory, model: null, agent: null,
    };
  }

  /** A project the agent named: a directory inside opencode.projectRoots (relative: to the first). */
  private projectDir(project: string): string {
    const roots = this.d.backend.servers.primary.spec.projectRoots;
    const dir = resolve(roots[0] as string, project);
    const inside = roots.some((r) => {
      const rel = relative(r, dir);
      return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
    });
    if (!inside) throw new DelegationRefused(`${project} is outside the project roots this bot may work in.`);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DelegationRefused(`There is no project directory ${project}.`);
    return dir;
  }

  /** Waits for the session's turn to end, at most waitMs; then answers "running". */
  private wait(sessionId: string, title: string): Promise<DelegationResult> {
    return new Promise((resolveResult) => {
      const running = (note: string): DelegationResult => ({ sessionId, title, outcome: "running", finalText: "", changedFiles: [], note });
      if (this.stopping) return resolveResult(running("The bot is restarting; OpenCode keeps working, and its result will come to you as a message in this thread."));
      let done = false;
      const waiter: Waiter = (r) => {
        if (done) return;
        done = true;
        clearTimeout(timeout);
        resolveResult(r);
      };
      const timeout = setTimeout(() => {
        const list = this.watched.get(sessionId);
        list?.splice(list.indexOf(waiter), 1);
        waiter(running(`OpenCode is still working. Call opencode_task_status with session ${sessionId} to wait for the result; if you end your turn instead, the result will come to you as a message.`));
      }, this.d.waitMs);
      this.watch(sessionId).push(waiter);
    });
  }

  private watch(sessionId: string): Waiter[] {
    let list = this.watched.get(sessionId);
    if (!list) this.watched.set(sessionId, (list = []));
    this.timer ??= setInterval(() => void this.poll(), 250);
    return list;
  }

  /** The runner's turn is over (its final reply posted): read the result, hand it to whoever waits. */
  private async poll(): Promise<void> {
    const oc = this.d.backend;
    if (!oc.ready()) return;
    for (const [sessionId, waiters] of [...this.watched]) {
      if (oc.runner.isBusy(sessionId) || oc.runner.queueLength(sessionId) > 0) continue;
      const row = this.store.get(sessionId);
      this.watched.delete(sessionId);
      if (!row) continue;
      if (row.status !== "running") {
        // Ended while this call waited in line behind the one that read the result.
        if (row.result && waiters.length > 0) {
          this.store.claim(sessionId, "tool");
          for (const w of waiters) w(row.result);
        }
        continue;
      }
      const read = await this.result(row).catch((err: unknown): DelegationResult => ({ sessionId, title: row.title, outcome: "failed", finalText: "", changedFiles: [], note: `Could not read the result: ${describeError(err)}` }));
      const result: DelegationResult = this.stoppedByPerson.delete(sessionId) ? { ...read, outcome: "aborted" } : read;
      this.store.finish(sessionId, result);
      this.d.log.info({ sessionId, outcome: result.outcome, waiting: waiters.length }, "delegated OpenCode task ended");
      // The result goes back as the waiting call's answer; with none waiting, another way (a
      // message in the thread). A task stopped on purpose is not reported.
      if (waiters.length > 0 || result.outcome === "aborted") this.store.claim(sessionId, "tool");
      if (waiters.length > 0) for (const w of waiters) w(result);
      else if (result.outcome !== "aborted") for (const l of this.finishedListeners) l({ ...row, status: result.outcome, result });
    }
    if (this.watched.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** What the last turn of a session came to: the assistant's last words, the changed files, how it ended. */
  private async result(row: DelegationRow): Promise<DelegationResult> {
    const client = this.d.backend.conn.client;
    const res = await client.session.messages({ sessionID: row.sessionId, directory: row.directory });
    const messages = (res.data ?? []) as Array<{ info: Message; parts: Part[] }>;
    const lastUser = [...messages].reverse().find((m) => m.info.role === "user");
    const answers = messages.filter((m) => m.info.role === "assistant" && lastUser !== undefined && m.info.parentID === lastUser.info.id);
    const texts = answers.map((m) => m.parts.filter((p) => p.type === "text" && !(p as { synthetic?: boolean }).synthetic).map((p) => (p as { text: string }).text).join("").trim()).filter(Boolean);
    const error = answers.map((m) => (m.info as { error?: { name: string; data?: { message?: string } } }).error).find(Boolean);
    // The turn's own patches and edits name what it changed (the session's diff needs a git project).
    const patched = answers.flatMap((m) => m.parts.flatMap((p) => (p.type === "patch" ? p.files : p.type === "tool" && p.state.status === "completed" && editTools.has(p.tool) ? [String(p.state.input.filePath ?? "")] : [])));
    const diff = patched.length > 0 ? undefined : await client.session.diff({ sessionID: row.sessionId, directory: row.directory }).catch(() => undefined);
    const named = [...patched, ...(diff?.data ?? []).map((f) => f.file)].filter((f): f is string => typeof f === "string" && f.length > 0);
    const changedFiles = [...new Set(named.map((f) => (isAbsolute(f) ? relative(row.directory, f) : f)))];
    const outcome: DelegationOutcome = error?.name === "MessageAbortedError" ? "aborted" : error ? "failed" : answers.length === 0 ? "failed" : "done";
    const note = error && outcome === "failed" ? `${error.name}: ${error.data?.message ?? ""}`.trim() : answers.length === 0 ? "OpenCode gave no answer." : undefined;
    return { sessionId: row.sessionId, title: row.title, outcome, finalText: texts[texts.length - 1] ?? "", changedFiles, ...(note ? { note } : {}) };
  }

  /** `!letta abort` in a thread: stops the delegated work streaming there. Returns the sessions stopped. */
  async abortThread(roomId: string, rootEventId: string): Promise<string[]> {
    const stopped: string[] = [];
    for (const row of this.store.inThread(roomId, rootEventId)) {
      if (row.status !== "running") continue;
      this.stoppedByPerson.add(row.sessionId);
      await this.d.backend.runner.abort(this.threadOf(row));
      stopped.push(row.sessionId);
    }
    return stopped;
  }

  /** After a restart: the tasks still running are watched again (the runner resumes their replies). */
  reconcile(): void {
    for (const row of this.store.running()) this.watch(row.sessionId);
  }

  /** Waiting tool calls answer "still running" at once: a restart must not leave the agent hanging. */
  stop(): void {
    this.stopping = true;
    for (const [sessionId, waiters] of this.watched) {
      const title = this.store.get(sessionId)?.title ?? "";
      for (const w of waiters.splice(0)) w({ sessionId, title, outcome: "running", finalText: "", changedFiles: [], note: "The bot is restarting; OpenCode keeps working, and its result will come to you as a message in this thread." });
    }
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

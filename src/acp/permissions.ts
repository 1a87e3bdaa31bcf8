import { randomUUID } from "node:crypto";
import type { PermissionOption, RequestPermissionRequest, RequestPermissionResponse } from "@agentclientprotocol/sdk";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage, type ThreadTarget } from "../matrix/content.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { replyForReaction, type PermissionReply } from "../turns/permission-text.ts";
import { askText, attachmentOf, outcomeText, withPlainBody } from "../turns/permission-text.ts";
import type { PermissionRow, PermissionStore, PermissionSubject } from "../store/permissions.ts";
import type { ThreadRow } from "../store/threads.ts";
import { permissionPushBody, permissionPushLine } from "../turns/notices.ts";

const outcomeLabel: Record<PermissionReply | "expired", string> = {
  once: "✅ allowed once",
  always: "♾️ allowed always",
  reject: "❌ rejected",
  expired: "⌛ no longer pending",
};

/** Which option kind answers each reply; the first one the agent offers wins. */
const kindsFor: Record<PermissionReply, Array<PermissionOption["kind"]>> = {
  once: ["allow_once"],
  always: ["allow_always"],
  reject: ["reject_once", "reject_always"],
};

const str = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);

/**
 * What a request asks, shown whole: the command when there is one, else every path, pattern or
 * URL it names, else its title. The name is the tool's as it started (`bash`), or its kind.
 */
export function acpSubject(req: RequestPermissionRequest, toolName: string | undefined): PermissionSubject {
  const call = req.toolCall;
  const input = (call.rawInput !== null && typeof call.rawInput === "object" ? call.rawInput : {}) as Record<string, unknown>;
  const permission = toolName ?? call.kind ?? "a tool";
  const command = str(input.command);
  if (command !== undefined) return { permission, command };
  const items: string[] = [];
  const add = (v: unknown): void => {
    if (typeof v === "string" && v && !items.includes(v)) items.push(v);
  };
  for (const key of ["filePath", "file_path", "path", "url", "pattern"]) add(input[key]);
  if (Array.isArray(input.patterns)) input.patterns.forEach(add);
  for (const loc of call.locations ?? []) add(loc.path);
  if (items.length === 0) add(call.title);
  return { permission, items };
}

interface Waiting {
  options: PermissionOption[];
  resolve: (r: RequestPermissionResponse) => void;
}

export interface AcpPermissionDeps {
  agentName: string;
  /** The agent as people read it in requests ("opencode (ACP)"). */
  label: string;
  prefix: string;
  store: PermissionStore;
  sender: MatrixSender;
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
}

/**
 * An ACP agent's `session/request_permission`, asked and answered in the session's thread exactly
 * like OpenCode's: the same message, the same table, ✅ ♾️ ❌ or `allow`/`deny`. The agent waits
 * on the JSON-RPC request, so an answer only counts while its process lives.
 */
export class AcpPermissions {
  private readonly d: AcpPermissionDeps;
  private readonly waiting = new Map<string, Waiting>();
  private readonly idPrefix: string;

  constructor(deps: AcpPermissionDeps) {
    this.d = deps;
    this.idPrefix = `acp-${deps.agentName}-`;
  }

  /** Whether a stored request is this agent's (the table is shared with OpenCode and other agents). */
  owns(row: PermissionRow): boolean {
    return row.requestId.startsWith(this.idPrefix);
  }

  /** Shows the request in the thread and resolves with the answer (cancelled when `signal` aborts first). */
  async ask(thread: ThreadRow, who: string, req: RequestPermissionRequest, toolName: string | undefined, signal: AbortSignal): Promise<RequestPermissionResponse> {
    const requestId = `${this.idPrefix}${randomUUID().slice(0, 12)}`;
    const subject = acpSubject(req, toolName);
    const answered = new Promise<RequestPermissionResponse>((resolve) => this.waiting.set(requestId, { options: req.options, resolve }));
    this.d.store.add({ requestId, sessionId: req.sessionId, roomId: thread.roomId, rootEventId: thread.rootEventId, summary: `use ${subject.permission}`, subject, askedOf: [who] });
    const onAbort = (): void => void this.expire(requestId);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const whoName = await this.d.displayName(thread.roomId, who).catch(() => who);
      const text = askText(subject, requestId, { markdown: pill(who, whoName).markdown, name: whoName }, this.d.prefix, this.d.label);
      const target: ThreadTarget = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId };
      // The plain body is what a lock screen shows: its first line says what will run.
      const body = permissionPushBody(permissionPushLine(whoName, this.d.label, subject), text.plain);
      const eventId = await this.d.sender.send(thread.roomId, withPlainBody(threadMessage(target, text.markdown, { mentions: [who] }), body));
      this.d.store.setMessage(requestId, eventId);
      await this.attachWhole(subject, requestId, { ...target, replyTo: eventId });
      for (const key of ["✅", "♾️", "❌"]) await this.d.sender.react(thread.roomId, eventId, key);
      if (signal.aborted) await this.expire(requestId);
      return await answered;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.waiting.delete(requestId);
    }
  }

  private async attachWhole(subject: PermissionSubject, requestId: string, target: ThreadTarget): Promise<void> {
    const file = attachmentOf(subject, requestId);
    if (!file) return;
    try {
      await this.d.sender.sendFile(target, Buffer.from(file.text, "utf8"), file.name, "text/plain");
    } catch (err) {
      this.d.log.warn({ err, requestId }, "could not attach the whole permission request");
      const note = `⚠️ \`${file.name}\` could not be attached: the message above shows only the start of what is asked. Reject it unless you know the rest.`;
      await this.d.sender.send(target.roomId, threadMessage(target, note, { notice: true })).catch(() => undefined);
    }
  }

  /** A reaction on one of this agent's requests, in the request's own room; false if not one. */
  async onReaction(roomId: string, eventId: string, key: string, by: string): Promise<boolean> {
    const row = this.d.store.byMessage(eventId);
    const reply = replyForReaction(key);
    if (!row || !this.owns(row) || row.roomId !== roomId || !reply || row.status !== "pending") return false;
    await this.answer(row, reply, by);
    return true;
  }

  /** The oldest pending request of a thread, for `allow` / `deny`. */
  pendingIn(thread: ThreadRow): PermissionRow | undefined {
    const row = this.d.store.pendingInThread(thread.roomId, thread.rootEventId);
    return row && this.owns(row) ? row : undefined;
  }

  async answer(row: PermissionRow, reply: PermissionReply, by: string, reason?: string): Promise<void> {
    const waiting = this.waiting.get(row.requestId);
    if (!waiting) {
      await this.close(row, "expired", null);
      throw new Error(`the request is no longer pending: the ${this.d.agentName} process that asked has stopped`);
    }
    const option = kindsFor[reply].map((k) => waiting.options.find((o) => o.kind === k)).find((o) => o !== undefined);
    if (!option) throw new Error(`${this.d.agentName} offers no “${outcomeLabel[reply].slice(3)}” answer here; its options: ${waiting.options.map((o) => o.name).join(", ")}`);
    if (!this.d.store.decide(row.requestId, reply, by)) return;
    waiting.resolve({ outcome: { outcome: "selected", optionId: option.optionId } });
    await this.showOutcome(row, reply, by, reason && `${reason} (not passed to the agent)`);
  }

  private async expire(requestId: string): Promise<void> {
    this.waiting.get(requestId)?.resolve({ outcome: { outcome: "cancelled" } });
    const row = this.d.store.get(requestId);
    if (row) await this.close(row, "expired", null);
  }

  /**
   * Requests nobody can answer any more, closed in their threads: those of a previous run, and
   * with `waiting` also those the (dead) agent process is still waiting for.
   */
  async expireAll(waiting: boolean): Promise<void> {
    for (const row of this.d.store.pending().filter((r) => this.owns(r))) {
      if (waiting || !this.waiting.has(row.requestId)) await this.expire(row.requestId);
    }
  }

  /** A cancelled turn: its requests are answered `cancelled`, as ACP asks of a client. */
  async cancelIn(thread: ThreadRow): Promise<void> {
    for (let row = this.pendingIn(thread); row; row = this.pendingIn(thread)) await this.expire(row.requestId);
  }

  private async close(row: PermissionRow, outcome: "expired", by: null): Promise<void> {
    if (this.d.store.decide(row.requestId, outcome, by)) await this.showOutcome(row, outcome, by);
  }

  private async showOutcome(row: PermissionRow, outcome: PermissionReply | "expired", by: string | null, reason?: string): Promise<void> {
    if (!row.messageEventId) return;
    const why = reason ? ` — “${reason}”` : "";
    const name = by === null ? undefined : await this.d.displayName(row.roomId, by).catch(() => by);
    const after = by === null || name === undefined ? { markdown: why, plain: why } : { markdown: ` by ${pill(by, name).markdown}${why}`, plain: ` by ${name}${why}` };
    const text = outcomeText(row, outcomeLabel[outcome], after, this.d.label);
    await this.d.sender
      .send(row.roomId, withPlainBody(editMessage(row.messageEventId, text.markdown, {}), text.plain))
      .catch((err: unknown) => this.d.log.warn({ err }, "could not update the permission message"));
  }
}

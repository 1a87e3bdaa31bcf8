import type { Event } from "@opencode-ai/sdk/v2";
import type { ApprovalReply } from "../commands/approvals.ts";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { OpencodeBackend } from "../opencode/backend.ts";
import type { Delegator } from "../opencode/delegate.ts";
import { describeError } from "../opencode/errors.ts";
import { replyForReaction } from "../turns/permission-text.ts";
import { attachmentOf, askText, outcomeText, subjectOf, withPlainBody, type AskedRequest } from "../turns/permission-text.ts";
import type { PermissionRow, PermissionStore } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";

const labels: Record<ApprovalReply | "expired", string> = { once: "✅ allowed once", always: "♾️ allowed always", reject: "❌ rejected", expired: "⌛ no longer pending" };

export interface DelegatedPermissionsDeps {
  opencode: OpencodeBackend;
  delegator: Delegator;
  store: PermissionStore;
  threads: ThreadStore;
  sender: MatrixSender;
  names: DisplayNames;
  log: Logger;
  /** The Letta prefix: `!letta allow` answers in a Letta thread. */
  prefix: string;
}

/**
 * OpenCode's permission requests in delegated work, asked in the Letta thread the work streams
 * into, exactly like `!oc` asks them (the whole command, ✅ ♾️ ❌ pre-added, a mention of who
 * asked the agent). The OpenCode permission desk asks only in OpenCode threads; a delegated
 * session has none (until someone `!oc attach`es it: then that thread asks).
 */
export class DelegatedPermissions {
  private readonly d: DelegatedPermissionsDeps;

  constructor(deps: DelegatedPermissionsDeps) {
    this.d = deps;
    deps.opencode.conn.onEvent((e: Event) => {
      if (e.type === "permission.asked") void this.ask(e.properties as AskedRequest & { sessionID: string }).catch((err: unknown) => deps.log.error({ err }, "asking a delegated permission failed"));
    });
  }

  private delegatedRunning(sessionId: string): boolean {
    return this.d.delegator.store.get(sessionId)?.status === "running" && this.d.threads.bySession("opencode", sessionId).length === 0;
  }

  private async ask(req: AskedRequest & { sessionID: string }): Promise<void> {
    if (!this.delegatedRunning(req.sessionID)) return;
    const row = this.d.delegator.store.get(req.sessionID);
    if (!row) return;
    const who = row.promptedBy;
    const name = await this.d.names.get(row.roomId, who).catch(() => who);
    const subject = subjectOf(req);
    if (!this.d.store.add({ requestId: req.id, sessionId: req.sessionID, roomId: row.roomId, rootEventId: row.rootEventId, summary: `use ${subject.permission}`, subject, askedOf: [who] })) return;
    const text = askText(subject, req.id, { markdown: pill(who, name).markdown, name }, this.d.prefix);
    const target = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.headlineEventId };
    const eventId = await this.d.sender.send(row.roomId, withPlainBody(threadMessage(target, text.markdown, { mentions: [who] }), text.plain));
    this.d.store.setMessage(req.id, eventId);
    const file = attachmentOf(subject, req.id);
    if (file) await this.d.sender.sendFile({ ...target, replyTo: eventId }, Buffer.from(file.text, "utf8"), file.name, "text/plain").catch((err: unknown) => this.d.log.warn({ err }, "could not attach the whole permission request"));
    for (const key of ["✅", "♾️", "❌"]) await this.d.sender.react(row.roomId, eventId, key);
  }

  private ours(row: PermissionRow | undefined, roomId: string): row is PermissionRow {
    return row !== undefined && row.roomId === roomId && row.status === "pending" && this.d.delegator.store.get(row.sessionId) !== undefined && this.d.threads.get(row.roomId, row.rootEventId)?.backend !== "opencode";
  }

  /** A reaction on one of these requests, in its own room. */
  async onReaction(roomId: string, eventId: string, key: string, by: string): Promise<boolean> {
    const row = this.d.store.byMessage(eventId);
    const reply = replyForReaction(key);
    if (!reply || !this.ours(row, roomId)) return false;
    await this.answer(row, reply, by);
    return true;
  }

  /** `!letta allow|deny` in a Letta thread. */
  async answerInThread(roomId: string, rootEventId: string, reply: ApprovalReply, by: string, reason?: string): Promise<string | undefined> {
    const row = this.d.store.pendingInThread(roomId, rootEventId);
    if (!this.ours(row, roomId)) return undefined;
    await this.answer(row, reply, by, reason);
    return `${labels[reply]}: OpenCode's request to use **${row.subject?.permission ?? row.summary}**.`;
  }

  /** After `abort`: requests of the stopped work in this thread can no longer be answered. */
  async expireInThread(roomId: string, rootEventId: string): Promise<void> {
    for (let row = this.d.store.pendingInThread(roomId, rootEventId); this.ours(row, roomId); row = this.d.store.pendingInThread(roomId, rootEventId)) {
      if (this.d.store.decide(row.requestId, "expired", null)) await this.show(row, "expired", null);
    }
  }

  private async answer(row: PermissionRow, reply: ApprovalReply, by: string, reason?: string): Promise<void> {
    // Decided first: OpenCode's own "replied" event must not be taken for an answer from outside Matrix.
    if (!this.d.store.decide(row.requestId, reply, by)) return;
    const directory = this.d.delegator.store.get(row.sessionId)?.directory ?? this.d.opencode.roomDirectory(row.roomId);
    const res = await this.d.opencode.conn.client.permission.reply({ requestID: row.requestId, directory, reply, ...(reason ? { message: reason } : {}) });
    if (res.error !== undefined) {
      await this.show(row, "expired", null);
      throw new Error(`OpenCode did not take the answer: ${describeError(res.error)}`);
    }
    await this.show(row, reply, by, reason);
  }

  /** At start-up: requests that went away while the bot was down are closed. */
  async reconcile(): Promise<void> {
    const pending = this.d.store.pending().filter((r) => this.ours(r, r.roomId));
    if (pending.length === 0) return;
    const live = new Set(((await this.d.opencode.conn.client.permission.list()).data ?? []).map((p) => p.id));
    for (const row of pending) if (!live.has(row.requestId) && this.d.store.decide(row.requestId, "expired", null)) await this.show(row, "expired", null);
  }

  private async show(row: PermissionRow, outcome: ApprovalReply | "expired", by: string | null, reason?: string): Promise<void> {
    if (!row.messageEventId) return;
    const why = reason ? ` — “${reason}”` : "";
    const name = by === null ? undefined : await this.d.names.get(row.roomId, by).catch(() => by);
    const after = by === null || name === undefined ? { markdown: why, plain: why } : { markdown: ` by ${pill(by, name).markdown}${why}`, plain: ` by ${name}${why}` };
    const text = outcomeText(row, labels[outcome], after);
    await this.d.sender.send(row.roomId, withPlainBody(editMessage(row.messageEventId, text.markdown, {}), text.plain)).catch((err: unknown) => this.d.log.warn({ err }, "could not update the permission message"));
  }
}

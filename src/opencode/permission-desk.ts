import type { Event } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage, type ThreadTarget } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { PermissionRow, PermissionStore, PermissionSubject } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";
import { permissionPushBody, permissionPushLine } from "../turns/notices.ts";
import type { OpencodeConnection } from "./connection.ts";
import { describeError } from "./errors.ts";
import { type AskedRequest, askText, attachmentOf, outcomeText, subjectOf, withPlainBody } from "./permission-text.ts";

export { replyForReaction, type PermissionReply } from "../turns/permission-text.ts";
import { replyForReaction, type PermissionReply } from "../turns/permission-text.ts";

const outcomeLabel: Record<PermissionReply | "expired", string> = {
  once: "✅ allowed once",
  always: "♾️ allowed always",
  reject: "❌ rejected",
  expired: "⌛ no longer pending",
};

interface AskedEvent extends AskedRequest {
  sessionID: string;
}

/**
 * OpenCode's permission requests, asked and answered in the session's thread: by reaction
 * (✅ ♾️ ❌) or by `!oc allow [always]` / `!oc deny [reason]`. Requests live in SQLite, so
 * one asked before a restart can be answered after it.
 */
export class PermissionDesk {
  private readonly conn: OpencodeConnection;
  private readonly store: PermissionStore;
  private readonly threads: ThreadStore;
  private readonly sender: MatrixSender;
  private readonly log: Logger;
  private readonly prompter: (sessionId: string) => string | undefined;
  private readonly prefix: string;
  private readonly directoryOf: (sessionId: string) => string;
  private readonly names: DisplayNames;
  private readonly owns: (row: { roomId: string; rootEventId: string }) => boolean;

  constructor(opts: {
    conn: OpencodeConnection;
    store: PermissionStore;
    threads: ThreadStore;
    sender: MatrixSender;
    log: Logger;
    prefix: string;
    prompter: (sessionId: string) => string | undefined;
    directoryOf: (sessionId: string) => string;
    names: DisplayNames;
    /** With several OpenCode servers: the threads of this desk's server (server-scope.ts). Default: all. */
    owns?: ((row: { roomId: string; rootEventId: string }) => boolean) | undefined;
  }) {
    this.names = opts.names;
    this.owns = opts.owns ?? (() => true);
    this.conn = opts.conn;
    this.store = opts.store;
    this.threads = opts.threads;
    this.sender = opts.sender;
    this.log = opts.log;
    this.prompter = opts.prompter;
    this.prefix = opts.prefix;
    this.directoryOf = opts.directoryOf;
    opts.conn.onEvent((e) => void this.onEvent(e).catch((err: unknown) => this.log.error({ err }, "permission event failed")));
  }

  private async onEvent(event: Event): Promise<void> {
    if (event.type === "permission.asked") await this.ask(event.properties as AskedEvent);
    if (event.type === "permission.replied") {
      const { requestID, reply } = event.properties as { requestID: string; reply: PermissionReply };
      const row = this.store.get(requestID);
      if (row && this.store.decide(requestID, reply, null)) await this.showOutcome(row, reply, null);
    }
  }

  private async ask(req: AskedEvent): Promise<void> {
    const thread = this.threads.bySession("opencode", req.sessionID)[0];
    if (!thread) return; // a session without a thread: the notify plugin covers those
    const who = this.prompter(req.sessionID) ?? thread.startedBy;
    const whoName = await this.names.get(thread.roomId, who);
    const subject = subjectOf(req);
    const summary = `use ${subject.permission}`;
    if (!this.store.add({ requestId: req.id, sessionId: req.sessionID, roomId: thread.roomId, rootEventId: thread.rootEventId, summary, subject, askedOf: [who] })) return;
    const text = askText(subject, req.id, { markdown: pill(who, whoName).markdown, name: whoName }, this.prefix);
    const target = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId };
    // The push: its first line (all a lock screen shows) says who asked and what will run.
    const body = permissionPushBody(permissionPushLine(whoName, "OpenCode", subject), text.plain);
    const eventId = await this.sender.send(thread.roomId, withPlainBody(threadMessage(target, text.markdown, { mentions: [who] }), body));
    this.store.setMessage(req.id, eventId);
    await this.attachWhole(subject, req.id, { ...target, replyTo: eventId });
    // One tap on a phone: the answers are already there to click.
    for (const key of ["✅", "♾️", "❌"]) await this.sender.react(thread.roomId, eventId, key);
  }

  /** A request too long to show whole: all of it as a file, right under the message that says so. */
  private async attachWhole(subject: PermissionSubject, requestId: string, target: ThreadTarget): Promise<void> {
    const file = attachmentOf(subject, requestId);
    if (!file) return;
    try {
      await this.sender.sendFile(target, Buffer.from(file.text, "utf8"), file.name, "text/plain");
    } catch (err) {
      this.log.warn({ err, requestId }, "could not attach the whole permission request");
      const note = `⚠️ \`${file.name}\` could not be attached: the message above shows only the start of what is asked. Reject it unless you know the rest.`;
      await this.sender.send(target.roomId, threadMessage(target, note, { notice: true })).catch(() => undefined);
    }
  }

  /**
   * A reaction on one of our permission messages. Returns false if it was not one. It counts
   * only in the request's own room: a reaction can point at an event id of any room.
   */
  async onReaction(roomId: string, messageEventId: string, key: string, by: string): Promise<boolean> {
    const row = this.store.byMessage(messageEventId);
    const reply = replyForReaction(key);
    if (!row || row.roomId !== roomId || !reply || row.status !== "pending" || !this.isOurs(row)) return false;
    await this.answer(row, reply, by);
    return true;
  }

  /**
   * The table is shared with other backends (ACP agents ask too) and other OpenCode servers; a
   * row of a thread that is gone was ours (if this is the server `default`).
   */
  private isOurs(row: PermissionRow): boolean {
    return (this.threads.get(row.roomId, row.rootEventId)?.backend ?? "opencode") === "opencode" && this.owns(row);
  }

  /** The pending request of a thread, for `!oc allow` / `!oc deny`. */
  pendingIn(roomId: string, rootEventId: string): PermissionRow | undefined {
    const row = this.store.pendingInThread(roomId, rootEventId);
    return row && this.owns(row) ? row : undefined;
  }

  async answer(row: PermissionRow, reply: PermissionReply, by: string, reason?: string): Promise<void> {
    const res = await this.conn.client.permission.reply({
      requestID: row.requestId,
      directory: this.directoryOf(row.sessionId),
      reply,
      ...(reason ? { message: reason } : {}),
    });
    if (res.error !== undefined) {
      // The server no longer knows it (answered elsewhere, or the server restarted).
      if (this.store.decide(row.requestId, "expired", null)) await this.showOutcome(row, "expired", null);
      throw new Error(`OpenCode did not take the answer: ${describeError(res.error)}`);
    }
    if (this.store.decide(row.requestId, reply, by)) await this.showOutcome(row, reply, by, reason);
  }

  /** At start-up: requests that went away while the bot was down are closed in their threads. */
  async reconcile(): Promise<void> {
    const pending = this.store.pending().filter((row) => this.isOurs(row));
    if (pending.length === 0) return;
    const res = await this.conn.client.permission.list();
    const live = new Set((res.data ?? []).map((p) => p.id));
    for (const row of pending) {
      if (!live.has(row.requestId) && this.store.decide(row.requestId, "expired", null)) await this.showOutcome(row, "expired", null);
    }
  }

  private async showOutcome(row: PermissionRow, outcome: PermissionReply | "expired", by: string | null, reason?: string): Promise<void> {
    if (!row.messageEventId) return;
    const why = reason ? ` — “${reason}”` : "";
    const nobody = `${outcome === "expired" ? "" : " outside Matrix"}${why}`;
    const name = by === null ? undefined : await this.names.get(row.roomId, by);
    const after = by === null || name === undefined ? { markdown: nobody, plain: nobody } : { markdown: ` by ${pill(by, name).markdown}${why}`, plain: ` by ${name}${why}` };
    const text = outcomeText(row, outcomeLabel[outcome], after);
    await this.sender.send(row.roomId, withPlainBody(editMessage(row.messageEventId, text.markdown, {}), text.plain)).catch((err: unknown) => this.log.warn({ err }, "could not update the permission message"));
  }
}


import type { Event } from "@opencode-ai/sdk/v2";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { PermissionRow, PermissionStore } from "../store/permissions.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { OpencodeConnection } from "./connection.ts";
import { describeError } from "./errors.ts";

export type PermissionReply = "once" | "always" | "reject";

/** Reaction keys people may use; with and without the emoji variation selector. */
const reactionReplies: Record<string, PermissionReply> = {
  "✅": "once", "✔️": "once", "👍": "once", "♾️": "always", "♾": "always", "❌": "reject", "👎": "reject", "🚫": "reject",
};

export function replyForReaction(key: string): PermissionReply | undefined {
  return reactionReplies[key.trim()];
}

const outcomeText: Record<PermissionReply | "expired", string> = {
  once: "✅ allowed once",
  always: "♾️ allowed always",
  reject: "❌ rejected",
  expired: "⌛ no longer pending",
};

interface AskedEvent {
  id: string;
  sessionID: string;
  permission: string;
  patterns?: string[];
  metadata?: Record<string, unknown>;
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
  }) {
    this.names = opts.names;
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
    const summary = describeRequest(req);
    if (!this.store.add({ requestId: req.id, sessionId: req.sessionID, roomId: thread.roomId, rootEventId: thread.rootEventId, summary, askedOf: [who] })) return;
    const p = this.prefix;
    const text =
      `🔐 **Permission needed** — ${pill(who, whoName).markdown}: OpenCode wants to ${summary}.\n\n` +
      `React ✅ allow once · ♾️ allow always · ❌ reject — or write \`${p} allow\`, \`${p} allow always\`, \`${p} deny [reason]\` in this thread.`;
    const target = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId };
    const eventId = await this.sender.send(thread.roomId, threadMessage(target, text, { mentions: [who] }));
    this.store.setMessage(req.id, eventId);
    // One tap on a phone: the answers are already there to click.
    for (const key of ["✅", "♾️", "❌"]) await this.sender.react(thread.roomId, eventId, key);
  }

  /** A reaction on one of our permission messages. Returns false if it was not one. */
  async onReaction(messageEventId: string, key: string, by: string): Promise<boolean> {
    const row = this.store.byMessage(messageEventId);
    const reply = replyForReaction(key);
    if (!row || !reply || row.status !== "pending") return false;
    await this.answer(row, reply, by);
    return true;
  }

  /** The pending request of a thread, for `!oc allow` / `!oc deny`. */
  pendingIn(roomId: string, rootEventId: string): PermissionRow | undefined {
    return this.store.pendingInThread(roomId, rootEventId);
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
    const pending = this.store.pending();
    if (pending.length === 0) return;
    const res = await this.conn.client.permission.list();
    const live = new Set((res.data ?? []).map((p) => p.id));
    for (const row of pending) {
      if (!live.has(row.requestId) && this.store.decide(row.requestId, "expired", null)) await this.showOutcome(row, "expired", null);
    }
  }

  private async showOutcome(row: PermissionRow, outcome: PermissionReply | "expired", by: string | null, reason?: string): Promise<void> {
    if (!row.messageEventId) return;
    const who = by ? ` by ${pill(by, await this.names.get(row.roomId, by)).markdown}` : outcome === "expired" ? "" : " outside Matrix";
    const why = reason ? ` — “${reason}”` : "";
    const text = `🔐 OpenCode asked to ${row.summary} — **${outcomeText[outcome]}**${who}${why}.`;
    await this.sender.send(row.roomId, editMessage(row.messageEventId, text, {})).catch((err: unknown) => this.log.warn({ err }, "could not update the permission message"));
  }
}

function describeRequest(req: AskedEvent): string {
  const command = typeof req.metadata?.command === "string" ? req.metadata.command : undefined;
  const what = command ?? (req.patterns ?? []).join(", ");
  const code = what ? ` \`${what.replace(/`/g, "'").slice(0, 200)}\`` : "";
  return `use **${req.permission}**${code}`;
}

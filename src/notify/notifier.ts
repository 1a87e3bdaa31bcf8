import type { Logger } from "../log.ts";
import { roomMessage, threadMessage, type MessageContent } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { ThreadStore } from "../store/threads.ts";
import type { TurnStore } from "../store/turns.ts";
import { defuseHtml, defuseText } from "./defuse.ts";
import { sessionOf, type NotifyPayload } from "./payload.ts";

/** What POST /notify answers: an HTTP status and a JSON body. */
export interface NotifyResult {
  status: number;
  body: Record<string, unknown>;
}

export interface NotifierDeps {
  threads: Pick<ThreadStore, "bySession">;
  turns: Pick<TurnStore, "lastForThread">;
  /** True while the bot streams a turn of this session into its thread (TurnRunner.isBusy). */
  isStreaming: (sessionId: string) => boolean;
  sender: Pick<MatrixSender, "send">;
  log: Logger;
  /** notify.defaultRoom: where notifications of sessions without a thread go. */
  defaultRoom?: string | undefined;
  /** A `completed` this soon after the bot itself finished a turn of the session repeats that reply. Default 15 s. */
  recentTurnMs?: number;
}

const icons: Record<string, string> = { completed: "✅", error: "⚠️", permission: "🔐", file_edit: "✏️" };

/**
 * Opens every notice: the title and message are written by whoever holds the notify token (the
 * agent, by design), never by the bot or a person, and the reader must see that at once.
 */
export const notifyOrigin = "🔔 From OpenCode (notify):";

/** Statuses whose news the bot's own live reply already carries while it streams the session. */
const streamedStatuses = new Set(["completed", "error", "permission", "file_edit"]);

/**
 * Posts notifications from outside (the OpenCode plugin, scripts) into Matrix: into the thread
 * of the session when there is one, else into the configured default room, as an m.notice that
 * says where it comes from and mentions nobody (no m.mentions, no `@room`, no pills).
 */
export class Notifier {
  private readonly d: NotifierDeps;

  constructor(deps: NotifierDeps) {
    this.d = deps;
  }

  get defaultRoom(): string | undefined {
    return this.d.defaultRoom;
  }

  async deliver(p: NotifyPayload): Promise<NotifyResult> {
    const sessionId = sessionOf(p);
    const thread = sessionId === undefined ? undefined : this.threadOf(sessionId);
    const log = this.d.log.child({ sessionId, status: p.status });
    if (thread && sessionId !== undefined) {
      const skip = this.duplicateReason(p, sessionId, thread);
      if (skip !== undefined) {
        log.info({ reason: skip }, "notification skipped");
        return { status: 200, body: { posted: false, reason: skip, roomId: thread.roomId, threadRoot: thread.rootEventId } };
      }
      const target = { roomId: thread.roomId, threadRoot: thread.rootEventId, replyTo: thread.rootEventId };
      return this.post(thread.roomId, defused(threadMessage(target, this.text(p, undefined), { notice: true, mentions: [] })), log, { threadRoot: thread.rootEventId });
    }
    const room = this.d.defaultRoom;
    if (room === undefined) {
      const error =
        sessionId === undefined
          ? "no sessionId in the notification and notify.defaultRoom is not set: nowhere to post it"
          : `session ${sessionId} has no thread in Matrix and notify.defaultRoom is not set: nowhere to post it`;
      log.info("notification refused: no thread and no default room");
      return { status: 404, body: { error } };
    }
    return this.post(room, defused(roomMessage(this.text(p, sessionId), { notice: true, mentions: [] })), log, {});
  }

  /** The thread a session belongs to; if it was attached to several, the one used last. */
  private threadOf(sessionId: string): ReturnType<ThreadStore["bySession"]>[number] | undefined {
    const rows = this.d.threads.bySession("opencode", sessionId);
    return rows.sort((a, b) => b.lastActivityAt - a.lastActivityAt)[0];
  }

  private duplicateReason(p: NotifyPayload, sessionId: string, thread: { roomId: string; rootEventId: string }): string | undefined {
    if (!streamedStatuses.has(p.status)) return undefined;
    // The permission desk asks in the thread itself, reaction buttons and all.
    if (p.status === "permission") return `the bot asks for session ${sessionId}'s permissions in its thread itself`;
    if (this.d.isStreaming(sessionId)) return `the bot is streaming session ${sessionId} into its thread right now; the notice would repeat its reply`;
    if (p.status === "completed") {
      const last = this.d.turns.lastForThread(thread.roomId, thread.rootEventId);
      const recent = this.d.recentTurnMs ?? 15_000;
      if (last && (last.status === "running" || (last.finishedAt !== null && Date.now() - last.finishedAt < recent))) {
        return `the bot has just posted the reply of session ${sessionId}'s turn in its thread`;
      }
    }
    return undefined;
  }

  private text(p: NotifyPayload, sessionId: string | undefined): string {
    const icon = icons[p.status];
    const message = defuseText(p.message.trim());
    const head = `${notifyOrigin} ${icon ? `${icon} ` : ""}**${escapeInline(defuseText(p.title))}**${message ? ` — ${message}` : ""}`;
    const ids: string[] = [];
    if (sessionId !== undefined) ids.push(`session \`${sessionId}\``);
    if (p.sessionId !== undefined && p.taskId !== undefined && p.taskId !== null && String(p.taskId) !== p.sessionId) ids.push(`task \`${String(p.taskId)}\``);
    return ids.length > 0 ? `${head}\n\n${ids.join(" · ")}` : head;
  }

  private async post(roomId: string, content: Record<string, unknown>, log: Logger, extra: Record<string, unknown>): Promise<NotifyResult> {
    try {
      const eventId = await this.d.sender.send(roomId, content);
      log.info({ roomId, eventId }, "notification posted");
      return { status: 200, body: { posted: true, eventId, roomId, ...extra } };
    } catch (err) {
      log.warn({ err, roomId }, "could not post a notification");
      return { status: 502, body: { error: `could not post to Matrix room ${roomId}: ${(err as Error).message ?? String(err)}` } };
    }
  }
}

/** The content with pill links unwrapped and `@room` defused in its HTML too (raw HTML in the payload included). */
function defused(content: MessageContent): MessageContent {
  return typeof content.formatted_body === "string" ? { ...content, formatted_body: defuseHtml(content.formatted_body) } : content;
}

/** Keeps a title from closing the bold markup early. */
function escapeInline(s: string): string {
  return s.replace(/\*/g, "\\*").replace(/\n+/g, " ");
}

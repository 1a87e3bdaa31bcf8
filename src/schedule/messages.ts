import { roomMessage, threadMessage, type MessageContent } from "../matrix/content.ts";
import type { ScheduledPrompt } from "./store.ts";
import { formatTime } from "./when.ts";

/** Marks the bot's messages that carry a prompt without a person typing, for other readers. */
export const scheduledKey = "org.matrix-agent-bot.scheduled";

type Row = Pick<ScheduledPrompt, "id" | "roomId" | "text" | "cron" | "createdBy" | "notifyOnly" | "firedCount">;

const where = (roomId: string, threadRoot: string | undefined, markdown: string, notice: boolean): MessageContent =>
  threadRoot === undefined
    ? roomMessage(markdown, { notice })
    : threadMessage({ roomId, threadRoot, replyTo: threadRoot }, markdown, { notice });

/**
 * The message a prompt is posted as when it fires: the root of its new thread, or a message
 * in the thread it goes to (the answer replies to it). A notice-only row is just the notice.
 */
export function promptMessage(row: Row, threadRoot: string | undefined): MessageContent {
  const content = row.notifyOnly
    ? where(row.roomId, threadRoot, `🔔 ${row.text}`, true)
    : where(row.roomId, threadRoot, `📨 **Prompt #${row.id}** from ${row.createdBy}${row.cron ? ` (cron \`${row.cron}\`)` : ""}:\n\n${row.text}`, false);
  return { ...content, [scheduledKey]: { id: row.id, by: row.createdBy, occurrence: row.firedCount } };
}

/** Posted by the CLI when a prompt is scheduled for later, so the room sees what will come. */
export function scheduledNotice(row: Row & { dueAt: number }, threadRoot: string | undefined): MessageContent {
  const what = row.notifyOnly ? "notice" : "prompt";
  const when = row.cron ? `cron \`${row.cron}\`, first at ${formatTime(row.dueAt)}` : formatTime(row.dueAt);
  return where(row.roomId, threadRoot, `🗓️ Scheduled ${what} #${row.id} (${when}) from ${row.createdBy}: ${row.text}`, true);
}

/**
 * The transaction id of an occurrence's message. The CLI and the bot post with the same access
 * token, so a second attempt at the same occurrence (after a crash) gets the first one's event
 * back from the homeserver instead of a duplicate.
 */
export const occurrenceTxnId = (row: Pick<ScheduledPrompt, "id" | "firedCount" | "createdAt">): string => `sched.${row.createdAt}.${row.id}.${row.firedCount}`;

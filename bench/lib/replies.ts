// What Alice sees of the bot's answer to one prompt, from her sync loop.
import type { MatrixEvent, MatrixTestUser, SeenEvent } from "../../test/harness/matrix-user.ts";

interface Relation {
  rel_type?: string;
  event_id?: string;
  key?: string;
  "m.in_reply_to"?: { event_id?: string };
}

const relOf = (e: MatrixEvent): Relation | undefined => e.content["m.relates_to"] as Relation | undefined;

/** The footer line ("— model · tokens · time") marks the final version of a reply. */
export const isFinal = (body: string): boolean => /\n— \S.*$/.test(body) || body.startsWith("— ");

/** Text and footer of a final body. */
export function splitFooter(body: string): { text: string; footer: string } {
  const i = body.lastIndexOf("\n\n— ");
  return i < 0 ? { text: "", footer: body } : { text: body.slice(0, i), footer: body.slice(i + 2) };
}

export interface Version {
  eventId: string;
  /** performance.now() when Alice's sync delivered it. */
  at: number;
  body: string;
  final: boolean;
}

export interface ReplyWatch {
  room: string;
  root: string;
  /** performance.now() just before Alice's PUT of the prompt. */
  sentAt: number;
}

/** Any sign of the bot about the prompt: a reaction to it or a message in its thread. */
export function waitForAck(alice: MatrixTestUser, bot: string, w: ReplyWatch, timeoutMs: number): Promise<SeenEvent> {
  return alice.waitForRoomEvent({
    roomId: w.room,
    sender: bot,
    match: (e) => {
      const rel = relOf(e);
      return (rel?.rel_type === "m.thread" || rel?.rel_type === "m.annotation") && rel.event_id === w.root;
    },
    description: `a sign of the bot in the thread of ${w.root}`,
    timeoutMs,
  });
}

/** Notices the bot posts into every active thread when it loses or regains OpenCode: not the reply. */
export const isConnectionNotice = (body: string): boolean => /^(⚠️ Lost the connection|✅ Reconnected)/.test(body);

/** The bot's reply to the prompt (its first version). */
export function waitForReply(alice: MatrixTestUser, bot: string, w: ReplyWatch, timeoutMs: number): Promise<SeenEvent> {
  return alice.waitForRoomEvent({
    roomId: w.room,
    sender: bot,
    type: "m.room.message",
    match: (e) => {
      const rel = relOf(e);
      return rel?.rel_type === "m.thread" && rel.event_id === w.root && rel["m.in_reply_to"]?.event_id === w.root
        && !isConnectionNotice(String(e.content.body ?? ""));
    },
    description: `the bot's reply to ${w.root}`,
    timeoutMs,
  });
}

function bodyOfVersion(e: MatrixEvent, replyId: string): string | undefined {
  if (e.event_id === replyId) return typeof e.content.body === "string" ? e.content.body : "";
  const rel = relOf(e);
  if (rel?.rel_type !== "m.replace" || rel.event_id !== replyId) return undefined;
  const nc = e.content["m.new_content"] as { body?: unknown } | undefined;
  return typeof nc?.body === "string" ? nc.body : "";
}

/** Waits for the version with the footer. */
export function waitForFinal(alice: MatrixTestUser, bot: string, room: string, replyId: string, timeoutMs: number): Promise<SeenEvent> {
  return alice.waitForRoomEvent({
    roomId: room,
    sender: bot,
    match: (e) => {
      const body = bodyOfVersion(e, replyId);
      return body !== undefined && isFinal(body);
    },
    description: `the final version of ${replyId}`,
    timeoutMs,
  });
}

/** Every version of the reply Alice has seen, in the order she saw them. */
export function versionsOf(alice: MatrixTestUser, bot: string, room: string, replyId: string): Version[] {
  const out: Version[] = [];
  for (const e of alice.seenEvents(room)) {
    if (e.sender !== bot) continue;
    const body = bodyOfVersion(e, replyId);
    if (body === undefined) continue;
    out.push({ eventId: e.event_id, at: e.receivedAt, body, final: isFinal(body) });
  }
  return out;
}

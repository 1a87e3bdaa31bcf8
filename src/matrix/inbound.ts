/** A room message as the bot needs it, whatever client sent it. */
export interface IncomingMessage {
  roomId: string;
  eventId: string;
  sender: string;
  msgtype: string;
  /** The text the person wrote, without a reply fallback. */
  body: string;
  /** The thread root, if the message is in a thread. */
  threadRoot: string | undefined;
  /** The event this one replies to (`m.in_reply_to`), in a thread or not. */
  inReplyTo?: string | undefined;
  isEdit: boolean;
  /** For a reaction (msgtype "m.reaction", body = the key): the event reacted to. */
  reactsTo?: string | undefined;
  timestamp: number;
  content: Record<string, unknown>;
}

interface RawEvent {
  event_id?: unknown;
  sender?: unknown;
  origin_server_ts?: unknown;
  content?: unknown;
  type?: unknown;
}

/** Strips the `> <@user> quoted` lines older clients put before a reply. */
export function stripReplyFallback(body: string): string {
  if (!body.startsWith("> ")) return body;
  const lines = body.split("\n");
  let i = 0;
  while (i < lines.length && (lines[i] ?? "").startsWith("> ")) i++;
  if (lines[i] === "") i++;
  return lines.slice(i).join("\n");
}

export function parseMessage(roomId: string, raw: RawEvent): IncomingMessage | undefined {
  if (typeof raw.event_id !== "string" || typeof raw.sender !== "string") return undefined;
  if (typeof raw.content !== "object" || raw.content === null) return undefined;
  const content = raw.content as Record<string, unknown>;
  if (raw.type === "m.reaction") return parseReaction(roomId, raw as RawEvent & { event_id: string; sender: string }, content);
  const relates = (content["m.relates_to"] ?? {}) as { rel_type?: unknown; event_id?: unknown; "m.in_reply_to"?: unknown };
  const isEdit = relates.rel_type === "m.replace";
  const threadRoot = relates.rel_type === "m.thread" && typeof relates.event_id === "string" ? relates.event_id : undefined;
  const body = typeof content.body === "string" ? content.body : "";
  const replyTo = (relates["m.in_reply_to"] as { event_id?: unknown } | undefined)?.event_id;
  return {
    roomId,
    eventId: raw.event_id,
    sender: raw.sender,
    msgtype: typeof content.msgtype === "string" ? content.msgtype : "",
    body: relates["m.in_reply_to"] !== undefined ? stripReplyFallback(body) : body,
    threadRoot,
    inReplyTo: typeof replyTo === "string" ? replyTo : undefined,
    isEdit,
    timestamp: typeof raw.origin_server_ts === "number" ? raw.origin_server_ts : 0,
    content,
  };
}

function parseReaction(roomId: string, raw: RawEvent & { event_id: string; sender: string }, content: Record<string, unknown>): IncomingMessage | undefined {
  const rel = content["m.relates_to"] as { rel_type?: unknown; event_id?: unknown; key?: unknown } | undefined;
  if (rel?.rel_type !== "m.annotation" || typeof rel.event_id !== "string" || typeof rel.key !== "string") return undefined;
  return {
    roomId,
    eventId: raw.event_id,
    sender: raw.sender,
    msgtype: "m.reaction",
    body: rel.key,
    threadRoot: undefined,
    isEdit: false,
    reactsTo: rel.event_id,
    timestamp: typeof raw.origin_server_ts === "number" ? raw.origin_server_ts : 0,
    content,
  };
}

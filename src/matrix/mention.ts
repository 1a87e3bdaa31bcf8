import type { MatrixClient } from "matrix-bot-sdk";
import type { IncomingMessage } from "./inbound.ts";

/** Who a mention must name: the bot's user id and its display name in the room. */
export interface MentionTarget {
  userId: string;
  displayName?: string | undefined;
}

const isBlank = (ch: string | undefined): boolean => ch !== undefined && /^[\s\p{Cf}]$/u.test(ch);
const trimStart = (s: string): string => {
  let i = 0;
  while (i < s.length && isBlank(s[i])) i++;
  return s.slice(i);
};
const entities: Record<string, string> = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&nbsp;": " " };
const decodeEntities = (s: string): string => s.replace(/&(?:amp|lt|gt|quot|#39|nbsp);/g, (e) => entities[e] ?? e);

/** The labels of the pills (matrix.to links) to `userId` in an HTML body, outside a reply's quoted part. */
export function pillLabels(formattedBody: string, userId: string): string[] {
  const html = formattedBody.replace(/<mx-reply>[\s\S]*?<\/mx-reply>/gi, "");
  const labels: string[] = [];
  for (const m of html.matchAll(/<a\s[^>]*href\s*=\s*["']https:\/\/matrix\.to\/#\/([^"'?]+)[^"']*["'][^>]*>([\s\S]*?)<\/a>/gi)) {
    let target = m[1] ?? "";
    try {
      target = decodeURIComponent(target);
    } catch {
      continue;
    }
    if (target !== userId) continue;
    labels.push(decodeEntities((m[2] ?? "").replace(/<[^>]*>/g, "")).trim());
  }
  return labels.filter((l) => l.length > 0);
}

/** `text` without its first `label` (case-insensitive), and a `:`/`,` right after it. */
function cut(text: string, label: string): string | undefined {
  const i = text.toLowerCase().indexOf(label.toLowerCase());
  if (i < 0) return undefined;
  let after = text.slice(i + label.length);
  if (after.startsWith(":") || after.startsWith(",")) after = after.slice(1);
  const before = text.slice(0, i).replace(/[\s\p{Cf}]+$/u, "");
  after = trimStart(after);
  return before.length > 0 && after.length > 0 ? `${before} ${after}` : before + after;
}

/** `text` without a leading `label` followed by `:`/`,` (or by a blank or the end when `blankEnds`). */
function cutLeading(text: string, label: string, blankEnds: boolean): string | undefined {
  if (label.length === 0 || !text.toLowerCase().startsWith(label.toLowerCase())) return undefined;
  const next = text[label.length];
  if (next === ":" || next === ",") return trimStart(text.slice(label.length + 1));
  if (blankEnds && (next === undefined || isBlank(next))) return trimStart(text.slice(label.length));
  return undefined;
}

/**
 * What a message says to the bot when it mentions it, without the mention; undefined when it
 * does not. A mention is: the text starting with the bot's user id (`@bot:example.org fix it`)
 * or display name and `:` or `,` (`Bot: fix it`); a pill to the bot in the HTML body; or the
 * bot in `m.mentions` — except in a reply, where clients put the replied-to sender there by
 * themselves: a reply must name the bot visibly.
 */
export function mentionedText(body: string, content: Record<string, unknown>, bot: MentionTarget): string | undefined {
  const text = trimStart(body);
  const formatted = content.format === "org.matrix.custom.html" && typeof content.formatted_body === "string" ? content.formatted_body : "";
  const pills = formatted ? pillLabels(formatted, bot.userId) : [];
  const userIds = (content["m.mentions"] as { user_ids?: unknown } | undefined)?.user_ids;
  const inMentions = Array.isArray(userIds) && userIds.includes(bot.userId);
  const isReply = (content["m.relates_to"] as { "m.in_reply_to"?: unknown } | undefined)?.["m.in_reply_to"] !== undefined;

  const leading =
    cutLeading(text, bot.userId, true) ??
    pills.map((p) => cutLeading(text, p, true)).find((r) => r !== undefined) ??
    (bot.displayName ? cutLeading(text, bot.displayName, false) : undefined);
  if (leading !== undefined) return leading;
  if (pills.length > 0) {
    for (const p of pills) {
      const rest = cut(text, p);
      if (rest !== undefined) return rest;
    }
    return cut(text, bot.userId) ?? text;
  }
  if (!inMentions) return undefined;
  const visible = cut(text, bot.userId);
  if (visible !== undefined) return visible;
  return isReply ? undefined : text;
}

/**
 * Finds mentions of the bot in messages; the bot's display name per room comes from its
 * membership event, cached (at most `maxRooms` rooms, each for `ttlMs`, so a rename is seen).
 */
export class BotMentions {
  private readonly client: Pick<MatrixClient, "getRoomStateEvent">;
  private readonly userId: string;
  private readonly names = new Map<string, { name: string | undefined; at: number }>();
  private readonly maxRooms: number;
  private readonly ttlMs: number;

  constructor(client: Pick<MatrixClient, "getRoomStateEvent">, userId: string, opts: { maxRooms?: number; ttlMs?: number } = {}) {
    this.client = client;
    this.userId = userId;
    this.maxRooms = opts.maxRooms ?? 1_000;
    this.ttlMs = opts.ttlMs ?? 10 * 60_000;
  }

  /** The message's text without the mention, or undefined when it does not mention the bot. */
  async strip(msg: IncomingMessage): Promise<string | undefined> {
    const direct = mentionedText(msg.body, msg.content, { userId: this.userId });
    if (direct !== undefined) return direct;
    // The display name is looked up only for a text that could start with one and a separator.
    if (!/^[^\n]{1,256}?[:,]/u.test(msg.body.trimStart())) return undefined;
    return mentionedText(msg.body, msg.content, { userId: this.userId, displayName: await this.displayName(msg.roomId) });
  }

  private async displayName(roomId: string): Promise<string | undefined> {
    const hit = this.names.get(roomId);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.name;
    const member = (await this.client.getRoomStateEvent(roomId, "m.room.member", this.userId).catch(() => undefined)) as { displayname?: unknown } | undefined;
    // Without a display name clients show the localpart.
    const name = typeof member?.displayname === "string" && member.displayname.trim() ? member.displayname.trim() : /^@([^:]+)/.exec(this.userId)?.[1];
    this.names.delete(roomId);
    this.names.set(roomId, { name, at: Date.now() });
    if (this.names.size > this.maxRooms) this.names.delete(this.names.keys().next().value as string);
    return name;
  }
}

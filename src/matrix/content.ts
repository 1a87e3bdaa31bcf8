import { formatMarkdown, plainText, type Formatted } from "./format.ts";

export type MessageContent = Record<string, unknown>;

export interface ThreadTarget {
  roomId: string;
  threadRoot: string;
  /** The event a threaded reply falls back to for clients without thread support. */
  replyTo: string;
}

export interface ComposeOptions {
  notice?: boolean;
  /** Users to notify. An empty list means "notify nobody", which also stops clients guessing from the body. */
  mentions?: string[];
  /**
   * A `body` in plain text (no markup, pills as names) instead of the markdown: what a phone's
   * lock screen shows. The default for a message that mentions someone, since that one pushes.
   */
  plainBody?: boolean;
}

/** The formatted message, its `body` made plain when it pushes (or when asked). */
function composed(markdown: string, opts: ComposeOptions): Formatted {
  const formatted = formatFitting(markdown);
  const plain = opts.plainBody ?? (opts.mentions ?? []).length > 0;
  return plain ? { ...formatted, body: plainText(formatted.body) } : formatted;
}

function mentionsOf(opts: ComposeOptions): { user_ids: string[] } {
  return { user_ids: opts.mentions ?? [] };
}

/**
 * Homeservers refuse events over 64 KiB, and a message carries its text at least twice (body
 * and HTML, each escaped in JSON). Streamed replies are split far below this; a one-off answer
 * that quotes something huge (a 60 KB argument, say) is cut with a note instead of being
 * refused and never seen at all.
 */
const contentBudget = 56_000;

const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v), "utf8");

function cutTo(markdown: string, bytes: number): string {
  // Cutting the UTF-8 bytes may split a character: its remains decode to U+FFFD, dropped here.
  const head = Buffer.from(markdown, "utf8").subarray(0, bytes).toString("utf8").replace(/\uFFFD+$/, "");
  return `${head}…\n\n_(cut: the message was too long for Matrix)_`;
}

/** The formatted message, cut (with a note) only when it would not fit in one event. */
export function formatFitting(markdown: string): Formatted {
  let formatted = formatMarkdown(markdown);
  for (let bytes = 16_000; jsonBytes(formatted) > contentBudget && bytes >= 250; bytes = Math.floor(bytes / 2)) {
    formatted = formatMarkdown(cutTo(markdown, bytes));
  }
  return formatted;
}

/** A reply in a thread (m.thread with the reply fallback), rendered from markdown; a plain `body` when it mentions someone. */
export function threadMessage(target: ThreadTarget, markdown: string, opts: ComposeOptions = {}): MessageContent {
  return {
    msgtype: opts.notice ? "m.notice" : "m.text",
    ...composed(markdown, opts),
    "m.mentions": mentionsOf(opts),
    "m.relates_to": {
      rel_type: "m.thread",
      event_id: target.threadRoot,
      is_falling_back: true,
      "m.in_reply_to": { event_id: target.replyTo },
    },
  };
}

/** A plain top-level message. */
export function roomMessage(markdown: string, opts: ComposeOptions = {}): MessageContent {
  return { msgtype: opts.notice ? "m.notice" : "m.text", ...composed(markdown, opts), "m.mentions": mentionsOf(opts) };
}

/** An edit replacing the whole content of `eventId`. Edits never mention anyone: no push storm while streaming. */
export function editMessage(eventId: string, markdown: string, opts: ComposeOptions = {}): MessageContent {
  const formatted = formatMarkdown(markdown);
  const msgtype = opts.notice ? "m.notice" : "m.text";
  return {
    msgtype,
    body: `* ${formatted.body}`,
    format: formatted.format,
    formatted_body: `* ${formatted.formatted_body}`,
    "m.mentions": {},
    "m.new_content": { msgtype, ...formatted, "m.mentions": {} },
    "m.relates_to": { rel_type: "m.replace", event_id: eventId },
  };
}

export function reaction(eventId: string, key: string): MessageContent {
  return { "m.relates_to": { rel_type: "m.annotation", event_id: eventId, key } };
}

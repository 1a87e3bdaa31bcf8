import { formatMarkdown } from "./format.ts";

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
}

function mentionsOf(opts: ComposeOptions): { user_ids: string[] } {
  return { user_ids: opts.mentions ?? [] };
}

/** A reply in a thread (m.thread with the reply fallback), rendered from markdown. */
export function threadMessage(target: ThreadTarget, markdown: string, opts: ComposeOptions = {}): MessageContent {
  return {
    msgtype: opts.notice ? "m.notice" : "m.text",
    ...formatMarkdown(markdown),
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
  return { msgtype: opts.notice ? "m.notice" : "m.text", ...formatMarkdown(markdown), "m.mentions": mentionsOf(opts) };
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

import sanitizeHtml from "sanitize-html";
import { sanitizeOptions } from "../matrix/format.ts";

// What /notify posts is written by whoever holds the notify token, and that is the agent: its
// words must not ping anyone. `m.mentions: {user_ids: []}` already tells servers and current
// clients "no mentions"; this also takes the mention forms out of the text itself, for clients
// that still read the body (`@room`) or turn links into pills.

/** A word joiner after the `@`: reads the same, matches no `@room` rule. */
const WJ = "\u2060";

/** `@room` broken for keyword matching, and matrix.to permalinks broken for pill detection. */
export function defuseText(text: string): string {
  return text.replace(/@(room)\b/gi, `@${WJ}$1`).replace(/(matrix\.to\/#\/)(?=[@!#+])/gi, `$1${WJ}`);
}

/**
 * A link a client shows as a pill (a user, room or event): to matrix.to, a `matrix:` URI, or a
 * client's own permalink form (`…/#/user/@alice:example.org`, `…/#/room/!id`).
 */
export function isPermalink(href: string): boolean {
  let h = href.trim();
  try {
    h = decodeURIComponent(h);
  } catch {
    // Not percent-encoded text: judged as it is.
  }
  return /^matrix:/i.test(h) || /^(https?:)?\/\/matrix\.to\//i.test(h) || /#\/(user\/|room\/)?[@!#+]/.test(h);
}

/** Formatted HTML with every pill link replaced by its plain text, and `@room` defused. */
export function defuseHtml(html: string): string {
  return sanitizeHtml(html, {
    ...sanitizeOptions,
    transformTags: {
      a: (tagName, attribs) => (isPermalink(attribs.href ?? "") ? { tagName: "span", attribs: {} } : { tagName, attribs }),
    },
    textFilter: (text) => defuseText(text),
  });
}

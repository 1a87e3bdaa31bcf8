import { marked } from "marked";
import sanitizeHtml from "sanitize-html";

// The HTML subset the Matrix spec lists for org.matrix.custom.html; anything else is dropped.
const allowedTags = [
  "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub", "li", "b", "i", "u",
  "strong", "em", "strike", "code", "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span",
  "details", "summary", "s",
];

export const sanitizeOptions: sanitizeHtml.IOptions = {
  allowedTags,
  allowedAttributes: {
    a: ["href", "name", "target"],
    code: ["class"],
    span: ["data-mx-color", "data-mx-bg-color", "data-mx-spoiler"],
    font: ["data-mx-color", "data-mx-bg-color", "color"],
    ol: ["start"],
  },
  allowedSchemes: ["https", "http", "ftp", "mailto", "magnet"],
  allowedClasses: { code: [/^language-[\w-]+$/] },
};

export interface Formatted {
  body: string;
  format: "org.matrix.custom.html";
  formatted_body: string;
}

/** Markdown to a Matrix message: sanitised HTML for rich clients, the markdown itself as the plain body. */
export function formatMarkdown(markdown: string): Formatted {
  let html: string;
  try {
    html = marked.parse(markdown, { async: false, gfm: true, breaks: true });
  } catch {
    // marked recurses once per nesting level: a few thousand `>` or `1. ` at the start of a
    // line overflow the stack. Such text is shown as it is rather than not at all.
    html = `<pre><code>${escapeHtml(markdown)}</code></pre>`;
  }
  return { body: markdown, format: "org.matrix.custom.html", formatted_body: sanitizeHtml(html, sanitizeOptions).trim() };
}

/** Escapes text for use inside formatted_body. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A pill: renders as the user's name in clients and, with m.mentions, triggers their push. */
export function pill(userId: string, displayName?: string): { markdown: string } {
  const label = (displayName ?? userId).replace(/[[\]]/g, "");
  return { markdown: `[${label}](https://matrix.to/#/${encodeURIComponent(userId)})` };
}

/** A link that opens a thread (its root event) in any Matrix client. */
export const threadLink = (roomId: string, eventId: string): string =>
  `https://matrix.to/#/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`;

import type { Token, Tokens } from "marked";
import { createRequire } from "node:module";
import sanitizeHtml from "sanitize-html";

// marked builds its grammar when it loads, about 10 ms that a start does not need: loaded on the
// first message, or just after the start (preloadMarkdown). From node_modules, also in the bundle.
const load = createRequire(import.meta.url);
let markedLib: typeof import("marked").marked | undefined;
const marked = (): typeof import("marked").marked => (markedLib ??= (load("marked") as typeof import("marked")).marked);

/** Loads marked now (the bot calls it once it is ready, before the first message needs it). */
export function preloadMarkdown(): void {
  marked();
}

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
    html = marked().parse(markdown, { async: false, gfm: true, breaks: true });
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
  // A name is anyone's to choose: its markdown and HTML characters are escaped, so it shows as typed.
  const label = (displayName ?? userId).replace(/[[\]]/g, "").replace(/[\\`*_<>&~|]/g, "\\$&");
  return { markdown: `[${label}](https://matrix.to/#/${encodeURIComponent(userId)})` };
}

const entities: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };

/** The few entities markdown text may spell (`&amp;`, `&#39;`, `&#x2014;`), as the characters they stand for. */
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] !== "#") return entities[e.toLowerCase()] ?? m;
    const cp = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}

const stripTags = (html: string): string => decodeEntities(html.replace(/<\/?[a-z][^>]*>/gi, ""));

/** A link as words: a pill is the person's name; another link keeps its address when its text hides it. */
function linkText(t: Tokens.Link): string {
  const text = inlineText(t.tokens);
  if (/^https:\/\/matrix\.to\/#\//.test(t.href) || text === "" || text === t.href || `mailto:${text}` === t.href) return text || t.href;
  return `${text} (${t.href})`;
}

function inlineText(tokens: Token[] | undefined): string {
  let out = "";
  for (const t of tokens ?? []) {
    switch (t.type) {
      case "text":
        out += "tokens" in t && t.tokens ? inlineText(t.tokens) : decodeEntities((t as Tokens.Text).text);
        break;
      case "escape":
      case "codespan":
        out += (t as Tokens.Escape | Tokens.Codespan).text;
        break;
      case "strong":
      case "em":
      case "del":
        out += inlineText((t as Tokens.Strong).tokens);
        break;
      case "link":
        out += linkText(t as Tokens.Link);
        break;
      case "image":
        out += (t as Tokens.Image).text;
        break;
      case "br":
        out += "\n";
        break;
      case "html":
        out += stripTags((t as Tokens.HTML).text);
        break;
      default:
        out += "tokens" in t && Array.isArray(t.tokens) ? inlineText(t.tokens) : typeof t.raw === "string" ? t.raw : "";
    }
  }
  return out;
}

function blockText(tokens: Token[]): string {
  const parts: string[] = [];
  for (const t of tokens) {
    switch (t.type) {
      case "space":
      case "def":
      case "hr":
        break;
      case "paragraph":
      case "heading":
        parts.push(inlineText((t as Tokens.Paragraph).tokens));
        break;
      case "text":
        parts.push("tokens" in t && t.tokens ? inlineText(t.tokens) : decodeEntities((t as Tokens.Text).text));
        break;
      case "code":
        parts.push((t as Tokens.Code).text);
        break;
      case "blockquote":
        parts.push(blockText((t as Tokens.Blockquote).tokens));
        break;
      case "list": {
        const list = t as Tokens.List;
        const first = typeof list.start === "number" ? list.start : 1;
        const items = list.items.map((item, i) => `${list.ordered ? `${first + i}.` : "•"} ${blockText(item.tokens).replace(/\n+/g, (nl) => `${nl}  `)}`);
        parts.push(items.join("\n"));
        break;
      }
      case "table": {
        const table = t as Tokens.Table;
        const row = (cells: Tokens.TableCell[]): string => cells.map((c) => inlineText(c.tokens)).join(" | ");
        parts.push([row(table.header), ...table.rows.map(row)].join("\n"));
        break;
      }
      case "html":
        parts.push(stripTags((t as Tokens.HTML).text));
        break;
      default:
        parts.push(typeof t.raw === "string" ? t.raw : "");
    }
  }
  return parts.filter((p) => p.trim() !== "").join("\n\n");
}

/**
 * Markdown as plain text, for the `body` of a message that pushes a phone: what the lock screen
 * shows. No markup (`**`, backticks, link syntax); a pill reads as the person's name; a link
 * whose text hides its address keeps the address in brackets. The HTML keeps the formatting.
 */
export function plainText(markdown: string): string {
  let tokens: Token[];
  try {
    tokens = marked().lexer(markdown, { gfm: true, breaks: true });
  } catch {
    return markdown; // nested too deep for marked: shown as written
  }
  return blockText(tokens).replace(/[ \t]+\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
}

/** A link that opens a thread (its root event) in any Matrix client. */
export const threadLink = (roomId: string, eventId: string): string =>
  `https://matrix.to/#/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`;

import type { MessageContent } from "../matrix/content.ts";
import type { PermissionSubject } from "../store/permissions.ts";

/**
 * How a permission request reads in Matrix. The agent is untrusted: it may ask to run a
 * command built to look harmless when shown cut, when its text breaks out of its code span, or
 * when invisible characters make the shown text differ from what runs. So the command is shown
 * whole (or visibly cut, with the whole of it attached), in a fence it cannot close, with every
 * invisible character spelled out.
 *
 * Every backend's requests read alike: OpenCode's, an ACP agent's, a Letta agent's tool
 * approval.
 */

export interface AskedRequest {
  id: string;
  permission: string;
  patterns?: string[];
  metadata?: Record<string, unknown>;
}

/** A phone screen or two: past this the message shows the start and the whole text is attached. */
export const shownChars = 1000;
export const shownLines = 20;

export function subjectOf(req: AskedRequest): PermissionSubject {
  const command = req.metadata?.command;
  if (typeof command === "string") return { permission: req.permission, command };
  const items = (req.patterns ?? []).filter((p) => typeof p === "string");
  for (const key of ["filepath", "url"]) {
    const v = req.metadata?.[key];
    if (typeof v === "string" && !items.includes(v)) items.push(v);
  }
  return { permission: req.permission, items };
}

/** The whole text, exactly: the content of the attached file. */
export function fullText(s: PermissionSubject): string {
  return "command" in s ? s.command : s.items.join("\n");
}

/** Lines as shown: a command's own newlines are its lines; a newline inside a pattern is escaped instead. */
const linesOf = (s: PermissionSubject): string[] => ("command" in s ? s.command.split("\n") : s.items);

const kindOf = (s: PermissionSubject): string => ("command" in s ? "command" : "list");

/** The attachment's name; request ids are OpenCode's (`per_…`), but nothing odd reaches a file name. */
export const attachmentName = (requestId: string): string => `permission-${requestId.replace(/[^\w-]/g, "_")}.txt`;

/**
 * Characters that do not show as themselves: controls, format characters (bidi overrides,
 * zero-width ones, tag characters), separators other than the plain space, unassigned and
 * private-use code points, and whatever Unicode says renders as nothing (variation selectors,
 * Hangul fillers…), plus the blank braille pattern.
 */
const invisible = /[\p{C}\p{Z}\p{Default_Ignorable_Code_Point}\u2800]/u;
const invisibleOrBackslash = new RegExp(`\\\\|${invisible.source}`, "gu");
const named: Record<string, string> = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

function spelled(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return named[c] ?? (cp > 0xffff ? `\\u{${cp.toString(16).toUpperCase()}}` : `\\u${cp.toString(16).toUpperCase().padStart(4, "0")}`);
}

/**
 * The lines with every invisible character spelled out (`\u202E`). Only when there was one are
 * backslashes doubled too, so that a literal `\u202E` typed in a command cannot pass for one.
 */
export function visibleLines(lines: string[]): { lines: string[]; escaped: boolean } {
  const has = lines.some((l) => [...l].some((c) => c !== " " && invisible.test(c)));
  if (!has) return { lines, escaped: false };
  const out = lines.map((l) => l.replace(invisibleOrBackslash, (c) => (c === " " ? c : c === "\\" ? "\\\\" : spelled(c))));
  return { lines: out, escaped: true };
}

/** The first lines within the limits; the last one may be cut inside (by code point, never inside a character). */
function head(lines: string[]): string[] {
  const out: string[] = [];
  let budget = shownChars;
  for (const line of lines) {
    if (out.length === shownLines || budget <= 0) break;
    const chars = [...line];
    if (chars.length > budget) {
      out.push(chars.slice(0, budget).join(""));
      break;
    }
    out.push(line);
    budget -= chars.length + 1;
  }
  return out;
}

/** What the message shows of the subject, and how much of it is left out. */
function cutOf(s: PermissionSubject): { shown: string[]; moreChars: number; moreLines: number } {
  const all = linesOf(s);
  const shown = head(all);
  return { shown, moreChars: [...fullText(s)].length - [...shown.join("\n")].length, moreLines: all.length - shown.length };
}

const count = (n: number, what: string): string => `${n.toLocaleString("en-US")} more ${what}${n === 1 ? "" : "s"}`;

/** A backtick fence longer than any run of backticks in the text, so no line of it can close the block. */
function fence(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  return "`".repeat(Math.max(3, longest + 1));
}

/**
 * The code block with the asked text, and the notes under it: where it was cut and what was
 * escaped. Plain text and markdown alike: the fence reads well in a push notification too.
 */
export function subjectBlock(s: PermissionSubject, requestId: string): string {
  if (fullText(s) === "") return "";
  const { shown, moreChars, moreLines } = cutOf(s);
  const { lines, escaped } = visibleLines(shown);
  const text = lines.join("\n");
  const f = fence(text);
  const parts = [`${f}\n${text}\n${f}`];
  if (moreChars > 0) {
    const amount = moreLines > 0 ? `${count(moreChars, "character")}, ${count(moreLines, "line")}` : count(moreChars, "character");
    parts.push(`… (cut: ${amount} — the whole ${kindOf(s)} is attached below as \`${attachmentName(requestId)}\`)`);
  }
  if (escaped) parts.push("⚠️ It contains invisible or control characters: they are shown as escapes like `\\u202E`, and each backslash as `\\\\`.");
  return parts.join("\n\n");
}

/** The attachment for a request whose text the message shows only in part. */
export function attachmentOf(s: PermissionSubject, requestId: string): { name: string; text: string } | undefined {
  return cutOf(s).moreChars > 0 ? { name: attachmentName(requestId), text: fullText(s) } : undefined;
}

/** A permission name is OpenCode's, but it is put in markdown: only name-like characters go through. */
const nameOf = (s: PermissionSubject): string => s.permission.replace(/[^\w.:-]/g, "?");

export interface Rendered {
  markdown: string;
  /** The plain `body`: what a push notification shows. */
  plain: string;
}

export interface Person {
  /** A pill, in markdown. */
  markdown: string;
  name: string;
}

function withBlock(first: Rendered, block: string, rest: Rendered): Rendered {
  if (!block) return { markdown: `${first.markdown}.${rest.markdown}`, plain: `${first.plain}.${rest.plain}` };
  return { markdown: `${first.markdown}:\n\n${block}${rest.markdown}`, plain: `${first.plain}:\n\n${block}${rest.plain}` };
}

/**
 * `agent`: who asks, as people know it (an ACP backend asks for its own agent). `always: false`
 * for agents that ask again each time (Letta): no ♾️ and no `allow always` offered.
 */
export function askText(s: PermissionSubject, requestId: string, who: Person, prefix: string, agent = "OpenCode", opts: { always?: boolean } = {}): Rendered {
  const p = prefix;
  const how =
    opts.always === false
      ? `\n\nReact ✅ allow · ❌ deny — or write \`${p} allow\` or \`${p} deny [reason]\` in this thread. (It asks again for each call: there is no “allow always”.)`
      : `\n\nReact ✅ allow once · ♾️ allow always · ❌ reject — or write \`${p} allow\`, \`${p} allow always\`, \`${p} deny [reason]\` in this thread.`;
  return withBlock(
    {
      markdown: `🔐 **Permission needed** — ${who.markdown}: ${agent} wants to use **${nameOf(s)}**`,
      plain: `🔐 Permission needed — ${who.name}: ${agent} wants to use ${nameOf(s)}`,
    },
    subjectBlock(s, requestId),
    { markdown: how, plain: how },
  );
}

/**
 * The request once answered. The block stays as it was asked, so the message still shows
 * exactly what was allowed. Rows from before the subject was stored only have their summary.
 * `after` says who answered and why.
 */
export function outcomeText(
  asked: { subject: PermissionSubject | null; summary: string; requestId: string },
  label: string,
  after: Rendered,
  agent = "OpenCode",
): Rendered {
  const s = asked.subject;
  if (!s) {
    return {
      markdown: `🔐 ${agent} asked to ${asked.summary} — **${label}**${after.markdown}.`,
      plain: `🔐 ${agent} asked to ${asked.summary} — ${label}${after.plain}.`,
    };
  }
  return withBlock(
    { markdown: `🔐 ${agent} asked to use **${nameOf(s)}**`, plain: `🔐 ${agent} asked to use ${nameOf(s)}` },
    subjectBlock(s, asked.requestId),
    { markdown: `\n\n**${label}**${after.markdown}.`, plain: `\n\n${label}${after.plain}.` },
  );
}

/** Sets the plain `body` of a message or an edit built from markdown (whose body is the markdown). */
export function withPlainBody(content: MessageContent, plain: string): MessageContent {
  const inner = content["m.new_content"] as MessageContent | undefined;
  return inner ? { ...content, body: `* ${plain}`, "m.new_content": { ...inner, body: plain } } : { ...content, body: plain };
}

/** An answer to a permission request: once, always, or no. */
export type PermissionReply = "once" | "always" | "reject";

/** Reaction keys people may use; with and without the emoji variation selector. */
const reactionReplies: Record<string, PermissionReply> = {
  "✅": "once", "✔️": "once", "👍": "once", "♾️": "always", "♾": "always", "❌": "reject", "👎": "reject", "🚫": "reject",
};

export function replyForReaction(key: string): PermissionReply | undefined {
  return reactionReplies[key.trim()];
}

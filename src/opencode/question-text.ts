// How a question from OpenCode's agent reads in Matrix, and how a typed or reacted answer is
// understood. Pure: no I/O, so each case is a unit test.
import type { QuestionInfo } from "@opencode-ai/sdk/v2";
import type { QuestionRow } from "./question-store.ts";

/** The reactions that pick an option; the bot pre-adds one per option, up to ten. */
export const keycaps = ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟"];

/** The option a reaction picks (1-based), with or without the emoji variation selector; undefined for other keys. */
export function optionOfReaction(key: string): number | undefined {
  const k = key.trim().replace(/\uFE0F/g, "");
  if (k === "🔟") return 10;
  const m = /^([1-9])\u20E3$/.exec(k);
  return m ? Number(m[1]) : undefined;
}

export type ParsedAnswer = { answer: string[] } | { refused: string };

/**
 * A typed answer to one question: a bare number picks that option (`1 3` picks two where the
 * question allows several; keycap emoji count as numbers), an option's label picks it, and
 * anything else is the person's own answer.
 */
export function parseAnswer(q: QuestionInfo, text: string): ParsedAnswer {
  const t = text.trim();
  if (t === "") return { refused: "Write the answer: the number of an option, or your own words." };
  const n = q.options.length;
  const digits = t.replace(/\uFE0F/g, "").replace(/🔟/g, " 10 ").replace(/([1-9])\u20E3/g, " $1 ").trim();
  if (n > 0 && /^\d+(?:[\s,]+\d+)*$/.test(digits)) {
    const picked = [...new Set(digits.split(/[\s,]+/).map(Number))];
    const wrong = picked.find((x) => x < 1 || x > n);
    if (wrong !== undefined) return { refused: `There is no option ${wrong}: pick 1–${n}, or write your own answer.` };
    if (picked.length > 1 && q.multiple !== true) return { refused: `This question takes one option: pick one of 1–${n}.` };
    return { answer: picked.map((x) => q.options[x - 1]?.label ?? String(x)) };
  }
  const option = q.options.find((o) => o.label.trim().toLowerCase() === t.toLowerCase());
  if (option) return { answer: [option.label] };
  if (q.custom === false) return { refused: `Pick one of the options by its number (1–${n}).` };
  return { answer: [t] };
}

/** Agent text shown as text: no markdown of it takes effect. */
const esc = (s: string): string => s.replace(/[\\`*_[\]<>&~|#]/g, "\\$&");
const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim();
const mark = (i: number): string => keycaps[i] ?? `(${i + 1})`;
const shownAnswer = (a: string[]): string => a.map((x) => esc(oneLine(x))).join(", ");

export interface QuestionWords {
  /** Who asked the turn, as markdown (a pill). */
  asker: string;
  /** People who answered, as markdown (pills), by user id. */
  names: Map<string, string>;
  prefix: string;
  /** The agent's name people know: `OpenCode`. */
  label: string;
}

function optionLines(q: QuestionInfo): string[] {
  return q.options.map((o, i) => `${mark(i)} **${esc(oneLine(o.label))}**${oneLine(o.description ?? "") ? ` — ${esc(oneLine(o.description))}` : ""}`);
}

function byWhom(ids: string[], names: Map<string, string>): string {
  const list = [...new Set(ids.filter((id) => id !== ""))].map((id) => names.get(id) ?? esc(id));
  return list.length <= 1 ? (list[0] ?? "") : `${list.slice(0, -1).join(", ")} and ${list.at(-1)}`;
}

/** What to do, under a question that is still open. */
function howToAnswer(q: QuestionInfo, at: number, total: number, prefix: string): string {
  const n = q.options.length;
  const now = total > 1 ? `Answer in order — now question ${at + 1} of ${total}: ` : "";
  const command = `\`${prefix} answer <n or text>\``;
  const own = q.custom === false ? "only the options count" : "other words are your own answer";
  const several = q.multiple === true ? ` Several options: write their numbers, e.g. \`1 3\`.` : "";
  const what = n === 0 ? `write your answer in this thread, or ${command}.` : `react with an option's number, or write your answer in this thread (a number picks that option; ${own}), or ${command}.${several}`;
  return now ? `${now}${what}` : what.charAt(0).toUpperCase() + what.slice(1);
}

/** How it ended, in one line. */
function outcomeLine(row: Pick<QuestionRow, "questions" | "answers" | "answeredBy" | "status">, names: Map<string, string>): string {
  if (row.status === "rejected") return "🚫 Dismissed without an answer.";
  if (row.status === "gone") return "⌛ No longer pending: OpenCode does not wait for this answer any more.";
  const single = row.questions.length === 1 && row.answers[0] ? ` “${shownAnswer(row.answers[0])}”` : "";
  const who = byWhom(row.answeredBy, names);
  if (who === "") return single ? `✅ Answered outside Matrix:${single}.` : "✅ Answered outside Matrix.";
  return `✅ Answered${single} by ${who}.`;
}

/** The whole message: the questions, their numbered options, the answers so far, and what to do or how it ended. */
export function questionMarkdown(row: Pick<QuestionRow, "questions" | "answers" | "answeredBy" | "status">, w: QuestionWords): string {
  const open = row.status === "pending";
  const asks = open ? "asks" : "asked";
  const qs = row.questions;
  const blocks: string[] = [];
  if (qs.length === 1) {
    const q = qs[0] as QuestionInfo;
    const [first = "", ...rest] = q.question.trim().split("\n");
    blocks.push(`❓ ${w.label} ${asks} ${w.asker}: ${esc(first.trim())}${rest.length ? `\n${rest.map(esc).join("\n")}` : ""}`);
    if (q.options.length) blocks.push(optionLines(q).join("\n"));
  } else {
    blocks.push(`❓ ${w.label} ${asks} ${w.asker} ${qs.length} questions:`);
    qs.forEach((q, i) => {
      const head = q.header?.trim() ? `**${i + 1}. ${esc(oneLine(q.header))}** — ` : `**${i + 1}.** `;
      const answer = row.answers[i];
      const who = answer ? byWhom([row.answeredBy[i] ?? ""], w.names) : "";
      const given = answer ? [`→ **${shownAnswer(answer)}**${who ? ` — ${who}` : ""}`] : [];
      blocks.push([`${head}${esc(q.question.trim())}`, ...optionLines(q), ...given].join("\n"));
    });
  }
  const current = qs[row.answers.length];
  blocks.push(open && current ? howToAnswer(current, row.answers.length, qs.length, w.prefix) : outcomeLine(row, w.names));
  return blocks.join("\n\n");
}

/** How many number reactions the bot adds: enough for the question with the most options, at most ten. */
export function reactionCount(questions: QuestionInfo[]): number {
  return Math.min(keycaps.length, Math.max(0, ...questions.map((q) => q.options.length)));
}

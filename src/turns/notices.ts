// The short messages around turns that are not the live reply: the one push per turn for the
// person who asked (its answer is complete, or it failed), the pushes that need that person at
// once (a permission, a question, an error), and the silent notices about a lost server. Every
// backend's turns end through here, so a phone hears the same things from OpenCode, Letta and
// ACP agents. The live reply and its edits never mention anyone: they never push.
import type { Logger } from "../log.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill, plainText } from "../matrix/format.ts";
import { inLane } from "../matrix/request-lanes.ts";
import type { MatrixSender } from "../matrix/sender.ts";

/** An outage shorter than this is not announced. */
export const outageNoticeDelayMs = 3000;

export interface RetrySettings {
  maxRetries: number;
  retryDelayMs: number;
  healthCheckIntervalMs: number;
}

export type TurnOutcome = "done" | "failed" | "aborted";

/** How a turn ended, as its push tells it. */
export interface TurnEnd {
  outcome: TurnOutcome;
  durationMs: number;
  /** The thread's title (the session's name): says which of several threads this is. */
  title?: string | undefined;
  /** The answer's first line; the whole answer (markdown) will do, its first line is taken. */
  firstLine?: string | undefined;
  /** What failed, in a line: `APIError: the provider answered 400`. */
  error?: string | undefined;
  /** What to do about it: `Write a follow-up in this thread to try again.` */
  advice?: string | undefined;
}

export interface TurnNoticesOptions {
  sender: MatrixSender;
  names: DisplayNames;
  log: Logger;
  /** A completion shorter than this pushes nobody (failures always push). Default 0: every one does. */
  completionNoticeAfterMs?: number | undefined;
  /** Who works the turns, as people know it: `OpenCode`, `Letta`, an ACP agent's name. */
  label?: string | undefined;
  /** What the bot lost when its connection drops; default `the <label> server`. */
  server?: string | undefined;
}

/** Lengths a lock screen can use: past these a line is cut with `…`. */
const titleChars = 80;
const lineChars = 140;
const errorChars = 240;

/** Cut to `n` code points (never inside a character), with `…` when cut. */
export function clipLine(s: string, n: number): string {
  const chars = [...s];
  return chars.length <= n ? s : `${chars.slice(0, n - 1).join("").trimEnd()}…`;
}

/** One line of text: its whitespace runs (newlines too) as single spaces. */
const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim();

/** Plain text put into markdown: shown as written, not as markup. */
export function escapeMarkdown(s: string): string {
  return s.replace(/[\\`*_[\]<>&~|]/g, "\\$&");
}

/** `3 s`, `2 min 5 s`, `1 h 4 min`; `under 1 s` for a turn faster than that. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return "under 1 s";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return s % 60 === 0 ? `${min} min` : `${min} min ${s % 60} s`;
  return min % 60 === 0 ? `${Math.floor(min / 60)} h` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

/**
 * The first line of an answer as plain text (no markup, no fence, no list marker), cut for a
 * lock screen; undefined for an answer with no words.
 */
export function firstLineOf(answer: string | undefined): string | undefined {
  if (!answer) return undefined;
  // The start is enough to find a first line, and a huge answer is not parsed for one line.
  const line = plainText(answer.slice(0, 4000))
    .split("\n")
    .map((l) => l.replace(/^•\s+/, "").trim())
    .find((l) => l !== "");
  return line === undefined ? undefined : clipLine(line, lineChars);
}

/** `**Title** — ` or nothing; the title is the prompt's words, shown as typed. */
const titled = (title: string | undefined): string => {
  const t = title === undefined ? "" : oneLine(title);
  return t ? `**${escapeMarkdown(clipLine(t, titleChars))}** — ` : "";
};

const capitalised = (s: string, title: string | undefined): string => (titled(title) ? s : s.charAt(0).toUpperCase() + s.slice(1));

/** What went wrong and what to do, in one line each (markdown: the advice may name a command). */
function errorWords(error: string | undefined, advice: string | undefined): string {
  const what = error === undefined ? "" : clipLine(oneLine(error), errorChars);
  const todo = advice === undefined ? "" : oneLine(advice);
  if (!what && !todo) return ". See the reply in this thread.";
  const sep = (s: string): string => (/[.!?…:]$/.test(s) ? "" : ".");
  if (!todo) return `: ${what}${sep(what)}`;
  return what ? `: ${what}${sep(what)} ${todo}` : `. ${todo}`;
}

/**
 * The push at the end of a turn, in markdown (its plain `body` is derived from it):
 * `✅ **Create hello.py** — done in 3 s: Created hello.py. (for @alice)`. `who` is the pill.
 */
export function turnEndedMarkdown(end: TurnEnd, who: string): string | undefined {
  if (end.outcome === "aborted") return undefined;
  const duration = formatDuration(end.durationMs);
  if (end.outcome === "failed") {
    const when = end.durationMs < 1000 ? "failed at once" : `failed after ${duration}`;
    return `⚠️ ${titled(end.title)}${capitalised(when, end.title)}${errorWords(end.error, end.advice)} (for ${who})`;
  }
  const line = firstLineOf(end.firstLine);
  const what = line === undefined ? "." : `: ${escapeMarkdown(line)}`;
  return `✅ ${titled(end.title)}${capitalised(`done in ${duration}`, end.title)}${what} (for ${who})`;
}

/** An error that needs the person now (a model outage the agent gave up on, an agent that died). */
export function errorMarkdown(e: { title?: string | undefined; error: string; advice?: string | undefined }, who: string): string {
  return `⚠️ ${titled(e.title)}${errorWords(e.error, e.advice).replace(/^[.:] /, "")} (for ${who})`;
}

/** The agent asks the person something and waits for the answer. */
export function questionMarkdown(q: { question: string; label: string }, who: string): string {
  return `❓ ${escapeMarkdown(q.label)} asks ${who}: ${escapeMarkdown(clipLine(oneLine(q.question), errorChars))}`;
}

/** What a permission request is about: a command, or what it touches (paths, addresses). */
export interface PermissionAsk {
  permission: string;
  command?: string | undefined;
  items?: string[] | undefined;
}

/**
 * Characters that do not show as themselves (controls, bidi overrides, zero-width ones…): in
 * the line a lock screen shows they are spelled out, so a command cannot pass for another.
 */
const invisible = /[\p{C}\p{Z}\p{Default_Ignorable_Code_Point}\u2800]/u;
const invisibleOrBackslash = new RegExp(`\\\\|${invisible.source}`, "gu");
/** As the request's block shows them: once one is spelled out, a typed `\u202E` shows its backslash doubled. */
function spelled(s: string): string {
  if (![...s].some((c) => c !== " " && invisible.test(c))) return s;
  return s.replace(invisibleOrBackslash, (c) => (c === " " ? c : c === "\\" ? "\\\\" : `\\u${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`));
}

/**
 * The first line of a permission request's `body`, the one a lock screen shows: who asked,
 * and what will run. `🔐 Permission needed — Alice: OpenCode wants to run: npm test`. A
 * command of several lines says so (`… (+2 lines)`); the whole of it is in the message.
 */
export function permissionPushLine(whoName: string, agent: string, ask: PermissionAsk): string {
  const head = `🔐 Permission needed — ${whoName}: ${agent}`;
  const name = ask.permission.replace(/[^\w.:-]/g, "?");
  if (ask.command !== undefined) {
    const lines = ask.command.split("\n").filter((l) => l !== "");
    if (lines.length === 0) return `${head} wants to use ${name}.`;
    const more = lines.length > 1 ? ` … (+${lines.length - 1} line${lines.length === 2 ? "" : "s"})` : "";
    return `${head} wants to run: ${clipLine(spelled(lines[0] ?? "").trim(), lineChars)}${more}`;
  }
  const items = (ask.items ?? []).filter((i) => i !== "");
  if (items.length === 0) return `${head} wants to use ${name}.`;
  const more = items.length > 1 ? ` (+${items.length - 1} more)` : "";
  return `${head} wants to use ${name}: ${clipLine(oneLine(spelled(items[0] ?? "")), lineChars)}${more}`;
}

/** The asked text's block: a fence longer than any backtick run inside, so its first repeat closes it. */
const fencedBlock = /^(`{3,})\n[\s\S]*?\n\1$/m;

/**
 * A permission request's plain `body`: the push line first, then the rest of the request's
 * text (`plain`, whose own first line the push line replaces). The asked command stays in its
 * fence, exactly as the message shows it: that is what tells where an untrusted command ends.
 * The words around it (cut and escape notes, how to answer) lose their markup.
 */
export function permissionPushBody(line: string, plain: string): string {
  const nl = plain.indexOf("\n");
  if (nl < 0) return line;
  const rest = plain.slice(nl + 1);
  const block = fencedBlock.exec(rest);
  if (!block) return `${line}\n\n${plainText(rest)}`;
  const after = plainText(rest.slice(block.index + block[0].length));
  return `${line}\n\n${block[0]}${after ? `\n\n${after}` : ""}`;
}

/**
 * Posts the turn-related messages of one backend. Only the ones that need the person who asked
 * mention them (and so push their phone); the server notices mention nobody.
 */
export class TurnNotices {
  private readonly sender: MatrixSender;
  private readonly names: DisplayNames;
  private readonly log: Logger;
  private readonly completionNoticeAfterMs: number;
  readonly label: string;
  private readonly server: string;
  private outageTargets: ThreadTarget[] = [];
  private pendingLost: { timer: NodeJS.Timeout; tell: () => void } | null = null;

  constructor(opts: TurnNoticesOptions) {
    this.sender = opts.sender;
    this.names = opts.names;
    this.log = opts.log;
    this.completionNoticeAfterMs = opts.completionNoticeAfterMs ?? 0;
    this.label = opts.label ?? "OpenCode";
    this.server = opts.server ?? `the ${this.label} server`;
  }

  /**
   * The one push of a turn, for who asked it: when its answer is complete (if it took at least
   * `completionNoticeAfterMs`) or when it failed. An abort is news to nobody: it is the asker's
   * own doing.
   */
  async turnEnded(target: ThreadTarget, who: string, end: TurnEnd): Promise<void> {
    if (!who || end.outcome === "aborted") return;
    if (end.outcome === "done" && end.durationMs < this.completionNoticeAfterMs) return;
    const text = turnEndedMarkdown(end, await this.pillOf(target.roomId, who));
    // After the 👀s and final answers of a busy homeserver: the answer is already readable in
    // the thread, and the push follows it there a moment later.
    if (text !== undefined) await inLane("first", () => this.push(target, who, text, "the completion notice"));
  }

  /** An error that stops the person's turn or needs them now: what failed and what to do. */
  async errorPush(target: ThreadTarget, who: string, e: { title?: string | undefined; error: string; advice?: string | undefined }): Promise<void> {
    if (!who) return;
    await this.push(target, who, errorMarkdown(e, await this.pillOf(target.roomId, who)), "the error notice");
  }

  /** The agent waits for an answer from the person. */
  async questionAsked(target: ThreadTarget, who: string, question: string): Promise<void> {
    if (!who) return;
    await this.push(target, who, questionMarkdown({ question, label: this.label }, await this.pillOf(target.roomId, who)), "the question");
  }

  /**
   * Once per outage (the connection reports each change of state once), and only if it lasts:
   * a stream that is back within `outageNoticeDelayMs` is nobody's news, and at scale two false
   * alarms per thread would load the homeserver at its busiest moment. Mentions nobody.
   */
  serverLost(targets: ThreadTarget[], retry: RetrySettings): void {
    if (this.pendingLost) return;
    const tell = (): void => {
      if (this.pendingLost) clearTimeout(this.pendingLost.timer);
      this.pendingLost = null;
      this.outageTargets = targets;
      const text =
        `⚠️ Lost the connection to ${this.server}. Reconnecting (${retry.maxRetries} quick tries from ${retry.retryDelayMs} ms, ` +
        `then every ${Math.round(retry.healthCheckIntervalMs / 1000)} s); this reply will be finished when it is back.`;
      // Ahead of every other reply's requests: these threads are stuck until the server is back.
      void inLane("alarm", () => this.postAll(targets, text));
    };
    this.pendingLost = { timer: setTimeout(tell, outageNoticeDelayMs), tell };
  }

  /** The server refused a reconnect: it is down, so an outage waiting to be told is told now. */
  serverGone(): void {
    this.pendingLost?.tell();
  }

  async serverBack(): Promise<void> {
    if (this.pendingLost) {
      clearTimeout(this.pendingLost.timer);
      this.pendingLost = null;
      return;
    }
    const told = this.outageTargets;
    this.outageTargets = [];
    await this.postAll(told, `✅ Reconnected to ${this.server}.`);
  }

  private async pillOf(roomId: string, who: string): Promise<string> {
    return pill(who, await this.names.get(roomId, who)).markdown;
  }

  /** A text message (notices never push) that mentions `who`: its body is plain text for the lock screen. */
  private async push(target: ThreadTarget, who: string, markdown: string, what: string): Promise<string | undefined> {
    try {
      return await this.sender.send(target.roomId, threadMessage(target, markdown, { mentions: [who] }));
    } catch (err) {
      this.log.warn({ err }, `could not post ${what}`);
      return undefined;
    }
  }

  private async postAll(targets: ThreadTarget[], text: string): Promise<void> {
    await Promise.all(
      targets.map((t) => this.sender.send(t.roomId, threadMessage(t, text, { notice: true })).catch((err: unknown) => this.log.warn({ err }, "could not post a notice"))),
    );
  }
}

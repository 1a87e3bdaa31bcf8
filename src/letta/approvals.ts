import type { ApprovalReply } from "../commands/approvals.ts";
import type { Logger } from "../log.ts";
import { editMessage, threadMessage, type ThreadTarget } from "../matrix/content.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import type { Db } from "../store/db.ts";
import type { PermissionSubject } from "../store/permissions.ts";
import { permissionPushBody, permissionPushLine } from "../turns/notices.ts";
import { askText, attachmentOf, outcomeText, withPlainBody, type Rendered } from "../turns/permission-text.ts";
import type { ApprovalCall, ApprovalRow, LettaApprovalStore } from "./approval-store.ts";
import type { PendingApproval } from "./events.ts";

// A Letta agent's tool approvals (a tool with a `requires_approval` rule), asked and answered in
// the thread of the turn that stopped for them, the way OpenCode's permissions are: the whole
// call in a block its text cannot close, a mention of who asked the turn (the push), ✅ and ❌
// pre-added. Letta has no "always" (each call asks again): no ♾️. The answer is a turn of its
// own: the approval message continues the agent's run, and its answer streams into the thread.

/** Reaction keys people may answer with, with and without the emoji variation selector. */
const reactions: Record<string, boolean> = { "✅": true, "✔️": true, "✔": true, "👍": true, "❌": false, "👎": false, "🚫": false };

const labels = { allowed: "✅ allowed", denied: "❌ denied" } as const;

export interface LettaApprovalsDeps {
  store: LettaApprovalStore;
  db: Db;
  sender: MatrixSender;
  displayName: (roomId: string, userId: string) => Promise<string>;
  log: Logger;
  /** The Letta prefix: `!letta allow` answers. */
  prefix: string;
  /**
   * Records the turn that sends the answer to Letta, inside the transaction that records the
   * decision (so a restart finds both or neither); returns what starts it.
   */
  continueAfter(row: ApprovalRow, approve: boolean, by: string, reason: string | undefined): () => void;
}

/** What the request shows: one argument per line (`target: "staging"`), or each call on a line when there are several. */
export function subjectOf(calls: ApprovalCall[]): PermissionSubject {
  const only = calls.length === 1 ? calls[0] : undefined;
  if (only) return { permission: only.name || "tool", items: argumentLines(only.arguments) };
  return { permission: "tools", items: calls.map((c) => `${c.name} ${c.arguments}`) };
}

function argumentLines(args: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(args || "{}");
  } catch {
    return [args];
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return [args];
  // JSON.stringify writes each value exactly, one line each (a string's newlines as \n).
  return Object.entries(parsed).map(([k, v]) => `${k}: ${JSON.stringify(v)}`);
}

/** Who asks, as the request says it: the agent's name, only name-like characters (it goes into markdown). */
const agentLabel = (name: string): string => `Letta agent ${name.replace(/[^\w.-]/g, "?")}`;
const requestIdOf = (row: ApprovalRow): string => `letta-${row.id}`;

export class LettaApprovals {
  readonly store: LettaApprovalStore;
  private readonly d: LettaApprovalsDeps;

  constructor(deps: LettaApprovalsDeps) {
    this.d = deps;
    this.store = deps.store;
  }

  /** Records what a turn stopped for, before the turn's end is recorded: a restart between the two still asks. */
  record(t: { agentId: string; agentName: string; roomId: string; rootEventId: string; askedOf: string; replyEventId: string | null }, pending: PendingApproval): ApprovalRow {
    return this.store.add({ ...t, requestMessageId: pending.requestMessageId, runId: pending.runId ?? null, calls: pending.calls });
  }

  /** Posts the request in its thread, mentioning who asked the turn: that mention is the push. */
  async ask(row: ApprovalRow): Promise<void> {
    if (row.messageEventId) return;
    const who = row.askedOf;
    const name = await this.d.displayName(row.roomId, who).catch(() => who);
    const subject = subjectOf(row.calls);
    const agent = agentLabel(row.agentName);
    const text = askText(subject, requestIdOf(row), { markdown: pill(who, name).markdown, name }, this.d.prefix, agent, { always: false });
    const target: ThreadTarget = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.replyEventId ?? row.rootEventId };
    const body = permissionPushBody(permissionPushLine(name, agent, subject), text.plain);
    const eventId = await this.d.sender.send(row.roomId, withPlainBody(threadMessage(target, text.markdown, { mentions: [who] }), body));
    this.store.setMessage(row.id, eventId);
    const file = attachmentOf(subject, requestIdOf(row));
    if (file) {
      await this.d.sender.sendFile({ ...target, replyTo: eventId }, Buffer.from(file.text, "utf8"), file.name, "text/plain").catch(async (err: unknown) => {
        this.d.log.warn({ err, approval: row.id }, "could not attach the whole approval request");
        const note = `⚠️ \`${file.name}\` could not be attached: the message above shows only the start of the call. Deny it unless you know the rest.`;
        await this.d.sender.send(row.roomId, threadMessage({ ...target, replyTo: eventId }, note, { notice: true })).catch(() => undefined);
      });
    }
    // One tap on a phone: the answers are already there to click.
    for (const key of ["✅", "❌"]) await this.d.sender.react(row.roomId, eventId, key);
  }

  /** A reaction on one of the requests, in its own room (a reaction can point at any room's event). */
  async onReaction(roomId: string, eventId: string, key: string, by: string): Promise<boolean> {
    const approve = reactions[key.trim()];
    const row = this.store.byMessage(eventId);
    if (approve === undefined || !row || row.roomId !== roomId || row.status !== "pending") return false;
    await this.answer(row, approve, by);
    return true;
  }

  /** `!letta allow` / `!letta deny [reason]` in a thread: the answer, or undefined when no request of Letta's waits there. */
  async answerInThread(roomId: string, rootEventId: string, reply: ApprovalReply, by: string, reason?: string): Promise<string | undefined> {
    const row = this.store.pendingInThread(roomId, rootEventId);
    if (!row) return undefined;
    const tools = [...new Set(row.calls.map((c) => `**${c.name.replace(/[^\w.:-]/g, "?")}**`))].join(", ");
    if (reply === "always") return `Letta asks again for each call: it has no “allow always”. Write \`${this.d.prefix} allow\` to allow ${tools} this time.`;
    const approve = reply === "once";
    if (!(await this.answer(row, approve, by, reason))) return "That request was answered a moment ago.";
    return `${approve ? labels.allowed : labels.denied}: the agent's request to run ${tools}${reason ? ` — “${reason}”` : ""}. Its answer follows in this thread.`;
  }

  /**
   * Decides, and queues the turn that tells Letta, in one transaction: two people answering at
   * once decide once, and a restart finds the decision with its turn waiting.
   */
  private async answer(row: ApprovalRow, approve: boolean, by: string, reason?: string): Promise<boolean> {
    const start = this.d.db.transaction(() => (this.store.decide(row.id, approve ? "allowed" : "denied", by, reason) ? this.d.continueAfter(row, approve, by, reason) : undefined))();
    if (!start) return false;
    start();
    await this.show(row, approve ? "allowed" : "denied", by, reason);
    return true;
  }

  /** Edits the request to show its outcome under the same block: it still shows exactly what was answered. */
  private async show(row: ApprovalRow, outcome: keyof typeof labels, by: string, reason?: string): Promise<void> {
    if (!row.messageEventId) return;
    const why = reason ? ` — “${reason}”` : "";
    const name = await this.d.displayName(row.roomId, by).catch(() => by);
    const after: Rendered = { markdown: ` by ${pill(by, name).markdown}${why}`, plain: ` by ${name}${why}` };
    const subject = subjectOf(row.calls);
    const text = outcomeText({ subject, summary: `run ${subject.permission}`, requestId: requestIdOf(row) }, labels[outcome], after, agentLabel(row.agentName));
    await this.d.sender
      .send(row.roomId, withPlainBody(editMessage(row.messageEventId, text.markdown, {}), text.plain))
      .catch((err: unknown) => this.d.log.warn({ err, approval: row.id }, "could not update the approval request"));
  }

  /** At start-up: requests recorded but not posted (the bot stopped in between) are posted now. */
  async reconcile(): Promise<void> {
    for (const row of this.store.pending()) {
      if (!row.messageEventId) await this.ask(row).catch((err: unknown) => this.d.log.error({ err, approval: row.id }, "could not post a Letta approval request"));
    }
  }
}

import type { LettaBackend } from "../letta/backend.ts";
import type { Logger } from "../log.ts";
import { threadMessage } from "../matrix/content.ts";
import type { MatrixSender } from "../matrix/sender.ts";
import { shownAsText, type DelegationRow, type Delegator } from "../opencode/delegate.ts";
import type { ThreadStore } from "../store/threads.ts";

/** The words a delegated result reaches the agent with when its tool call is gone. */
export function resultMessage(row: DelegationRow): string {
  return `OpenCode result: the task “${row.title}” you delegated (session ${row.sessionId}) ended after your tool call had stopped waiting. ` +
    `Tell the room what came of it. ${JSON.stringify(row.result)}`;
}

export interface ResultDeliveryDeps {
  letta: LettaBackend;
  delegator: Delegator;
  threads: ThreadStore;
  sender: MatrixSender;
  log: Logger;
  botUserId: string;
}

/**
 * A task that ends with no tool call waiting for it (the call gave up after the wait, or the
 * bot restarted meanwhile) still reaches its agent: as a message in the thread, once the agent
 * has no turn running (a running turn may still take it with opencode_task_status). Delivery
 * is claimed in the database first, so it happens once, whichever way it goes.
 */
export class ResultDelivery {
  private readonly d: ResultDeliveryDeps;
  private readonly pending = new Map<string, DelegationRow>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(deps: ResultDeliveryDeps) {
    this.d = deps;
    deps.delegator.onUnclaimed((row) => this.schedule(row));
  }

  schedule(row: DelegationRow): void {
    if (this.stopped) return;
    this.pending.set(row.sessionId, row);
    this.timer ??= setInterval(() => void this.tick(), 500);
  }

  /** Results that ended undelivered before a restart. */
  reconcile(): void {
    for (const row of this.d.delegator.store.undelivered()) if (row.status !== "aborted") this.schedule(row);
  }

  private async tick(): Promise<void> {
    for (const [sessionId, row] of [...this.pending]) {
      if (this.d.letta.d.turns.running().some((t) => t.agentId === row.agentId)) continue;
      this.pending.delete(sessionId);
      if (!this.d.delegator.store.claim(sessionId, "message")) continue;
      await this.deliver(this.d.delegator.store.get(sessionId) ?? row).catch((err: unknown) => this.d.log.error({ err, sessionId }, "could not hand a delegated result to its agent"));
    }
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async deliver(row: DelegationRow): Promise<void> {
    const thread = this.d.threads.get(row.roomId, row.rootEventId);
    if (thread?.backend !== "letta") {
      this.d.log.warn({ sessionId: row.sessionId }, "the Letta thread of a delegated result is gone; not delivered");
      return;
    }
    const target = { roomId: row.roomId, threadRoot: row.rootEventId, replyTo: row.headlineEventId };
    const outcome = row.result?.outcome ?? row.status;
    const notice = await this.d.sender.send(row.roomId, threadMessage(target, `📨 OpenCode's result for **${shownAsText(row.title)}** (${outcome}) goes to ${shownAsText(row.agentName)}.`, { notice: true }));
    await this.d.letta.followUp(thread, { roomId: row.roomId, eventId: notice, sender: this.d.botUserId, text: resultMessage(row) });
    this.d.log.info({ sessionId: row.sessionId, agentId: row.agentId }, "delegated result sent to the agent as a message");
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

import type { Logger } from "../log.ts";
import { threadMessage, type ThreadTarget } from "../matrix/content.ts";
import type { DisplayNames } from "../matrix/display-names.ts";
import { pill } from "../matrix/format.ts";
import type { MatrixSender } from "../matrix/sender.ts";

/** An outage shorter than this is not announced. */
export const outageNoticeDelayMs = 3000;

export interface RetrySettings {
  maxRetries: number;
  retryDelayMs: number;
  healthCheckIntervalMs: number;
}

/**
 * The short messages around turns: the one that pushes phones when a turn ends, and the ones
 * that tell people in affected threads that the OpenCode server went away and came back.
 */
export class TurnNotices {
  private readonly sender: MatrixSender;
  private readonly names: DisplayNames;
  private readonly log: Logger;
  private readonly completionNoticeAfterMs: number;
  private outageTargets: ThreadTarget[] = [];
  private pendingLost: NodeJS.Timeout | null = null;

  constructor(opts: { sender: MatrixSender; names: DisplayNames; log: Logger; completionNoticeAfterMs: number }) {
    this.sender = opts.sender;
    this.names = opts.names;
    this.log = opts.log;
    this.completionNoticeAfterMs = opts.completionNoticeAfterMs;
  }

  /** Who asked hears that the turn is done (if it took a while) or failed; an abort is news to nobody. */
  async turnEnded(target: ThreadTarget, who: string, outcome: { failed: boolean; aborted: boolean; durationMs: number }): Promise<void> {
    if (!who || outcome.aborted) return;
    if (!outcome.failed && outcome.durationMs < this.completionNoticeAfterMs) return;
    const name = pill(who, await this.names.get(target.roomId, who)).markdown;
    const text = outcome.failed ? `⚠️ ${name} the turn failed — see the reply above.` : `✅ ${name} done.`;
    await this.sender
      .send(target.roomId, threadMessage(target, text, { mentions: [who] }))
      .catch((e: unknown) => this.log.warn({ err: e }, "could not post the completion notice"));
  }

  /**
   * Once per outage (the connection reports each change of state once), and only if it lasts:
   * a stream that is back within `outageNoticeDelayMs` is nobody's news, and at scale two false
   * alarms per thread would load the homeserver at its busiest moment.
   */
  serverLost(targets: ThreadTarget[], retry: RetrySettings): void {
    if (this.pendingLost) return;
    this.pendingLost = setTimeout(() => {
      this.pendingLost = null;
      this.outageTargets = targets;
      const text =
        `⚠️ Lost the connection to the OpenCode server. Reconnecting (${retry.maxRetries} quick tries from ${retry.retryDelayMs} ms, ` +
        `then every ${Math.round(retry.healthCheckIntervalMs / 1000)} s); this reply will be finished when it is back.`;
      void this.postAll(targets, text);
    }, outageNoticeDelayMs);
  }

  async serverBack(): Promise<void> {
    if (this.pendingLost) {
      clearTimeout(this.pendingLost);
      this.pendingLost = null;
      return;
    }
    const told = this.outageTargets;
    this.outageTargets = [];
    await this.postAll(told, "✅ Reconnected to the OpenCode server.");
  }

  private async postAll(targets: ThreadTarget[], text: string): Promise<void> {
    await Promise.all(
      targets.map((t) => this.sender.send(t.roomId, threadMessage(t, text, { notice: true })).catch((err: unknown) => this.log.warn({ err }, "could not post a notice"))),
    );
  }
}

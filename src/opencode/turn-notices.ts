// The turn notices moved to src/turns/notices.ts (one for every backend). This adapter keeps
// the OpenCode turn runner's call working until it ends its turns through the turn engine.
import { TurnNotices as Notices, type TurnEnd, type TurnNoticesOptions } from "../turns/notices.ts";
import type { ThreadTarget } from "../matrix/content.ts";

export { outageNoticeDelayMs, type RetrySettings, type TurnEnd } from "../turns/notices.ts";

/** The runner's older way to say how a turn ended. */
interface LegacyEnd {
  failed: boolean;
  aborted: boolean;
  durationMs: number;
}

export class TurnNotices extends Notices {
  constructor(opts: TurnNoticesOptions) {
    super({ label: "OpenCode", ...opts });
  }

  /** Takes either shape; the older one knows no title, answer or error, so its push says less. */
  override async turnEnded(target: ThreadTarget, who: string, end: TurnEnd | LegacyEnd): Promise<void> {
    if ("outcome" in end) return super.turnEnded(target, who, end);
    const outcome = end.aborted ? "aborted" : end.failed ? "failed" : "done";
    return super.turnEnded(target, who, { outcome, durationMs: end.durationMs });
  }
}

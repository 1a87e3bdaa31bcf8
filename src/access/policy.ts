import picomatch from "picomatch";

/** Who may drive the agents. Patterns are globs over Matrix ids: "@*:example.org", "@alice:example.org". */
export class AccessPolicy {
  private readonly matchers: Array<(s: string) => boolean>;
  private readonly noticeIntervalMs: number;
  private readonly lastNotice = new Map<string, number>();

  constructor(patterns: string[], strangerNoticeIntervalMs: number) {
    // Matrix ids contain no path separators, so `*` may match anything, dots included.
    this.matchers = patterns.map((p) => picomatch(p, { dot: true, nonegate: true, noextglob: true }));
    this.noticeIntervalMs = strangerNoticeIntervalMs;
  }

  isAllowed(userId: string): boolean {
    return this.matchers.some((m) => m(userId));
  }

  /** At most one "you are not allowed" notice per user and room per interval: no spam loop. */
  shouldTellStranger(roomId: string, userId: string, now = Date.now()): boolean {
    const key = `${roomId}\u0000${userId}`;
    const last = this.lastNotice.get(key);
    if (last !== undefined && now - last < this.noticeIntervalMs) return false;
    this.lastNotice.set(key, now);
    return true;
  }
}

import { userMatcher, type UserMatcher } from "./user-pattern.ts";

/**
 * Who may drive the agents (`access.allowedUsers`) and who operates the bot (`access.admins`:
 * commands that touch what every room shares). Patterns: see user-pattern.ts. Admins are
 * allowed users too, so an operator need not be listed twice.
 */
export class AccessPolicy {
  private readonly allowed: UserMatcher[];
  private readonly admins: UserMatcher[];
  private readonly noticeIntervalMs: number;
  private readonly lastNotice = new Map<string, number>();

  constructor(patterns: string[], strangerNoticeIntervalMs: number, adminPatterns: string[] = []) {
    this.allowed = patterns.map(userMatcher);
    this.admins = adminPatterns.map(userMatcher);
    this.noticeIntervalMs = strangerNoticeIntervalMs;
  }

  isAllowed(userId: string): boolean {
    return this.isAdmin(userId) || this.allowed.some((m) => m(userId));
  }

  isAdmin(userId: string): boolean {
    return this.admins.some((m) => m(userId));
  }

  /** False when `access.admins` is empty: then nobody may run operator commands. */
  get hasAdmins(): boolean {
    return this.admins.length > 0;
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

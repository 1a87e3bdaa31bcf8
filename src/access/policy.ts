import { BoundedMap } from "../store/bounded-map.ts";
import { userMatcher, type UserMatcher } from "./user-pattern.ts";

/** Strangers remembered for the notice interval: past this many (user, room) pairs the oldest notice is forgotten. */
const maxStrangers = 10_000;

/**
 * Who may drive the agents (`access.allowedUsers`) and who operates the bot (`access.admins`:
 * commands that touch what every room shares). Patterns: see user-pattern.ts. Admins are
 * allowed users too, so an operator need not be listed twice.
 */
export class AccessPolicy {
  private readonly allowed: UserMatcher[];
  private readonly admins: UserMatcher[];
  private readonly noticeIntervalMs: number;
  /** When each (room, stranger) was last told: at most maxStrangers pairs, the least recently told forgotten first. */
  private readonly lastNotice: BoundedMap<string, number>;

  constructor(patterns: string[], strangerNoticeIntervalMs: number, adminPatterns: string[] = [], opts: { maxStrangers?: number } = {}) {
    this.allowed = patterns.map(userMatcher);
    this.admins = adminPatterns.map(userMatcher);
    this.noticeIntervalMs = strangerNoticeIntervalMs;
    this.lastNotice = new BoundedMap({ maxEntries: opts.maxStrangers ?? maxStrangers });
  }

  /** (room, stranger) pairs remembered now (for tests). */
  get strangersRemembered(): number {
    return this.lastNotice.size;
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

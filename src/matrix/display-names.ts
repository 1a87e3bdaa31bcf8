import type { MatrixClient } from "matrix-bot-sdk";
import { BoundedMap } from "../store/bounded-map.ts";

/** How a member's name is shown: the display name, else the localpart; no brackets or line breaks, at most 60 characters. */
function shownName(userId: string, displayname: unknown): string {
  const name = typeof displayname === "string" && displayname.trim() !== "" ? displayname : (/^@([^:]+)/.exec(userId)?.[1] ?? userId);
  return name.replace(/[[\]\n]/g, "").slice(0, 60);
}

/**
 * Room display names, for attributing prompts and for readable pills; cached per room and user,
 * bounded (the `maxEntries` most recently used, each for `ttlMs`), and updated by the room's
 * `m.room.member` events as the sync brings them, so a rename shows at once.
 */
export class DisplayNames {
  private readonly client: Pick<MatrixClient, "getRoomStateEvent">;
  private readonly cache: BoundedMap<string, string>;

  constructor(client: Pick<MatrixClient, "getRoomStateEvent">, opts: { maxEntries?: number; ttlMs?: number; now?: () => number } = {}) {
    this.client = client;
    this.cache = new BoundedMap({ maxEntries: opts.maxEntries ?? 5_000, ttlMs: opts.ttlMs ?? 10 * 60_000, ...(opts.now ? { now: opts.now } : {}) });
  }

  /** Entries cached now (for tests). */
  get size(): number {
    return this.cache.size;
  }

  async get(roomId: string, userId: string): Promise<string> {
    const key = `${roomId}\u0000${userId}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    const member = (await this.client.getRoomStateEvent(roomId, "m.room.member", userId).catch(() => undefined)) as
      | { displayname?: unknown }
      | undefined;
    const name = shownName(userId, member?.displayname);
    this.cache.set(key, name);
    return name;
  }

  /**
   * A room event from the sync: an `m.room.member` event of someone cached updates their name
   * (a leave forgets it). Others are not cached here: a large room's joins would crowd out the
   * people the bot actually names.
   */
  onRoomEvent(roomId: string, event: Record<string, unknown>): void {
    if (event.type !== "m.room.member" || typeof event.state_key !== "string") return;
    const key = `${roomId}\u0000${event.state_key}`;
    if (this.cache.get(key) === undefined) return;
    const content = (typeof event.content === "object" && event.content !== null ? event.content : {}) as { membership?: unknown; displayname?: unknown };
    if (content.membership === "join" || content.membership === "invite") this.cache.set(key, shownName(event.state_key, content.displayname));
    else this.cache.delete(key);
  }
}

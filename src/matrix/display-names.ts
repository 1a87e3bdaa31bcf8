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
   * A sync response: the members of a small room (its state, as a join or the first sync brings
   * it, and its timeline) are cached, so the first prompt of each person needs no request. At 200
   * prompts at once those requests were 200 of the bot's ≈ 1,100, each holding one of its six
   * request slots, and each prompt waited for its own before it went to OpenCode. A large room's members are not: they would crowd out the
   * people the bot actually names (those are asked for once, as before).
   */
  learnFromSync(res: unknown): void {
    const join = (res as { rooms?: { join?: Record<string, unknown> } } | null)?.rooms?.join;
    if (typeof join !== "object" || join === null) return;
    for (const [roomId, room] of Object.entries(join)) {
      const r = room as { state?: { events?: unknown }; timeline?: { events?: unknown } } | null;
      const events = [...asList(r?.state?.events), ...asList(r?.timeline?.events)].filter(isMember);
      if (events.length > smallRoomMembers) continue;
      for (const e of events) this.remember(roomId, e);
    }
  }

  /**
   * A room event from the sync: an `m.room.member` event of someone cached updates their name
   * (a leave forgets it). Others are not cached here: a large room's joins would crowd out the
   * people the bot actually names.
   */
  onRoomEvent(roomId: string, event: Record<string, unknown>): void {
    if (!isMember(event)) return;
    if (this.cache.get(`${roomId}\u0000${event.state_key}`) === undefined) return;
    this.remember(roomId, event);
  }

  private remember(roomId: string, event: MemberEvent): void {
    const key = `${roomId}\u0000${event.state_key}`;
    const content = (typeof event.content === "object" && event.content !== null ? event.content : {}) as { membership?: unknown; displayname?: unknown };
    if (content.membership === "join" || content.membership === "invite") this.cache.set(key, shownName(event.state_key, content.displayname));
    else this.cache.delete(key);
  }
}

/** Rooms with more member events than this in one sync response are not learnt from it. */
const smallRoomMembers = 100;

type MemberEvent = Record<string, unknown> & { type: "m.room.member"; state_key: string };

const asList = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

function isMember(e: unknown): e is MemberEvent {
  const ev = e as { type?: unknown; state_key?: unknown } | null;
  return typeof ev === "object" && ev !== null && ev.type === "m.room.member" && typeof ev.state_key === "string";
}

import type { Logger } from "../log.ts";

/** The one call of the Matrix client this needs (matrix-bot-sdk's `getEvent`). */
export interface EventFetcher {
  getEvent(roomId: string, eventId: string): Promise<unknown>;
}

/**
 * Which thread a replied-to event belongs to, for replies from clients without threads (only
 * `m.in_reply_to`). The event is fetched from the homeserver once: its `m.relates_to` never
 * changes, so the answer is cached (the newest `maxEntries`).
 */
export class ReplyTargets {
  private readonly client: EventFetcher;
  private readonly log: Pick<Logger, "debug">;
  private readonly maxEntries: number;
  /** `room \0 event` → the root of the thread the event is in, or the event itself when it is in none. */
  private readonly roots = new Map<string, string>();

  constructor(client: EventFetcher, log: Pick<Logger, "debug">, opts: { maxEntries?: number } = {}) {
    this.client = client;
    this.log = log;
    this.maxEntries = opts.maxEntries ?? 2_000;
  }

  /**
   * The thread root `eventId` belongs to: the `event_id` of its `m.thread` relation, else the
   * event itself (a thread root, or a message in no thread). Undefined when it cannot be read.
   */
  async threadRootOf(roomId: string, eventId: string): Promise<string | undefined> {
    const key = `${roomId}\u0000${eventId}`;
    const hit = this.roots.get(key);
    if (hit !== undefined) {
      this.remember(roomId, eventId, hit); // the newest use stays longest
      return hit;
    }
    let event: { content?: { "m.relates_to"?: { rel_type?: unknown; event_id?: unknown } } } | undefined;
    try {
      event = (await this.client.getEvent(roomId, eventId)) as typeof event;
    } catch (err) {
      // Not cached: a homeserver that cannot see the event yet (federation) may later.
      this.log.debug({ err, roomId, eventId }, "could not fetch the replied-to event");
      return undefined;
    }
    const rel = event?.content?.["m.relates_to"];
    const root = rel?.rel_type === "m.thread" && typeof rel.event_id === "string" ? rel.event_id : eventId;
    this.remember(roomId, eventId, root);
    return root;
  }

  /** Records that `eventId` belongs to the thread rooted at `root` (a plain reply the bot routed there). */
  remember(roomId: string, eventId: string, root: string): void {
    const key = `${roomId}\u0000${eventId}`;
    this.roots.delete(key);
    this.roots.set(key, root);
    if (this.roots.size > this.maxEntries) this.roots.delete(this.roots.keys().next().value as string);
  }
}

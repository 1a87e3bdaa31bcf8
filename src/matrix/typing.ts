import type { Logger } from "../log.ts";
import { DroppedRequestError, inLane } from "./request-lanes.ts";

/** The one call of the Matrix client this needs (matrix-bot-sdk's `setTyping`). */
export interface TypingClient {
  setTyping(roomId: string, typing: boolean, timeoutMs?: number): Promise<unknown>;
}

export interface TypingOptions {
  /** How long the homeserver shows "typing" without a renewal (ms). */
  timeoutMs?: number;
  /** How often a held room's notification is renewed (ms); below `timeoutMs`, so it never lapses. */
  renewMs?: number;
  /** A room held this long stops being renewed (its notification lapses): a hold never released cannot type forever. */
  maxHoldMs?: number;
  /** At most this many rooms are held at once; further holds are no-ops. */
  maxRooms?: number;
}

interface Held {
  count: number;
  since: number;
  timer: ReturnType<typeof setInterval>;
}

/**
 * "The bot is typing…" while work for a room is in hand. `hold(roomId)` returns its release;
 * holds are counted per room: the first sends typing (and renews it before it lapses), the
 * last release sends typing off. The calls for one room go out in order, so an "off" never
 * overtakes the "on" before it. Failures are logged at debug and ignored: typing is decoration.
 */
export class TypingKeeper {
  private readonly client: TypingClient;
  private readonly log: Pick<Logger, "debug">;
  private readonly timeoutMs: number;
  private readonly renewMs: number;
  private readonly maxHoldMs: number;
  private readonly maxRooms: number;
  private readonly held = new Map<string, Held>();
  /** The last request per room, so the next waits for it; removed once it settled and no newer one exists. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Rooms where the homeserver shows the bot typing (the last call that went out was an "on"). */
  private readonly shown = new Set<string>();

  constructor(client: TypingClient, log: Pick<Logger, "debug">, opts: TypingOptions = {}) {
    this.client = client;
    this.log = log;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.renewMs = Math.min(opts.renewMs ?? 20_000, this.timeoutMs);
    this.maxHoldMs = opts.maxHoldMs ?? 60 * 60_000;
    this.maxRooms = opts.maxRooms ?? 1_000;
  }

  /** Rooms held now (for tests and metrics). */
  get activeRooms(): number {
    return this.held.size;
  }

  /** Shows the bot typing in `roomId` until the returned function is called (once; later calls do nothing). */
  hold(roomId: string): () => void {
    const current = this.held.get(roomId);
    if (current) {
      current.count++;
    } else {
      if (this.held.size >= this.maxRooms) return () => undefined;
      const since = Date.now();
      const timer = setInterval(() => this.renew(roomId), this.renewMs);
      timer.unref?.();
      this.held.set(roomId, { count: 1, since, timer });
      this.send(roomId, true);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(roomId);
    };
  }

  /** Drops every hold and says "not typing" in each room (at shutdown). */
  stop(): void {
    for (const [roomId, h] of this.held) {
      clearInterval(h.timer);
      this.send(roomId, false);
    }
    this.held.clear();
  }

  private release(roomId: string): void {
    const h = this.held.get(roomId);
    if (!h) return;
    if (--h.count > 0) return;
    clearInterval(h.timer);
    this.held.delete(roomId);
    this.send(roomId, false);
  }

  private renew(roomId: string): void {
    const h = this.held.get(roomId);
    if (!h) return;
    if (Date.now() - h.since >= this.maxHoldMs) {
      // Held for too long: stop renewing and let the homeserver's timeout end it.
      clearInterval(h.timer);
      this.log.debug({ roomId, heldMs: Date.now() - h.since }, "typing held too long; letting it lapse");
      return;
    }
    this.send(roomId, true);
  }

  private send(roomId: string, typing: boolean): void {
    const prev = this.chains.get(roomId) ?? Promise.resolve();
    const next = prev.then(async () => {
      // An "off" after an "on" that never went out (dropped in the queue) has nothing to take back.
      if (!typing && !this.shown.has(roomId)) return;
      try {
        // Decoration: behind every answer when the homeserver is busy, and an "on" still waiting
        // after 2 s is dropped (it would come too late to mean anything); an "off" always goes.
        await inLane(typing ? { lane: "background", maxWaitMs: 2000 } : { lane: "background" }, () => this.client.setTyping(roomId, typing, this.timeoutMs));
        if (typing) this.shown.add(roomId);
        else this.shown.delete(roomId);
      } catch (err) {
        // A failed "on" may still have reached the homeserver; only one that never went out needs no "off".
        if (typing && !(err instanceof DroppedRequestError)) this.shown.add(roomId);
        if (!typing) this.shown.delete(roomId);
        this.log.debug({ err, roomId, typing }, "could not set typing");
      }
    });
    this.chains.set(roomId, next);
    void next.then(() => {
      if (this.chains.get(roomId) === next) this.chains.delete(roomId);
    });
  }
}

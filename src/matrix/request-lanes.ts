import { AsyncLocalStorage } from "node:async_hooks";

// Under load the homeserver, not the bot, is what people wait for: 200 replies streaming at
// once queue hundreds of requests in it, and a final answer or a first 👀 then waits behind
// streamed edits nobody will read. So the bot keeps at most `maxInFlight` requests at the
// homeserver and decides itself what goes next: word that a server went away (its threads stop
// until it is back), then acknowledgements and finals, then the first post of a reply or a
// push, then streamed edits, then decoration (typing, read receipts).

/** Lower goes first. */
export type Lane = "alarm" | "urgent" | "first" | "edit" | "background";
const order: Record<Lane, number> = { alarm: -1, urgent: 0, first: 1, edit: 2, background: 3 };

/** A place in the queue whose lane the holder may raise while it waits (a streamed edit that becomes the final). */
export interface Ticket {
  lane: Lane;
  /** Given up (the request is not sent, the waiter gets a DroppedRequestError) when still waiting after this long. */
  maxWaitMs?: number;
}

export class DroppedRequestError extends Error {
  override name = "DroppedRequestError";
  constructor(waitedMs: number) {
    super(`dropped after waiting ${waitedMs} ms for the homeserver`);
  }
}

interface Waiter {
  ticket: Ticket;
  since: number;
  seq: number;
  grant: (release: () => void) => void;
  drop: (err: Error) => void;
}

/** A held slot: requests made inside it go out at once (they are the work the slot was granted for). */
interface Scope {
  ticket?: Ticket;
  held?: { active: boolean };
}

const scope = new AsyncLocalStorage<Scope>();

/** Runs `fn` with its homeserver requests in `lane` (typing and receipts: "background"). */
export function inLane<T>(lane: Lane | Ticket, fn: () => T): T {
  return scope.run({ ticket: typeof lane === "string" ? { lane } : lane }, fn);
}

export class RequestLanes {
  readonly maxInFlight: number;
  private inFlight = 0;
  private seq = 0;
  private readonly waiting: Waiter[] = [];
  /** Told of every request that went out: its time at the homeserver and its wait in the queue before. */
  onDone: ((lane: Lane, serviceMs: number, waitedMs: number) => void) | undefined;

  constructor(opts: { maxInFlight: number }) {
    this.maxInFlight = opts.maxInFlight;
  }

  /** Requests waiting for a slot, per lane (metrics, tests). */
  get queued(): Record<Lane, number> {
    const n: Record<Lane, number> = { alarm: 0, urgent: 0, first: 0, edit: 0, background: 0 };
    for (const w of this.waiting) n[w.ticket.lane]++;
    return n;
  }

  get active(): number {
    return this.inFlight;
  }

  /**
   * Runs one request under the lanes: inside a held slot at once, otherwise when its turn comes.
   * The lane is the caller's (inLane), urgent when none was given.
   */
  async run<T>(request: () => Promise<T>): Promise<T> {
    const current = scope.getStore();
    if (current?.held?.active) return request();
    const ticket = current?.ticket ?? { lane: "urgent" };
    const started = Date.now();
    const release = await this.acquire(ticket);
    const sentAt = Date.now();
    try {
      return await request();
    } finally {
      this.onDone?.(ticket.lane, Date.now() - sentAt, sentAt - started);
      release();
    }
  }

  /**
   * Waits for a slot and runs `work` in it: every homeserver request `work` makes goes out at
   * once, so it can pick what to send when its turn has come (the newest text, not the one of
   * when it began to wait).
   */
  async hold<T>(ticket: Ticket, work: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const release = await this.acquire(ticket);
    const held = { active: true };
    const sentAt = Date.now();
    try {
      return await scope.run({ ticket, held }, work);
    } finally {
      held.active = false;
      this.onDone?.(ticket.lane, Date.now() - sentAt, sentAt - started);
      release();
    }
  }

  private acquire(ticket: Ticket): Promise<() => void> {
    if (this.inFlight < this.maxInFlight && this.waiting.length === 0) {
      this.inFlight++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((grant, drop) => {
      this.waiting.push({ ticket, since: Date.now(), seq: this.seq++, grant, drop });
      if (ticket.maxWaitMs !== undefined) setTimeout(() => this.expire(), ticket.maxWaitMs + 1).unref();
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
      this.next();
    };
  }

  private next(): void {
    this.expire();
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      let best = 0;
      for (let i = 1; i < this.waiting.length; i++) {
        const a = this.waiting[i] as Waiter;
        const b = this.waiting[best] as Waiter;
        if (order[a.ticket.lane] < order[b.ticket.lane] || (order[a.ticket.lane] === order[b.ticket.lane] && a.seq < b.seq)) best = i;
      }
      const [w] = this.waiting.splice(best, 1) as [Waiter];
      this.inFlight++;
      w.grant(this.releaser());
    }
  }

  /** Drops waiters past their maxWaitMs (typing that would come too late to mean anything). */
  private expire(): void {
    const now = Date.now();
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i] as Waiter;
      if (w.ticket.maxWaitMs !== undefined && now - w.since > w.ticket.maxWaitMs) {
        this.waiting.splice(i, 1);
        w.drop(new DroppedRequestError(now - w.since));
      }
    }
  }
}

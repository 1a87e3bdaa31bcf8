/**
 * Token buckets by key: each key may spend `perMinute` at once, and earns them back evenly over
 * a minute. The notify token is in the agent's environment by design, so whatever holds it
 * (a prompt-injected agent included) must not be able to flood a room.
 */
export class KeyedRateLimiter {
  private readonly capacity: number;
  private readonly perMs: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Past this many keys, buckets that have refilled (and so hold nothing to remember) are dropped. */
  private readonly maxKeys: number;

  constructor(perMinute: number, opts: { now?: () => number; maxKeys?: number } = {}) {
    this.capacity = perMinute;
    this.perMs = perMinute / 60_000;
    this.now = opts.now ?? Date.now;
    this.maxKeys = opts.maxKeys ?? 1000;
  }

  get perMinute(): number {
    return this.capacity;
  }

  /** Spends one for `key`: 0 when allowed, else the ms until one is earned back (nothing spent). */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.capacity, at: now };
    const tokens = Math.min(this.capacity, b.tokens + (now - b.at) * this.perMs);
    if (tokens < 1) {
      this.buckets.set(key, { tokens, at: now });
      return Math.ceil((1 - tokens) / this.perMs);
    }
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    if (this.buckets.size > this.maxKeys) this.prune(now);
    return 0;
  }

  private prune(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.capacity) this.buckets.delete(key);
    }
  }
}

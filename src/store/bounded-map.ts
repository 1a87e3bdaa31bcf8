/**
 * An in-memory map that cannot grow without bound: at most `maxEntries` entries (the least
 * recently used go first), each forgotten `ttlMs` after it was set (when given). For caches and
 * per-person or per-room memory that would otherwise only ever grow in a long-running bot.
 */
export class BoundedMap<K, V> {
  private readonly entries = new Map<K, { value: V; at: number }>();
  readonly maxEntries: number;
  private readonly ttlMs: number | undefined;
  private readonly now: () => number;

  constructor(opts: { maxEntries: number; ttlMs?: number | undefined; now?: () => number }) {
    if (!(opts.maxEntries >= 1)) throw new RangeError("maxEntries must be at least 1");
    this.maxEntries = opts.maxEntries;
    this.ttlMs = opts.ttlMs;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value, unless it is missing or expired; a hit becomes the most recently used. */
  get(key: K): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    if (this.ttlMs !== undefined && this.now() - e.at >= this.ttlMs) return undefined;
    this.entries.set(key, e);
    return e.value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, { value, at: this.now() });
    // A Map iterates in insertion order: the first key is the least recently used.
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as K);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

import type { Logger } from "../log.ts";
import type { QueuedTurn, TurnQueue } from "./queue.ts";

/**
 * One turn at a time per key (an agent, a thread), the rest waiting in the durable queue. For
 * backends whose turn is one awaited call (Letta, ACP); OpenCode's turns end on a server event
 * and use the queue directly. A prompt is added to the queue by the backend, in the
 * transaction that records it; `kick` then starts the key's lane if it is idle.
 */
export class TurnLanes<P> {
  readonly queue: TurnQueue<P>;
  private readonly run: (item: QueuedTurn<P>) => Promise<void>;
  private readonly log: Logger;
  private readonly busy = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private stopping = false;

  constructor(queue: TurnQueue<P>, run: (item: QueuedTurn<P>) => Promise<void>, log: Logger) {
    this.queue = queue;
    this.run = run;
    this.log = log;
  }

  isBusy(key: string): boolean {
    return this.busy.has(key);
  }

  get size(): number {
    return this.busy.size;
  }

  /** Starts the key's lane unless it runs already. Returns whether it was idle. */
  kick(key: string): boolean {
    if (this.busy.has(key) || this.stopping) return false;
    this.busy.add(key);
    const done = this.drain(key).finally(() => {
      this.running.delete(done);
      this.busy.delete(key);
    });
    this.running.add(done);
    return true;
  }

  /** Every key with prompts waiting (after a restart). */
  resume(): void {
    for (const key of this.queue.keys()) this.kick(key);
  }

  private async drain(key: string): Promise<void> {
    while (!this.stopping) {
      const next = this.queue.next(key);
      if (!next) return;
      // Taken out before it runs: a crash during the turn leaves it to recovery, never sent twice.
      this.queue.remove(next.id);
      try {
        await this.run(next);
      } catch (err) {
        this.log.error({ err, key }, "a queued turn failed");
      }
    }
  }

  /** Resolves when no turn is running. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  /** Takes no new turns; waits up to `graceMs` for the running ones. What waits stays queued for the next start. */
  async stop(graceMs: number, cutOff?: () => void): Promise<void> {
    this.stopping = true;
    const all = Promise.all([...this.running]);
    await Promise.race([all, new Promise<void>((r) => setTimeout(r, graceMs).unref())]);
    cutOff?.();
    await Promise.race([all, new Promise<void>((r) => setTimeout(r, 5000).unref())]);
  }
}

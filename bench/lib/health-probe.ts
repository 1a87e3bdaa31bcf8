// The scale phase watches OpenCode's responsiveness as the bot's health check sees it.
import { setTimeout as sleep } from "node:timers/promises";

/** How long OpenCode takes to answer GET /global/health (what the bot's health check asks, with a 2 s timeout). */
export class HealthProbe {
  private readonly samples: number[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(url: string) {
    this.loop = (async () => {
      while (this.running) {
        const t0 = performance.now();
        const ok = await fetch(url, { signal: AbortSignal.timeout(60_000) }).then((r) => r.ok, () => false);
        if (ok) this.samples.push(performance.now() - t0);
        await sleep(500);
      }
    })();
  }

  async stop(): Promise<number[]> {
    this.running = false;
    await this.loop;
    return this.samples;
  }
}

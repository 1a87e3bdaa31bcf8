import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Asks the kernel for an unused port on 127.0.0.1. The port is released before
 * returning, so another process could grab it in between; callers that bind
 * later should be ready to retry on "address in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("freePort: unexpected server address " + String(addr)));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

export interface WaitForOptions {
  timeoutMs: number;
  intervalMs?: number;
  what: string;
}

/**
 * Polls `fn` until it yields something other than undefined/false. Errors thrown
 * by `fn` count as "not yet" (a server that is still booting refuses
 * connections); the last one is attached to the timeout error as its cause so
 * a permanently failing probe is still diagnosable.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false>,
  opts: WaitForOptions,
): Promise<T> {
  const interval = opts.intervalMs ?? 100;
  const deadline = performance.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(interval, left));
  }
  const err = new Error(`Timed out after ${opts.timeoutMs}ms waiting for ${opts.what}`);
  if (lastError !== undefined) err.cause = lastError;
  throw err;
}

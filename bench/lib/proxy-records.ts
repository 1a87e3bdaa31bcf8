// Reading the counting proxy's records (bench/counting-proxy.ts): its per-route counts by kind,
// and this process's clock on the proxy's.
import type { ProxyStats } from "../counting-proxy.ts";

/** The proxy's requests as writes (PUT/POST/DELETE), syncs and the rest. */
export function routeSummary(s: ProxyStats): { writes: number; syncs: number; other: number } {
  let writes = 0;
  let syncs = 0;
  for (const [route, n] of Object.entries(s.byRoute)) {
    if (/\/sync$/.test(route)) syncs += n;
    else if (/^(PUT|POST|DELETE) /.test(route)) writes += n;
  }
  return { writes, syncs, other: s.requests - writes - syncs };
}

/** performance.now() of this process → epoch ms, comparable with the proxy's timestamps. */
export const epoch = (perfNow: number): number => performance.timeOrigin + perfNow;

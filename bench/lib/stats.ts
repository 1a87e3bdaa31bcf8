/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN for none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = samples.toSorted((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export function summarize(samples: readonly number[]): Summary {
  const n = samples.length;
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    n,
    p50: round(percentile(samples, 50)),
    p99: round(percentile(samples, 99)),
    min: round(n ? Math.min(...samples) : Number.NaN),
    max: round(n ? Math.max(...samples) : Number.NaN),
    mean: round(n ? sum / n : Number.NaN),
  };
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Where the time of each of several bot messages went (bot / PUT / sync, as in `Split` of report.ts), summarized per part. */
export function splitSummary(xs: Array<{ bot: number; put: number; sync: number }>): { bot: Summary; put: Summary; sync: Summary } {
  return { bot: summarize(xs.map((x) => x.bot)), put: summarize(xs.map((x) => x.put)), sync: summarize(xs.map((x) => x.sync)) };
}

/**
 * A small seeded generator (mulberry32) for fuzz and garbage tests: the same seed gives the same
 * inputs, so a failure can be replayed with FUZZ_SEED=<n>.
 */
export function seededRandom(defaultSeed: number): { seed: number; rand: () => number; int: (n: number) => number; pick: <T>(xs: readonly T[]) => T } {
  const seed = Number(process.env.FUZZ_SEED ?? defaultSeed);
  const rand = mulberry32(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  return { seed, rand, int, pick };
}

/** The bare generator: numbers in [0, 1) from `seed`. */
export function mulberry32(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

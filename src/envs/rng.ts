/**
 * Seeded randomness for the environments: a mulberry32 stream plus a seed mixer, so every random
 * choice (deal, seat, level, opponent reply) is a pure function of the reset seed. Nothing in
 * src/envs may use Math.random.
 */

/** A uniform [0, 1) random source. */
export type RandomSource = () => number;

/** mulberry32: a 32-bit-state generator, good enough for games and cheap to re-seed per decision. */
export function mulberry32(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 32-bit avalanche finaliser (every input bit affects every output bit). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Combine integers (a reset seed, a stream tag, a state hash …) into one 32-bit seed. Safe
 * integers are mixed with both their low and high 32 bits, so seeds above 2^32 stay distinct.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x2545f491;
  for (const p of parts) {
    if (!Number.isSafeInteger(p)) throw new Error(`mixSeed: ${p} is not a safe integer; seeds must be integers`);
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = fmix32((h ^ fmix32(lo + 0x9e3779b9)) + Math.imul(hi ^ 0x85ebca6b, 0x27d4eb2d));
  }
  return h;
}

/** FNV-1a hash of a string (used to key per-state opponent streams). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Uniform integer in [0, n). */
export function randInt(rng: RandomSource, n: number): number {
  return Math.min(n - 1, Math.floor(rng() * n));
}

/** Uniform element of a non-empty array. */
export function pick<T>(rng: RandomSource, items: readonly T[]): T {
  if (items.length === 0) throw new Error('pick: cannot choose from an empty list');
  return items[randInt(rng, items.length)]!;
}

/** Check a reset seed early, with an error that says what to pass instead. */
export function assertSeed(seed: number, env: string): void {
  if (!Number.isSafeInteger(seed)) throw new Error(`${env}.reset: seed must be a safe integer, got ${seed}`);
}

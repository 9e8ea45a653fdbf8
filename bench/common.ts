/** Helpers shared by the benchmarks: timing, summary statistics, CLI integers, synthetic inputs. */
import { InvalidArgumentError } from 'commander';
import type { Sample } from '../src/core/types.ts';
import type { Tokenizer } from '../src/engine/types.ts';
import { Rng } from '../src/core/rng.ts';

/** Seconds on the monotonic clock. */
export const now = (): number => performance.now() / 1000;

export function round(x: number, d = 1): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** Median with min/max and every run, rounded to `d` decimals. */
export interface Stats { median: number; min: number; max: number; runs: number[] }

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** null when there are no runs (a peer that was skipped or failed). */
export function stats(xs: readonly number[], d = 1): Stats | null {
  if (xs.length === 0) return null;
  return { median: round(median(xs), d), min: round(Math.min(...xs), d), max: round(Math.max(...xs), d), runs: xs.map((x) => round(x, d)) };
}

/** A commander parser for options that must be positive integers. */
export const positiveInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

/** The named environment variables (null when unset), for the JSON record. */
export const envOf = (keys: string[]): Record<string, string | null> => Object.fromEntries(keys.map((k) => [k, process.env[k] ?? null]));

/** A tokenizer of V ids for engines fed token ids only: no text is encoded, and no id is EOS. */
export const idTokenizer = (V: number): Tokenizer => ({
  vocabSize: V, eosId: -1, encode: () => [], decode: (ids) => ids.join(' '), tokenString: (id) => String(id), tokenId: () => undefined,
});

/** B rows of T + 1 random ids below V, every position after the first trained. */
export function randomTrainSamples(B: number, T: number, V: number, seed: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: B }, () => {
    const ids = Array.from({ length: T + 1 }, () => rng.int(V));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

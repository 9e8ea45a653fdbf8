/**
 * Task items for MAGE trials: group i plays against an opponent drawn from the (weighted) training
 * pool, from an initial-state seed — both a pure function of (seed, i), so a resumed run that starts
 * the source at the groups already admitted draws exactly the items an uninterrupted run would.
 */
import { z } from 'zod';
import { Rng } from '../core/rng.ts';
import { mixSeed } from '../envs/rng.ts';
import type { TrialItem } from '../agents/trial.ts';

export const OpponentWeightSchema = z.object({ name: z.string().min(1), weight: z.number().positive().default(1) }).strict();
export type OpponentWeight = z.output<typeof OpponentWeightSchema>;

/** Weighted draw from the opponent pool. */
export function drawOpponent(pool: readonly OpponentWeight[], rng: Rng): string {
  if (pool.length === 0) throw new Error('drawOpponent: the opponent pool is empty');
  const total = pool.reduce((a, o) => a + o.weight, 0);
  let u = rng.next() * total;
  for (const o of pool) {
    u -= o.weight;
    if (u < 0) return o.name;
  }
  return pool[pool.length - 1]!.name;
}

/** The item of group `index`. `pool` is read when the item is drawn (a league may change it between steps). */
export function trialItem(seed: number, index: number, pool: readonly OpponentWeight[]): TrialItem {
  const rng = new Rng(mixSeed(seed, 0x7121a1, index));
  const opponent = drawOpponent(pool, rng);
  return { opponent, seed: rng.nextU32() };
}

/** Endless trial items from group `start` on (resume: start = groups already admitted). */
export function* trialSource(seed: number, pool: readonly OpponentWeight[] | (() => readonly OpponentWeight[]), start = 0): Generator<TrialItem> {
  for (let i = start; ; i++) yield trialItem(seed, i, typeof pool === 'function' ? pool() : pool);
}

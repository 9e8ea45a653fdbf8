/**
 * Population-based training (PBT) steps as small functions: per-member hyperparameters, the
 * explore perturbation (×0.8 or ×1.25 per hyperparameter, clipped to bounds), the exploit plan
 * (the worst members copy randomly chosen members of the best) and the exact copy of a learner's
 * state (weights, AdamW moments and step) from one trainer to another.
 */
import { z } from 'zod';
import type { Rng } from '../../core/rng.ts';
import type { BuiltinTrainer } from '../builtin-trainer.ts';
import type { BuiltinEngine } from '../../engine/builtin-engine.ts';

/** The hyperparameters PBT searches over, per member. */
export interface Hyper {
  /** AdamW learning rate (trainer.opt.lr). */
  lr: number;
  /** Entropy bonus coefficient of the policy loss (loss.entropyCoef). */
  entropyCoef: number;
  /** Discount across episode boundaries of a trial (credit.gammaTrial). */
  gammaTrial: number;
}
export const HYPER_NAMES = ['lr', 'entropyCoef', 'gammaTrial'] as const;
export type HyperName = (typeof HYPER_NAMES)[number];

const Range = z.tuple([z.number().min(0), z.number().min(0)]).refine(([lo, hi]) => lo <= hi, { message: 'range must be [min, max] with min ≤ max' });

export const HyperSpaceSchema = z.object({
  /** Initial values are drawn from these ranges (log-uniform for lr and entropyCoef when min > 0, uniform otherwise). */
  init: z.object({
    lr: Range.default([3e-3, 1e-2]),
    entropyCoef: Range.default([0.005, 0.03]),
    gammaTrial: Range.default([0.5, 0.9]),
  }).default({}),
  /** Explore never leaves these bounds. */
  bounds: z.object({
    lr: Range.default([1e-4, 5e-2]),
    entropyCoef: Range.default([0, 0.1]),
    gammaTrial: Range.default([0, 1]),
  }).default({}),
}).superRefine((s, ctx) => {
  if (s.bounds.gammaTrial[1] > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['bounds', 'gammaTrial'], message: 'gammaTrial is a discount: its upper bound must be ≤ 1' });
  if (!(s.bounds.lr[0] > 0)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['bounds', 'lr'], message: 'the learning-rate lower bound must be > 0 (AdamW needs a positive lr)' });
  for (const h of HYPER_NAMES) {
    const [lo, hi] = s.init[h], [blo, bhi] = s.bounds[h];
    if (lo < blo || hi > bhi) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['init', h], message: `initial range [${lo}, ${hi}] must lie inside bounds [${blo}, ${bhi}]` });
  }
});
export type HyperSpace = z.output<typeof HyperSpaceSchema>;

function drawIn([lo, hi]: readonly [number, number], logScale: boolean, rng: Rng): number {
  if (lo === hi) return lo;
  if (logScale && lo > 0) return Math.exp(Math.log(lo) + rng.next() * (Math.log(hi) - Math.log(lo)));
  return lo + rng.next() * (hi - lo);
}

/** Initial hyperparameters of one member. */
export function sampleHyper(space: HyperSpace, rng: Rng): Hyper {
  return {
    lr: drawIn(space.init.lr, true, rng),
    entropyCoef: drawIn(space.init.entropyCoef, true, rng),
    gammaTrial: drawIn(space.init.gammaTrial, false, rng),
  };
}

function clip(x: number, [lo, hi]: readonly [number, number]): number {
  return Math.min(hi, Math.max(lo, x));
}

/**
 * Explore: multiply every hyperparameter by one of `factors` (chosen uniformly, independently per
 * hyperparameter) and clip to its bounds. A value of 0 stays 0 (multiplicative search).
 */
export function perturbHyper(h: Hyper, bounds: HyperSpace['bounds'], rng: Rng, factors: readonly number[] = [0.8, 1.25]): Hyper {
  if (factors.length === 0) throw new Error('perturbHyper: factors must not be empty (PBT uses [0.8, 1.25])');
  const out = { ...h };
  for (const name of HYPER_NAMES) out[name] = clip(h[name] * factors[rng.int(factors.length)]!, bounds[name]);
  return out;
}

/**
 * Set a trainer's learning rate. `trainer.opt` is the parsed optimizer config (the reference is
 * readonly, its fields are plain data); the schedule reads `opt.lr` at every step, so changing it
 * takes effect at the next step, and trainer checkpoints store it.
 */
export function setLearningRate(trainer: BuiltinTrainer, lr: number): void {
  if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`setLearningRate: lr must be a positive finite number, got ${lr}`);
  (trainer.opt as { lr: number }).lr = lr;
}

/**
 * Exploit: copy weights, AdamW moments and step from `from` into `to` (both must share one
 * parameter layout), and publish the copied weights to `engine` (the target member's engine).
 */
export function copyLearnerState(from: BuiltinTrainer, to: BuiltinTrainer, engine?: BuiltinEngine): void {
  if (from === to) return;
  const a = from.model, b = to.model;
  if (a.numParams !== b.numParams || a.layout.some((v, i) => v.name !== b.layout[i]?.name || v.size !== b.layout[i]?.size)) {
    throw new Error(`copyLearnerState: the two models have different parameter layouts (${a.numParams} vs ${b.numParams} parameters); population members must share one model config`);
  }
  b.params.set(a.params);
  to.m.set(from.m);
  to.v.set(from.v);
  to.step = from.step;
  engine?.setWeights(b.params, to.version());
}

export interface ExploitPlanOptions {
  /** Fraction of ranked members in the bottom (copiers) and top (sources) sets; at least one each. */
  fraction: number;
}

/**
 * Truncation selection. `fitness[i]` is null for a member not ready to be ranked (too few recent
 * iterations). Ready members are ranked best first; each of the bottom ⌈fraction·n⌉ copies a
 * uniformly drawn member of the top ⌈fraction·n⌉ (n = ready members; bottom and top never overlap).
 * Returns [] when fewer than two members are ready.
 */
export function planExploit(fitness: readonly (number | null)[], opts: ExploitPlanOptions, rng: Rng): { target: number; source: number }[] {
  if (!(opts.fraction > 0 && opts.fraction <= 0.5)) throw new Error(`planExploit: fraction must be in (0, 0.5], got ${opts.fraction}`);
  const ready = fitness.map((f, i) => ({ f, i })).filter((x): x is { f: number; i: number } => x.f !== null && Number.isFinite(x.f));
  if (ready.length < 2) return [];
  // Best first; ties broken by index so the plan is deterministic.
  ready.sort((x, y) => y.f - x.f || x.i - y.i);
  const k = Math.max(1, Math.min(Math.floor(ready.length / 2), Math.ceil(opts.fraction * ready.length)));
  const top = ready.slice(0, k), bottom = ready.slice(ready.length - k);
  return bottom.filter((b) => b.f < top[top.length - 1]!.f).map((b) => ({ target: b.i, source: top[rng.int(top.length)]!.i }));
}

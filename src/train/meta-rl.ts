/**
 * MAGE-style multi-episode meta-RL on the built-in engine.
 *
 * Each iteration: for G groups, draw an opponent from the training pool and an initial-state seed,
 * run `groupSize` K-episode trials with that seed and opponent concurrently (the engine batches
 * them), assign MAGE credit (differential episode rewards, γ_step/γ_trial returns, penalties), compute
 * GiGPO advantages normalised per (group × opponent) and per (group × anchor × opponent), take one
 * PPO step and publish the weights. With `trial.episodes = 1` and no reflection this is plain GRPO —
 * the baseline the results compare against at equal compute.
 */
import { z } from 'zod';
import type { Sample, Trajectory } from '../core/types.ts';
import { Rng } from '../core/rng.ts';
import type { TextEnv } from '../envs/types.ts';
import type { BuiltinEngine } from '../engine/builtin-engine.ts';
import { runTrial, TrialConfigSchema, type TrialStepMeta } from '../agents/trial.ts';
import { assignTrialCredit, CreditConfigSchema, stepAdvantages, StepAdvantageConfigSchema } from '../rl/credit.ts';
import { LossConfigSchema } from '../rl/losses.ts';
import type { BuiltinTrainer } from './builtin-trainer.ts';
import { rlLoss } from './rl-loss.ts';

export const OpponentWeightSchema = z.object({ name: z.string().min(1), weight: z.number().positive().default(1) });

export const MetaRlConfigSchema = z.object({
  iterations: z.number().int().min(1).default(60),
  /** Groups per iteration (each: one seed × one opponent). */
  groups: z.number().int().min(1).default(16),
  /** Trials per group (compared with each other). */
  groupSize: z.number().int().min(2).default(8),
  /** Training opponent pool with sampling weights. */
  opponents: z.array(OpponentWeightSchema).min(1),
  trial: TrialConfigSchema.default({}),
  credit: CreditConfigSchema.default({}),
  advantage: StepAdvantageConfigSchema.default({}),
  loss: LossConfigSchema.default({}),
  /**
   * Optimizer steps per iteration: the batch is split by trajectory into this many minibatches, each
   * one PPO step against the behaviour logprobs (verl's ppo_mini_batch_size; the ratio clip keeps the
   * later steps near the sampling policy). 1 = one on-policy step per batch.
   */
  minibatches: z.number().int().min(1).default(1),
  seed: z.number().int().default(0),
});
export type MetaRlConfig = z.output<typeof MetaRlConfigSchema>;
export type MetaRlConfigInput = z.input<typeof MetaRlConfigSchema>;

export interface IterationMetrics {
  iteration: number;
  /** Mean return of episode k over the iteration's trials (only trials that reached k). */
  episodeReturn: number[];
  /** Mean final-episode return (the objective). */
  finalReturn: number;
  winRate: number[];
  invalidRate: number;
  loss: number;
  gradNorm: number;
  samples: number;
  tokens: number;
  seconds: number;
}

/** Parse a meta-RL config, naming the field and the fix on error. */
export function parseMetaRlConfig(input: unknown): MetaRlConfig {
  const r = MetaRlConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid meta-RL config: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Weighted draw from the opponent pool. */
export function drawOpponent(pool: { name: string; weight: number }[], rng: Rng): string {
  const total = pool.reduce((a, o) => a + o.weight, 0);
  let u = rng.next() * total;
  for (const o of pool) {
    u -= o.weight;
    if (u < 0) return o.name;
  }
  return pool[pool.length - 1]!.name;
}

/** Fill sample.reward (return G) and sample.advantage for a batch of trials. */
export function creditAndAdvantages(trajs: Trajectory[], cfg: Pick<MetaRlConfig, 'credit' | 'advantage'>): Sample[] {
  const all: { sample: Sample; score: number; ret: number }[] = [];
  for (const t of trajs) {
    const metas = t.samples.map((s) => s.meta as unknown as TrialStepMeta);
    const episodeReturns = (t.info as { episodeReturns: number[] }).episodeReturns;
    const credit = assignTrialCredit(metas, cfg.credit, episodeReturns);
    t.samples.forEach((s, i) => {
      s.reward = credit.returns[i]!;
      all.push({ sample: s, score: credit.scores[i]!, ret: credit.returns[i]! });
    });
  }
  const adv = stepAdvantages(all.map((a) => ({ score: a.score, ret: a.ret, keys: a.sample.keys })), cfg.advantage);
  all.forEach((a, i) => (a.sample.advantage = adv.advantages[i]!));
  return all.map((a) => a.sample);
}

export interface MetaRlRunner {
  engine: BuiltinEngine;
  trainer: BuiltinTrainer;
  /** A fresh environment instance playing against `opponent`. */
  makeEnv: (opponent: string) => TextEnv;
  onIteration?: (m: IterationMetrics) => void;
}

/** Run one training iteration; returns its metrics. */
export async function metaRlIteration(cfg: MetaRlConfig, run: MetaRlRunner, iteration: number, rng: Rng): Promise<IterationMetrics> {
  const t0 = performance.now();
  const jobs: Promise<Trajectory>[] = [];
  for (let g = 0; g < cfg.groups; g++) {
    const opponent = drawOpponent(cfg.opponents, rng);
    const seed = rng.nextU32();
    const groupId = `it${iteration}/g${g}`;
    for (let j = 0; j < cfg.groupSize; j++) {
      jobs.push(runTrial(run.makeEnv(opponent), run.engine, cfg.trial, { seed, groupId, opponent }));
    }
  }
  const trajs = await Promise.all(jobs);
  const samples = creditAndAdvantages(trajs, cfg);
  const m = trainInMinibatches(run.trainer, trajs, cfg);
  run.engine.setWeights(run.trainer.model.params, run.trainer.version());
  const K = cfg.trial.episodes;
  const epRet: number[] = [], win: number[] = [];
  for (let k = 0; k < K; k++) {
    const reached = trajs.map((t) => t.info as { episodeReturns: number[]; episodeWon: boolean[] }).filter((i) => i.episodeReturns.length > k);
    epRet.push(reached.length ? reached.reduce((a, i) => a + i.episodeReturns[k]!, 0) / reached.length : Number.NaN);
    win.push(reached.length ? reached.filter((i) => i.episodeWon[k]).length / reached.length : Number.NaN);
  }
  const plays = samples.filter((s) => (s.meta as unknown as TrialStepMeta).kind === 'play');
  const metrics: IterationMetrics = {
    iteration,
    episodeReturn: epRet,
    finalReturn: trajs.reduce((a, t) => a + t.reward, 0) / trajs.length,
    winRate: win,
    invalidRate: plays.filter((s) => !(s.meta as unknown as TrialStepMeta).valid).length / Math.max(1, plays.length),
    loss: m.loss,
    gradNorm: m.gradNorm,
    samples: samples.length,
    tokens: m.tokens,
    seconds: (performance.now() - t0) / 1000,
  };
  run.onIteration?.(metrics);
  return metrics;
}

/** One PPO step per minibatch of whole trajectories (advantages were computed on the full batch). */
function trainInMinibatches(trainer: BuiltinTrainer, trajs: Trajectory[], cfg: MetaRlConfig): { loss: number; gradNorm: number; tokens: number } {
  const loss = rlLoss(cfg.loss);
  const n = Math.min(cfg.minibatches, trajs.length);
  let lossSum = 0, normSum = 0, tokens = 0;
  for (let b = 0; b < n; b++) {
    // Strided split: every minibatch holds trajectories from every group.
    const part = trajs.filter((_, i) => i % n === b).flatMap((t) => t.samples);
    const m = trainer.trainStep(part, loss);
    lossSum += m.loss;
    normSum += m.gradNorm;
    tokens += m.tokens;
  }
  return { loss: lossSum / n, gradNorm: normSum / n, tokens };
}

/** Train for cfg.iterations iterations. */
export async function trainMetaRl(cfgIn: MetaRlConfigInput, run: MetaRlRunner): Promise<IterationMetrics[]> {
  const cfg = parseMetaRlConfig(cfgIn);
  const rng = new Rng(cfg.seed);
  const history: IterationMetrics[] = [];
  for (let i = 0; i < cfg.iterations; i++) history.push(await metaRlIteration(cfg, run, i, rng));
  return history;
}

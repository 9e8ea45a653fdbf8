/**
 * Fully asynchronous RL (AReaL / ASearcher): rollouts keep running on the inference engine while the
 * trainer trains, and the staleness bound η decides how far generation may run ahead.
 *
 * One step:
 *   batch   = await controller.nextBatch(v)        // B groups, each started at a version ≥ v − η
 *   samples = group advantages (GRPO within each rollout group)
 *   step    = await trainer.train(samples, loss)   // in a worker: the main thread keeps generating
 *   engine.setWeights(step.weights, v + 1)         // interruptible: running rows are re-prefilled
 *   controller.setVersion(v + 1)                   // admission opens up by B groups
 *
 * η = 0 is the synchronous loop (each batch generated together, at one version, then trained on).
 * Decoupled PPO (`loss.kind: 'decoupled_ppo'`) corrects for staleness: the trainer recomputes
 * proximal logprobs with the weights before the update (see policy-trainer.ts).
 */
import { z } from 'zod';
import type { Sample, Trajectory } from '../core/types.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { LossConfigSchema, type LossConfigInput } from '../rl/losses.ts';
import { GroupAdvantageConfigSchema, groupAdvantages, type GroupAdvantageConfigInput } from '../rl/advantages.ts';
import { RolloutController, type ConsumedGroup, type RolloutWorkflow, type StopResult } from './rollout-controller.ts';
import { addToHistogram, histogramStats, mergeHistograms, type Histogram } from './staleness.ts';
import type { PolicyTrainer } from './policy-trainer.ts';

/** The sample key AsyncTrainer sets to each trajectory's group (the default advantage groupBy). */
export const GROUP_KEY = 'group';

export const AsyncTrainerConfigSchema = z
  .object({
    /** Training steps (one batch and one weight version each). */
    steps: z.number().int().min(1),
    /** B: groups per batch. */
    batchSize: z.number().int().min(1),
    /** Rollouts per task item; their trajectories share a group baseline. */
    groupSize: z.number().int().min(1).default(1),
    /** Most rollouts in flight (the engine's generation batch). Default batchSize × groupSize × (η + 1). */
    maxConcurrent: z.number().int().min(1).optional(),
    /** η: most versions a trained group may lag the trainer; 0 = synchronous. */
    maxStaleness: z.number().int().min(0).default(0),
    /** Drop groups whose rewards are all equal (they carry no GRPO signal); new work replaces them. */
    dynamicFilter: z.boolean().default(false),
    maxRetries: z.number().int().min(0).default(0),
    /** Policy loss; decoupled PPO is what makes staleness harmless. */
    loss: LossConfigSchema.default({ kind: 'decoupled_ppo' }),
    /** Advantage estimator; groupBy defaults to the rollout group. */
    advantage: z.record(z.unknown()).default({}),
  })
  .strict()
  .transform((c) => ({
    ...c,
    maxConcurrent: c.maxConcurrent ?? c.batchSize * c.groupSize * (c.maxStaleness + 1),
    advantage: GroupAdvantageConfigSchema.parse({ estimator: 'grpo', groupBy: [GROUP_KEY], ...c.advantage } satisfies Partial<GroupAdvantageConfigInput>),
  }));
export type AsyncTrainerConfig = z.output<typeof AsyncTrainerConfigSchema>;
export type AsyncTrainerConfigInput = z.input<typeof AsyncTrainerConfigSchema>;

export function parseAsyncTrainerConfig(input: unknown): AsyncTrainerConfig {
  try {
    const r = AsyncTrainerConfigSchema.safeParse(input);
    if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
    return r.data;
  } catch (e) {
    throw new Error(`invalid async trainer config: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** An inference engine that can take new weights (the built-in engine; a remote engine's weight-sync client). */
export interface TrainableEngine extends InferenceEngine {
  setWeights(params: Float32Array, version: number): void;
  /** Decode counters, when the engine has them (occupancy = Δ rowsDecoded / Δ decodeSteps). */
  readonly stats?: { decodeSteps: number; rowsDecoded: number; interruptions?: number };
}

export interface AsyncStepMetrics {
  step: number;
  /** Version whose trainer consumed the batch; the step publishes version + 1. */
  version: number;
  /** Wall time of the step: from the end of the previous step (or the start) to after the weight update. */
  seconds: number;
  /** Time the trainer waited for the batch. */
  waitSeconds: number;
  /** Wall time of `trainer.train` (the main thread generates meanwhile when the trainer is a worker). */
  trainSeconds: number;
  /** Time the trainer itself computed. */
  trainerBusySeconds: number;
  samples: number;
  trajectories: number;
  samplesPerSecond: number;
  /** trainerBusySeconds / seconds. */
  trainerBusyFraction: number;
  /** Fraction of the controller's last window with ≥ 1 rollout in flight, and the mean number in flight. */
  rolloutBusyFraction: number;
  meanRunning: number;
  /** Mean rows per batched decode step during this step (NaN when the engine has no stats or did not decode). */
  generationOccupancy: number;
  decodeSteps: number;
  /** Consumed groups by staleness (trainer version − admit version). */
  staleness: Histogram;
  maxStaleness: number;
  /** Policy tokens by staleness (trainer version − token version). */
  tokenStaleness: Histogram;
  /** Trajectories by version spread (max − min version of their policy tokens; > 0 = interrupted by an update). */
  versionSpread: Histogram;
  maxVersionSpread: number;
  filteredGroups: number;
  failedGroups: number;
  meanReward: number;
  loss: number;
  gradNorm: number;
  /** Everything the trainer reported (clipFrac, cappedFrac, behavWeightMean …). */
  trainer: Record<string, number>;
}

export interface AsyncRunTotals {
  steps: number;
  wallSeconds: number;
  samples: number;
  trajectories: number;
  samplesPerSecond: number;
  trainerBusyFraction: number;
  rolloutBusyFraction: number;
  generationOccupancy: number;
  staleness: Histogram;
  maxStaleness: number;
  versionSpread: Histogram;
  maxVersionSpread: number;
  filteredGroups: number;
  failedGroups: number;
  /** Re-prefills caused by weight updates landing mid-generation (engine stats). */
  interruptions: number;
}

export interface AsyncRunResult<Item> {
  steps: AsyncStepMetrics[];
  totals: AsyncRunTotals;
  /** What the controller left at stop (finished-but-unconsumed and aborted groups). */
  leftover: StopResult<Item>;
}

export interface AsyncTrainerOptions<Item> {
  config: AsyncTrainerConfigInput;
  engine: TrainableEngine;
  trainer: PolicyTrainer;
  source: Iterable<Item> | Iterator<Item>;
  workflow: RolloutWorkflow<Item>;
  /** Called after each step. */
  onStep?: (m: AsyncStepMetrics) => void;
  /** Called with each batch's samples (advantages filled) just before training. */
  onBatch?: (samples: Sample[], groups: ConsumedGroup<Item>[], step: number) => void;
  /** Clock in ms; default performance.now. */
  now?: () => number;
}

export class AsyncTrainer<Item> {
  readonly config: AsyncTrainerConfig;
  readonly controller: RolloutController<Item>;
  private readonly o: AsyncTrainerOptions<Item>;
  private readonly now: () => number;
  private ran = false;

  constructor(opts: AsyncTrainerOptions<Item>) {
    this.config = parseAsyncTrainerConfig(opts.config);
    this.o = opts;
    this.now = opts.now ?? (() => performance.now());
    const v0 = opts.trainer.version();
    if (opts.engine.version() !== v0) {
      throw new Error(`AsyncTrainer: the engine serves weights version ${opts.engine.version()} but the trainer is at version ${v0}; publish the trainer's weights to the engine first`);
    }
    const c = this.config;
    this.controller = new RolloutController<Item>({
      config: {
        batchSize: c.batchSize, groupSize: c.groupSize, maxConcurrent: c.maxConcurrent, maxStaleness: c.maxStaleness,
        dynamicFilter: c.dynamicFilter, maxRetries: c.maxRetries, initialVersion: v0,
      },
      source: opts.source,
      workflow: opts.workflow,
      engine: opts.engine,
      now: this.now,
    });
  }

  /** Run `steps` training steps, then stop the controller (running rollouts are aborted). */
  async run(): Promise<AsyncRunResult<Item>> {
    if (this.ran) throw new Error('AsyncTrainer.run: already ran (make a new AsyncTrainer for another run)');
    this.ran = true;
    const { engine, trainer } = this.o;
    const c = this.config;
    const steps: AsyncStepMetrics[] = [];
    const stats0 = engineCounters(engine);
    const t0 = this.now();
    let stepStart = t0;
    let busyRollout = 0;
    let version = trainer.version();
    this.controller.start();
    try {
      for (let step = 0; step < c.steps; step++) {
        const decode0 = engineCounters(engine);
        const groups = await this.controller.nextBatchGroups(version);
        const tBatch = this.now();
        const samples = batchSamples(groups, c.advantage);
        this.o.onBatch?.(samples, groups, step);
        const trained = await trainer.train(samples, c.loss);
        const tTrained = this.now();
        if (trained.version !== version + 1) {
          throw new Error(`AsyncTrainer: trainer returned version ${trained.version} after training version ${version}; expected ${version + 1} (one optimizer step per batch)`);
        }
        engine.setWeights(trained.weights, trained.version);
        this.controller.setVersion(trained.version);
        const tEnd = this.now();
        const w = this.controller.metrics().window!;
        const decode1 = engineCounters(engine);
        const m = stepMetrics(step, version, groups, samples, trained, {
          seconds: (tEnd - stepStart) / 1000, waitSeconds: (tBatch - stepStart) / 1000, trainSeconds: (tTrained - tBatch) / 1000,
        }, w, decode0, decode1);
        busyRollout += w.busyFraction * w.seconds;
        steps.push(m);
        this.o.onStep?.(m);
        version = trained.version;
        stepStart = tEnd;
      }
    } catch (e) {
      await this.controller.stop();
      throw e;
    }
    const wallSeconds = (this.now() - t0) / 1000;
    const leftover = await this.controller.stop();
    return { steps, totals: runTotals(steps, wallSeconds, busyRollout, stats0, engineCounters(engine)), leftover };
  }
}

// ── pure helpers ─────────────────────────────────────────────────────────────────────────────

interface DecodeCounters {
  decodeSteps: number;
  rowsDecoded: number;
  interruptions: number;
}

function engineCounters(e: TrainableEngine): DecodeCounters | null {
  const s = e.stats;
  return s ? { decodeSteps: s.decodeSteps, rowsDecoded: s.rowsDecoded, interruptions: s.interruptions ?? 0 } : null;
}

function occupancy(a: DecodeCounters | null, b: DecodeCounters | null): { occupancy: number; decodeSteps: number } {
  if (!a || !b) return { occupancy: Number.NaN, decodeSteps: 0 };
  const steps = b.decodeSteps - a.decodeSteps;
  return { occupancy: steps > 0 ? (b.rowsDecoded - a.rowsDecoded) / steps : Number.NaN, decodeSteps: steps };
}

/**
 * The batch's samples, in group order then trajectory order, each tagged with its group
 * (`keys.group` = the trajectory's groupId, or `g<admission index>` when it has none) and given its
 * group-relative advantage. Samples are shallow copies: the trajectories are not mutated.
 */
export function batchSamples<Item>(groups: readonly ConsumedGroup<Item>[], advantage: GroupAdvantageConfigInput): Sample[] {
  const samples: Sample[] = [];
  for (const g of groups) {
    for (const t of g.trajectories) {
      const group = t.groupId || `g${g.index}`;
      for (const s of t.samples) samples.push({ ...s, keys: { ...s.keys, [GROUP_KEY]: group } });
    }
  }
  if (samples.length === 0) throw new Error('AsyncTrainer: the batch has no samples (every trajectory returned samples: [])');
  const { advantages } = groupAdvantages(samples.map((s) => s.reward), samples.map((s) => s.keys), advantage);
  samples.forEach((s, i) => (s.advantage = advantages[i]!));
  return samples;
}

/** Max − min policy version over a trajectory's sampled tokens (0 when it has none). */
export function versionSpread(t: Trajectory): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of t.samples) {
    for (let i = 0; i < s.seq.versions.length; i++) {
      const v = s.seq.versions[i]!;
      if (v < 0) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return hi >= lo ? hi - lo : 0;
}

function stepMetrics<Item>(
  step: number, version: number, groups: ConsumedGroup<Item>[], samples: Sample[],
  trained: { busySeconds: number; metrics: Record<string, number> },
  times: { seconds: number; waitSeconds: number; trainSeconds: number },
  w: NonNullable<ReturnType<RolloutController<Item>['metrics']>['window']>,
  d0: DecodeCounters | null, d1: DecodeCounters | null,
): AsyncStepMetrics {
  const spread: Histogram = {};
  let trajectories = 0;
  let rewardSum = 0;
  for (const g of groups) {
    for (const t of g.trajectories) {
      addToHistogram(spread, versionSpread(t));
      trajectories++;
      rewardSum += t.reward;
    }
  }
  const occ = occupancy(d0, d1);
  return {
    step, version, ...times,
    trainerBusySeconds: trained.busySeconds,
    samples: samples.length, trajectories,
    samplesPerSecond: times.seconds > 0 ? samples.length / times.seconds : 0,
    trainerBusyFraction: times.seconds > 0 ? trained.busySeconds / times.seconds : 0,
    rolloutBusyFraction: w.busyFraction, meanRunning: w.meanRunning,
    generationOccupancy: occ.occupancy, decodeSteps: occ.decodeSteps,
    staleness: w.staleness, maxStaleness: w.maxStaleness, tokenStaleness: w.tokenStaleness,
    versionSpread: spread, maxVersionSpread: histogramStats(spread).max,
    filteredGroups: w.filteredGroups, failedGroups: w.failedGroups,
    meanReward: trajectories > 0 ? rewardSum / trajectories : 0,
    loss: trained.metrics.loss ?? Number.NaN, gradNorm: trained.metrics.gradNorm ?? Number.NaN,
    trainer: trained.metrics,
  };
}

function runTotals(steps: AsyncStepMetrics[], wallSeconds: number, busyRolloutSeconds: number, d0: DecodeCounters | null, d1: DecodeCounters | null): AsyncRunTotals {
  const staleness: Histogram = {};
  const spread: Histogram = {};
  let samples = 0, trajectories = 0, busy = 0, filtered = 0, failed = 0;
  for (const s of steps) {
    mergeHistograms(staleness, s.staleness);
    mergeHistograms(spread, s.versionSpread);
    samples += s.samples;
    trajectories += s.trajectories;
    busy += s.trainerBusySeconds;
    filtered += s.filteredGroups;
    failed += s.failedGroups;
  }
  return {
    steps: steps.length, wallSeconds, samples, trajectories,
    samplesPerSecond: wallSeconds > 0 ? samples / wallSeconds : 0,
    trainerBusyFraction: wallSeconds > 0 ? busy / wallSeconds : 0,
    rolloutBusyFraction: wallSeconds > 0 ? Math.min(1, busyRolloutSeconds / wallSeconds) : 0,
    generationOccupancy: occupancy(d0, d1).occupancy,
    staleness, maxStaleness: histogramStats(staleness).max,
    versionSpread: spread, maxVersionSpread: histogramStats(spread).max,
    filteredGroups: filtered, failedGroups: failed,
    interruptions: d0 && d1 ? d1.interruptions - d0.interruptions : 0,
  };
}

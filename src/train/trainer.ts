/**
 * The one training loop of agentrl, for every agent and both systems: rollouts of any workflow (a
 * MAGE trial, a single-turn task, a tool or search agent) run on the inference engine through the
 * rollout controller, and each step trains on a batch of B groups:
 *
 *   groups  = await controller.nextBatchGroups(v)   // each started at a version ≥ v − η
 *   samples = prepareBatch(groups, credit, advantage) // src/rl/stages.ts, pure
 *   step    = await trainer.train(minibatches, loss)  // in a worker: the main thread keeps generating
 *   engine.setWeights(step.weights, v + 1)           // interruptible: running rows are re-prefilled
 *   controller.setVersion(v + 1)                     // η > 0: admission opens up by B groups at once
 *
 * η = 0 is the synchronous loop: each batch is generated together at one version, then trained on;
 * admission of the next batch waits for the next step(), so between steps nothing runs and a
 * checkpoint taken there (weights, optimizer, engine sampler state, groups admitted) resumes exactly.
 * η > 0 overlaps generation with training (AReaL); decoupled PPO (`loss.kind: 'decoupled_ppo'`)
 * corrects for the staleness with proximal logprobs recomputed on the trainer.
 *
 * The loop's version counts batches trained (one weight version per batch, whatever the number of
 * minibatches), starting at `initialVersion`; tokens record the version that sampled them.
 */
import { z } from 'zod';
import { formatZodError } from '../core/config-errors.ts';
import type { Sample, Trajectory } from '../core/types.ts';
import type { RolloutWorkflow } from '../core/workflow.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { EntropyDecaySchema, entropyCoefAt } from '../rl/entropy-schedule.ts';
import { LossConfigSchema } from '../rl/losses.ts';
import { AdvantageStageSchema, CreditStageSchema, prepareBatch } from '../rl/stages.ts';
import { RolloutController, ROLLOUT_CONTROLLER_SHAPE, type ConsumedGroup, type PendingGroups, type StopResult } from './rollout-controller.ts';
import { addToHistogram, histogramStats, mergeHistograms, type Histogram } from './staleness.ts';
import type { PolicyTrainer } from './policy-trainer.ts';

const C = ROLLOUT_CONTROLLER_SHAPE;
export const TrainerConfigSchema = z
  .object({
    /** Training steps (one batch and one weight version each). */
    steps: z.number().int().min(1),
    batchSize: C.batchSize,
    groupSize: C.groupSize,
    /** Most rollouts in flight (the engine's generation batch). Default batchSize × groupSize × (η + 1). */
    maxConcurrent: C.maxConcurrent,
    maxStaleness: C.maxStaleness,
    dynamicFilter: C.dynamicFilter,
    maxRetries: C.maxRetries,
    maxConsecutiveDrops: C.maxConsecutiveDrops,
    /** How trajectories become per-sample returns (outcome, discounted, MAGE). */
    credit: CreditStageSchema.default({ kind: 'outcome' }),
    /** How returns become advantages (GRPO/RLOO/REINFORCE/none over groups, or GiGPO). */
    advantage: AdvantageStageSchema.default({ estimator: 'grpo' }),
    /** Policy loss; decoupled PPO is what makes staleness harmless. */
    loss: LossConfigSchema.default({ kind: 'decoupled_ppo' }),
    /** Optional linear decay of loss.entropyCoef by weight version (src/rl/entropy-schedule.ts); absent = constant. */
    entropyDecay: EntropyDecaySchema.optional(),
    /**
     * Optimizer steps per batch: the batch is split by trajectory (strided, so every minibatch holds
     * trajectories of every group) into this many minibatches, each one step against the behaviour
     * logprobs (verl's ppo_mini_batch_size). 1 = one on-policy step per batch.
     */
    minibatches: z.number().int().min(1).default(1),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.loss.klCoef > 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['loss', 'klCoef'], message: 'a KL penalty needs reference-policy logprobs, which this trainer does not compute; set klCoef to 0' });
  })
  .transform((c) => ({ ...c, maxConcurrent: c.maxConcurrent ?? c.batchSize * c.groupSize * (c.maxStaleness + 1) }));
export type TrainerConfig = z.output<typeof TrainerConfigSchema>;
export type TrainerConfigInput = z.input<typeof TrainerConfigSchema>;

export function parseTrainerConfig(input: unknown): TrainerConfig {
  const r = TrainerConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid trainer config: ${formatZodError(r.error, { schema: TrainerConfigSchema })}`);
  return r.data;
}

/** An inference engine that can take new weights (the built-in engine; a remote engine's weight-sync client). */
export interface TrainableEngine extends InferenceEngine {
  setWeights(params: Float32Array, version: number): void;
  /** Decode counters, when the engine has them (occupancy = Δ rowsDecoded / Δ decodeSteps). */
  readonly stats?: { decodeSteps: number; rowsDecoded: number; interruptions?: number };
}

export interface StepMetrics {
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
  /** Mean episode reward by episode index over the batch's trajectories that reached it (multi-episode agents; [] otherwise). */
  episodeReward: number[];
  winRate: number[];
  /** Play steps whose action was invalid / all play steps (0 when no step records). */
  invalidRate: number;
  /** Tokens trained on (loss-masked) and processed (every token of every sample's sequence). */
  trainedTokens: number;
  processedTokens: number;
  loss: number;
  gradNorm: number;
  /** The entropy coefficient the step trained with (loss.entropyCoef, or its entropyDecay value). */
  entropyCoef: number;
  /** Everything the trainer reported (clipFrac, cappedFrac, behavWeightMean …). */
  trainer: Record<string, number>;
}

export interface RunTotals {
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
  trainedTokens: number;
  processedTokens: number;
  trainedTokensPerSecond: number;
}

export interface RunResult<Item> {
  steps: StepMetrics[];
  totals: RunTotals;
  /** What the controller left at stop (finished-but-unconsumed and aborted groups). */
  leftover: StopResult<Item>;
}

export interface TrainerOptions<Item> {
  config: TrainerConfigInput;
  engine: TrainableEngine;
  trainer: PolicyTrainer;
  /** Task items; group i of the run is item i (shuffle in the source if you want shuffling). */
  source: Iterable<Item> | Iterator<Item>;
  workflow: RolloutWorkflow<Item>;
  /** Version of the weights the engine serves at the start (resume: the checkpoint's). Default 0. */
  initialVersion?: number;
  /**
   * Resume: the checkpoint's `pendingGroups()` (finished groups are trained on as they are, running
   * ones re-run first); `source` must start at item `pending.nextIndex`. Default: none, indices from 0.
   */
  pending?: PendingGroups<Item>;
  /** Called after each step. */
  onStep?: (m: StepMetrics) => void;
  /** Called with each batch's samples (credit and advantages filled) just before training. */
  onBatch?: (samples: Sample[], groups: ConsumedGroup<Item>[], step: number) => void;
  /** Clock in ms; default performance.now. */
  now?: () => number;
}

export class Trainer<Item> {
  readonly config: TrainerConfig;
  readonly controller: RolloutController<Item>;
  private readonly o: TrainerOptions<Item>;
  private readonly now: () => number;
  private v: number;
  private stepsDone = 0;
  private started = false;
  private t0 = 0;
  private stepStart = 0;
  private busyRollout = 0;
  private stats0: DecodeCounters | null = null;
  private readonly history: StepMetrics[] = [];

  constructor(opts: TrainerOptions<Item>) {
    this.config = parseTrainerConfig(opts.config);
    this.o = opts;
    this.now = opts.now ?? (() => performance.now());
    this.v = opts.initialVersion ?? 0;
    if (opts.engine.version() !== this.v) {
      throw new Error(`Trainer: the engine serves weights version ${opts.engine.version()} but the loop starts at version ${this.v}; publish the trainer's weights to the engine with that version first`);
    }
    const c = this.config;
    this.controller = new RolloutController<Item>({
      config: {
        batchSize: c.batchSize, groupSize: c.groupSize, maxConcurrent: c.maxConcurrent, maxStaleness: c.maxStaleness,
        dynamicFilter: c.dynamicFilter, maxRetries: c.maxRetries, maxConsecutiveDrops: c.maxConsecutiveDrops, initialVersion: this.v,
      },
      source: opts.source,
      workflow: opts.workflow,
      engine: opts.engine,
      now: this.now,
      pending: opts.pending,
    });
  }

  /** The version of the weights the engine serves (batches trained since version 0). */
  version(): number {
    return this.v;
  }

  /**
   * Groups admitted over the whole run, resumes included (consumed, dropped, running or finished):
   * the index of the next item drawn from the source, where a resumed source starts.
   */
  admittedGroups(): number {
    return this.controller.nextGroupIndex();
  }

  /**
   * The groups admitted but not trained on yet, for a checkpoint (see RolloutController.pendingGroups);
   * read with admittedGroups() in the same tick. Empty between steps when η = 0.
   */
  pendingGroups(): PendingGroups<Item> {
    return this.controller.pendingGroups();
  }

  /** Train on one batch: wait for B groups, credit, advantages, loss, publish the new weights. */
  async step(): Promise<StepMetrics> {
    const { engine, trainer } = this.o;
    const c = this.config;
    if (!this.started) {
      this.started = true;
      this.stats0 = engineCounters(engine);
      this.t0 = this.stepStart = this.now();
      this.controller.start();
    }
    const version = this.v;
    const decode0 = engineCounters(engine);
    const groups = await this.controller.nextBatchGroups(version);
    const tBatch = this.now();
    const samples = prepareBatch(groups.map((g) => ({ trajectories: g.trajectories, groupId: `g${g.index}` })), c.credit, c.advantage);
    this.o.onBatch?.(samples, groups, this.stepsDone);
    const loss = c.entropyDecay ? { ...c.loss, entropyCoef: entropyCoefAt(c.loss.entropyCoef, c.entropyDecay, version) } : c.loss;
    const trained = await trainer.train(splitMinibatches(groups, samples, c.minibatches), loss);
    const tTrained = this.now();
    this.v = version + 1;
    engine.setWeights(trained.weights, this.v);
    // η = 0: the next step's nextBatchGroups opens admission (nothing runs between steps).
    if (c.maxStaleness > 0) this.controller.setVersion(this.v);
    const tEnd = this.now();
    const w = this.controller.metrics().window!;
    const m = stepMetrics(this.stepsDone, version, loss.entropyCoef, groups, samples, trained, {
      seconds: (tEnd - this.stepStart) / 1000, waitSeconds: (tBatch - this.stepStart) / 1000, trainSeconds: (tTrained - tBatch) / 1000,
    }, w, decode0, engineCounters(engine));
    this.busyRollout += w.busyFraction * w.seconds;
    this.history.push(m);
    this.stepsDone++;
    this.stepStart = tEnd;
    this.o.onStep?.(m);
    return m;
  }

  /** Run the configured number of steps (less those already taken), then stop (running rollouts are aborted). */
  async run(): Promise<RunResult<Item>> {
    try {
      while (this.stepsDone < this.config.steps) await this.step();
    } catch (e) {
      await this.controller.stop();
      throw e;
    }
    return this.finish();
  }

  /** Stop the controller and total the steps taken. */
  async finish(): Promise<RunResult<Item>> {
    const wallSeconds = this.started ? (this.now() - this.t0) / 1000 : 0;
    const leftover = await this.controller.stop();
    return { steps: [...this.history], totals: runTotals(this.history, wallSeconds, this.busyRollout, this.stats0, engineCounters(this.o.engine)), leftover };
  }
}

/**
 * Strided split by trajectory: trajectory j of the batch (in group order) goes to minibatch j mod n,
 * so every minibatch holds trajectories of every group. `samples` is prepareBatch's output (the
 * trajectories' samples in the same order).
 */
export function splitMinibatches<Item>(groups: readonly ConsumedGroup<Item>[], samples: Sample[], minibatches: number): Sample[][] {
  const trajs = groups.flatMap((g) => g.trajectories);
  const n = Math.max(1, Math.min(minibatches, trajs.length));
  const out: Sample[][] = Array.from({ length: n }, () => []);
  let i = 0;
  trajs.forEach((t, j) => {
    for (let k = 0; k < t.samples.length; k++) out[j % n]!.push(samples[i++]!);
  });
  if (i !== samples.length) throw new Error(`splitMinibatches: ${samples.length} samples but the trajectories hold ${i}`);
  return out.filter((mb) => mb.length > 0);
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
  step: number, version: number, entropyCoef: number, groups: ConsumedGroup<Item>[], samples: Sample[],
  trained: { busySeconds: number; metrics: Record<string, number> },
  times: { seconds: number; waitSeconds: number; trainSeconds: number },
  w: NonNullable<ReturnType<RolloutController<Item>['metrics']>['window']>,
  d0: DecodeCounters | null, d1: DecodeCounters | null,
): StepMetrics {
  const spread: Histogram = {};
  let trajectories = 0;
  let rewardSum = 0;
  const trajs: Trajectory[] = [];
  for (const g of groups) {
    for (const t of g.trajectories) {
      addToHistogram(spread, versionSpread(t));
      trajectories++;
      rewardSum += t.reward;
      trajs.push(t);
    }
  }
  const ep = episodeMeans(trajs);
  const plays = samples.filter((s) => s.step?.kind === 'play');
  let processedTokens = 0;
  for (const s of samples) processedTokens += s.seq.ids.length;
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
    episodeReward: ep.reward, winRate: ep.win,
    invalidRate: plays.length > 0 ? plays.filter((s) => !s.step!.valid).length / plays.length : 0,
    trainedTokens: trained.metrics.tokens ?? 0, processedTokens,
    loss: trained.metrics.loss ?? Number.NaN, gradNorm: trained.metrics.gradNorm ?? Number.NaN, entropyCoef,
    trainer: trained.metrics,
  };
}

/** Mean reward and win rate by episode index over the trajectories that reached it. */
export function episodeMeans(trajs: readonly Trajectory[]): { reward: number[]; win: number[] } {
  const K = Math.max(0, ...trajs.map((t) => t.episodes?.length ?? 0));
  const reward: number[] = [], win: number[] = [];
  for (let k = 0; k < K; k++) {
    const reached = trajs.filter((t) => (t.episodes?.length ?? 0) > k).map((t) => t.episodes![k]!);
    reward.push(reached.reduce((a, e) => a + e.reward, 0) / reached.length);
    win.push(reached.filter((e) => e.won).length / reached.length);
  }
  return { reward, win };
}

function runTotals(steps: StepMetrics[], wallSeconds: number, busyRolloutSeconds: number, d0: DecodeCounters | null, d1: DecodeCounters | null): RunTotals {
  const staleness: Histogram = {};
  const spread: Histogram = {};
  let samples = 0, trajectories = 0, busy = 0, filtered = 0, failed = 0, trainedTokens = 0, processedTokens = 0;
  for (const s of steps) {
    trainedTokens += s.trainedTokens;
    processedTokens += s.processedTokens;
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
    trainedTokens, processedTokens,
    trainedTokensPerSecond: wallSeconds > 0 ? trainedTokens / wallSeconds : 0,
  };
}

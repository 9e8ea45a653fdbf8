/**
 * Population-based meta-RL with a league — what MAGE calls a "population" is a fixed scripted
 * pool; here the pool grows with frozen snapshots of the learners themselves.
 *
 * - N learners, each a BuiltinEngine + BuiltinTrainer from buildMetaSetup with its own seed and
 *   hyperparameters (learning rate, entropy coefficient, γ_trial), trained round-robin: one
 *   `metaRlIteration` per member per round.
 * - The league holds the scripted opponents and snapshots `<member>@<step>` (src/train/population/
 *   league.ts); each iteration's opponent weights are fixed or PFSP from a running win-rate table
 *   per (learner, opponent), updated from every trial's final episode.
 * - Every `league.snapshotEvery` rounds members are frozen into the league; every `pbt.exploitEvery`
 *   rounds PBT runs: members are ranked by fitness (mean final-episode return of their last
 *   `fitnessWindow` iterations), the worst copy a top member's weights, AdamW moments and step, and
 *   its hyperparameters perturbed ×0.8/×1.25 within bounds.
 * - `savePopulation`/`loadPopulation` checkpoint everything needed to continue identically:
 *   members' trainer checkpoints, hyperparameters, counters, fitness windows, the win-rate table
 *   and the snapshots. Every random stream is derived from (seed, member, iteration) or (seed,
 *   round) — including each iteration's engine sampler, rebuilt per iteration for that reason — so
 *   a resumed population continues exactly as an uninterrupted one.
 */
import { z } from 'zod';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Rng } from '../core/rng.ts';
import { mixSeed } from '../envs/rng.ts';
import type { Backend } from '../engine/backend.ts';
import { defaultBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { loadCheckpoint, saveCheckpoint } from '../engine/checkpoint.ts';
import type { SerializableTokenizer } from '../engine/tokenizer.ts';
import { buildMetaSetup, envFactory } from './meta-setup.ts';
import { OpponentWeightSchema, trialSource } from './trial-source.ts';
import { trialWorkflow, TrialConfigSchema } from '../agents/trial.ts';
import { CreditStageSchema, AdvantageStageSchema } from '../rl/stages.ts';
import { LossConfigSchema } from '../rl/losses.ts';
import { Trainer, type StepMetrics, type TrainerConfigInput } from './trainer.ts';
import { InProcessTrainer } from './policy-trainer.ts';
import type { Trajectory } from '../core/types.ts';
import type { BuiltinTrainer } from './builtin-trainer.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from './trainer-checkpoint.ts';
import { copyLearnerState, HyperSpaceSchema, perturbHyper, planExploit, sampleHyper, setLearningRate, type Hyper } from './population/pbt.ts';
import { League, LeagueConfigSchema, SNAPSHOT_ADAPTERS, type LeagueSnapshotSupport } from './population/league.ts';
import { WinRateTable, type WinRateJSON } from './population/pfsp.ts';
import { generationName, paramsToTensors, removeUnreferenced, snapshotDirName, tensorsToParams, writeJsonAtomic } from './population/persist.ts';

export { League, LeagueConfigSchema, kuhnSnapshotAdapter, tttSnapshotAdapter, SNAPSHOT_ADAPTERS, type SnapshotEntry, type SnapshotEnvAdapter, type FrozenPolicy } from './population/league.ts';
export { KuhnSnapshotOpponent, kuhnSnapshotPrompt, renderKuhnObservation, renderKuhnHistory } from './population/kuhn-snapshot.ts';
export { TttSnapshotOpponent, tttSnapshotPrompt, tttOwnMoves } from './population/ttt-snapshot.ts';
export { WinRateTable, pfspPriority, poolWeights } from './population/pfsp.ts';
export { copyLearnerState, perturbHyper, planExploit, sampleHyper, setLearningRate, HyperSpaceSchema, type Hyper } from './population/pbt.ts';

/** Model shape without vocabSize (the tokenizer fixes it); validated in full by the Transformer. */
const ModelShapeSchema = z.object({
  contextLength: z.number().int().min(2),
  nLayer: z.number().int().min(1),
  nHead: z.number().int().min(1),
  nEmbd: z.number().int().min(2),
}).passthrough();

export const PopulationConfigSchema = z.object({
  env: z.string().min(1),
  /** Options of every env instance (not the opponent: the league picks it). */
  envOptions: z.record(z.unknown()).default({}),
  /** Number of learners N. */
  size: z.number().int().min(1).default(4),
  seed: z.number().int().min(0).default(0),
  model: ModelShapeSchema,
  /** Base AdamW config of every member; `lr` is replaced by the member's hyperparameter. */
  optimizer: z.record(z.unknown()).default({}),
  /** Scripted opponents with base sampling weights. */
  opponents: z.array(OpponentWeightSchema).min(1),
  /** Per-iteration training settings; loss.entropyCoef and credit.gammaTrial are replaced per member. */
  meta: z.object({
    /** Groups per iteration (each: one seed × one opponent). */
    groups: z.number().int().min(1).default(16),
    /** Trials per group (compared with each other). */
    groupSize: z.number().int().min(2).default(8),
    trial: TrialConfigSchema.default({}),
    credit: CreditStageSchema.default({ kind: 'mage' }),
    advantage: AdvantageStageSchema.default({ estimator: 'gigpo' }),
    loss: LossConfigSchema.default({}),
    minibatches: z.number().int().min(1).default(1),
  }).strict().default({}),
  hyper: HyperSpaceSchema.default({}),
  league: LeagueConfigSchema.default({}),
  pbt: z.object({
    /** Run exploit/explore every this many rounds; 0 = never. */
    exploitEvery: z.number().int().min(0).default(4),
    /** Bottom and top fraction of ranked members (copiers and sources). */
    fraction: z.number().gt(0).max(0.5).default(0.25),
    /** Fitness = mean final-episode return of this many most recent iterations. */
    fitnessWindow: z.number().int().min(1).default(4),
    /** Iterations a member needs (since creation or since it was last replaced) before it is ranked. */
    readyAfter: z.number().int().min(1).default(2),
    /** Multiplicative explore factors. */
    factors: z.array(z.number().positive()).min(1).default([0.8, 1.25]),
  }).strict().default({}),
  /** KV-cache rows of each member's engine (default groups × groupSize: every trial of an iteration at once). */
  maxBatch: z.number().int().min(1).optional(),
}).strict();
export type PopulationConfig = z.output<typeof PopulationConfigSchema>;

/** The `population` section of an `agentrl train` config: the rest comes from the run config. */
export const PopulationSectionSchema = PopulationConfigSchema.pick({ size: true, hyper: true, league: true, pbt: true }).strict();
export type PopulationConfigInput = z.input<typeof PopulationConfigSchema>;

export function parsePopulationConfig(input: unknown): PopulationConfig {
  const r = PopulationConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid population config: ${r.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`).join('; ')}`);
  if (r.data.pbt.readyAfter > r.data.pbt.fitnessWindow) throw new Error(`invalid population config: pbt.readyAfter (${r.data.pbt.readyAfter}) must be ≤ pbt.fitnessWindow (${r.data.pbt.fitnessWindow})`);
  return r.data;
}

export interface PopulationMember {
  readonly id: string;
  readonly seed: number;
  hyper: Hyper;
  /** Its sampler is reseeded by (member, iteration) before every iteration. */
  readonly engine: BuiltinEngine;
  readonly trainer: BuiltinTrainer;
  /** Iterations this member has trained. */
  iterations: number;
  /** Final-episode returns of its most recent iterations (cleared when it is replaced by an exploit). */
  recentReturns: number[];
}

export interface MemberIterationReport {
  member: string;
  round: number;
  hyper: Hyper;
  metrics: StepMetrics;
  /** Trials and final-episode results per opponent in this iteration (draws count ½). */
  opponents: Record<string, { trials: number; score: number }>;
}

export interface ExploitEvent {
  round: number;
  target: string;
  source: string;
  targetFitness: number;
  sourceFitness: number;
  hyperBefore: Hyper;
  hyperAfter: Hyper;
}

export interface RoundReport {
  round: number;
  members: MemberIterationReport[];
  snapshotsAdded: string[];
  exploits: ExploitEvent[];
}

// Tags of the derived random streams.
const STREAM_MEMBER_SEED = 1, STREAM_HYPER = 2, STREAM_ITERATION = 3, STREAM_ENGINE = 4, STREAM_PBT = 5;

export interface PopulationParts {
  cfg: PopulationConfig;
  members: PopulationMember[];
  league: League;
  tokenizer: SerializableTokenizer;
  backend: Backend;
  round: number;
}

export class Population {
  readonly cfg: PopulationConfig;
  readonly members: PopulationMember[];
  readonly league: League;
  readonly tokenizer: SerializableTokenizer;
  readonly backend: Backend;
  /** Completed rounds. */
  round: number;

  constructor(p: PopulationParts) {
    this.cfg = p.cfg;
    this.members = p.members;
    this.league = p.league;
    this.tokenizer = p.tokenizer;
    this.backend = p.backend;
    this.round = p.round;
  }

  /** A new population: N members with seeds and initial hyperparameters drawn from cfg.seed. */
  static create(cfgIn: PopulationConfigInput, opts: { backend?: Backend } = {}): Population {
    const cfg = parsePopulationConfig(cfgIn);
    const backend = opts.backend ?? defaultBackend();
    const hyperRng = new Rng(mixSeed(cfg.seed, STREAM_HYPER));
    const members: PopulationMember[] = [];
    let tokenizer: SerializableTokenizer | null = null;
    for (let i = 0; i < cfg.size; i++) {
      const seed = mixSeed(cfg.seed, STREAM_MEMBER_SEED, i);
      const hyper = sampleHyper(cfg.hyper, hyperRng);
      const setup = buildMetaSetup({
        env: cfg.env, envOptions: cfg.envOptions, opponents: cfg.opponents.map((o) => o.name),
        model: cfg.model as Omit<ModelConfigInput, 'vocabSize'>, optimizer: { ...cfg.optimizer, lr: hyper.lr }, seed, maxBatch: maxBatchOf(cfg), backend,
        // The words the trial adds to the env's own, as a single run adds them (src/run/run.ts).
        outcomeTokens: cfg.meta.trial.pastEpisodes === 'outcome' || cfg.meta.trial.reflectionInput === 'outcome', triedActions: cfg.meta.trial.triedActions,
      });
      tokenizer ??= setup.tokenizer;
      members.push({ id: `m${i}`, seed, hyper, engine: setup.engine, trainer: setup.trainer, iterations: 0, recentReturns: [] });
    }
    const league = makeLeague(cfg, tokenizer!, members[0]!.trainer.model, backend);
    return new Population({ cfg, members, league, tokenizer: tokenizer!, backend, round: 0 });
  }

  member(id: string): PopulationMember {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`population: no member '${id}' (members: ${this.members.map((x) => x.id).join(', ')})`);
    return m;
  }

  /** The member's loop config for one iteration: its entropy coefficient and γ_trial (MAGE credit). */
  memberConfig(m: PopulationMember): TrainerConfigInput {
    const meta = this.cfg.meta;
    const credit = meta.credit.kind === 'mage' ? { ...meta.credit, gammaTrial: m.hyper.gammaTrial } : meta.credit;
    return {
      steps: 1, batchSize: meta.groups, groupSize: meta.groupSize, maxStaleness: 0,
      credit, advantage: meta.advantage, loss: { ...meta.loss, entropyCoef: m.hyper.entropyCoef }, minibatches: meta.minibatches,
    };
  }

  /** Mean of the recent final-episode returns, or null before `pbt.readyAfter` iterations. */
  fitness(m: PopulationMember): number | null {
    const r = m.recentReturns;
    return r.length >= this.cfg.pbt.readyAfter ? r.reduce((a, x) => a + x, 0) / r.length : null;
  }

  /** Set a member's hyperparameters (the lr goes into its trainer at once). */
  setHyper(m: PopulationMember, h: Hyper): void {
    setLearningRate(m.trainer, h.lr);
    m.hyper = { ...h };
  }

  /**
   * One iteration of one member against the league: one step of the training loop (η = 0) whose
   * groups draw opponents from the league's current weights for this member. Items and the sampler
   * are seeded by (member, iteration), so a resumed population continues exactly.
   */
  async trainMember(m: PopulationMember): Promise<MemberIterationReport> {
    const groups = this.cfg.meta.groups;
    m.engine.setRngState(new Rng(mixSeed(m.seed, STREAM_ENGINE, m.iterations)).state());
    const version = m.engine.version();
    let trajectories: Trajectory[] = [];
    const loop = new Trainer({
      config: this.memberConfig(m),
      engine: m.engine,
      trainer: new InProcessTrainer(m.trainer),
      source: trialSource(mixSeed(m.seed, STREAM_ITERATION), () => this.league.weightsFor(m.id), m.iterations * groups),
      workflow: trialWorkflow(m.engine, (opponent) => this.league.makeEnv(opponent), this.cfg.meta.trial),
      initialVersion: version,
      onBatch: (_samples, consumed) => (trajectories = consumed.flatMap((g) => g.trajectories)),
    });
    const metrics = await loop.step();
    await loop.finish();
    m.iterations++;
    const opponents: MemberIterationReport['opponents'] = {};
    for (const t of trajectories) {
      const score = finalResult(t);
      if (score === null || !t.opponent) continue;
      this.league.winRates.record(m.id, t.opponent, score);
      const o = (opponents[t.opponent] ??= { trials: 0, score: 0 });
      o.trials++;
      o.score += score;
    }
    m.recentReturns.push(metrics.meanReward);
    if (m.recentReturns.length > this.cfg.pbt.fitnessWindow) m.recentReturns.splice(0, m.recentReturns.length - this.cfg.pbt.fitnessWindow);
    return { member: m.id, round: this.round, hyper: { ...m.hyper }, metrics, opponents };
  }

  /** Freeze members into the league ('all', or the fittest one). Returns the snapshot names. */
  addSnapshots(): string[] {
    let chosen = this.members;
    if (this.cfg.league.snapshotMembers === 'best') {
      const scored = this.members.map((m, i) => ({ m, f: this.fitness(m) ?? -Infinity, i }));
      scored.sort((a, b) => b.f - a.f || a.i - b.i);
      chosen = [scored[0]!.m];
    }
    return chosen.map((m) => this.league.addSnapshot(m.id, m.trainer.step, this.round, m.trainer.model.params).name);
  }

  /** PBT: the worst ready members copy a top member's weights + optimizer state, then perturb its hyperparameters. */
  exploitAndExplore(): ExploitEvent[] {
    const rng = new Rng(mixSeed(this.cfg.seed, STREAM_PBT, this.round));
    const fitness = this.members.map((m) => this.fitness(m));
    const plan = planExploit(fitness, { fraction: this.cfg.pbt.fraction }, rng);
    const events: ExploitEvent[] = [];
    for (const { target, source } of plan) {
      const t = this.members[target]!, s = this.members[source]!;
      const hyperBefore = { ...t.hyper };
      copyLearnerState(s.trainer, t.trainer, t.engine);
      this.setHyper(t, perturbHyper(s.hyper, this.cfg.hyper.bounds, rng, this.cfg.pbt.factors));
      this.league.winRates.copyRow(s.id, t.id);
      t.recentReturns = [];
      events.push({ round: this.round, target: t.id, source: s.id, targetFitness: fitness[target]!, sourceFitness: fitness[source]!, hyperBefore, hyperAfter: { ...t.hyper } });
    }
    return events;
  }

  /** One round: every member trains one iteration, then snapshots and PBT when they are due. */
  async runRound(): Promise<RoundReport> {
    const reports: MemberIterationReport[] = [];
    for (const m of this.members) reports.push(await this.trainMember(m));
    this.round++;
    const { snapshotEvery } = this.cfg.league, { exploitEvery } = this.cfg.pbt;
    const snapshotsAdded = snapshotEvery > 0 && this.round % snapshotEvery === 0 ? this.addSnapshots() : [];
    const exploits = exploitEvery > 0 && this.round % exploitEvery === 0 ? this.exploitAndExplore() : [];
    return { round: this.round, members: reports, snapshotsAdded, exploits };
  }

  save(dir: string): Promise<void> {
    return savePopulation(this, dir);
  }
}

/** Result of a trial's final episode for the win-rate table: 1 won, ½ draw (ended with return 0), 0 otherwise. */
export function finalResult(t: Trajectory): number | null {
  const last = t.episodes?.at(-1);
  if (!last) return null;
  if (last.won) return 1;
  return last.done && last.reward === 0 ? 0.5 : 0;
}

function maxBatchOf(cfg: PopulationConfig): number {
  return cfg.maxBatch ?? cfg.meta.groups * cfg.meta.groupSize;
}

function makeLeague(cfg: PopulationConfig, tokenizer: SerializableTokenizer, model: Transformer, backend: Backend, winRates?: WinRateTable): League {
  let support: LeagueSnapshotSupport | null = null;
  if (cfg.league.snapshotEvery > 0) {
    const adapter = SNAPSHOT_ADAPTERS[cfg.env];
    if (!adapter) throw new Error(`population: member snapshots are implemented for ${Object.keys(SNAPSHOT_ADAPTERS).join(', ')} only, not '${cfg.env}'; set league.snapshotEvery to 0 to train against the scripted pool`);
    support = { adapter: adapter(cfg.envOptions, cfg.meta.trial), modelConfig: model.config, backend, tokenizer };
  }
  return new League(cfg.league, cfg.opponents, envFactory(cfg.env, cfg.envOptions), support, winRates);
}

// ---- Checkpointing -----------------------------------------------------------------------------

const POPULATION_FORMAT = 'agentrl-population';
const POPULATION_FORMAT_VERSION = 1;
const STATE_FILE = 'population.json';

const HyperJSON = z.object({ lr: z.number(), entropyCoef: z.number(), gammaTrial: z.number() });
const PopulationStateSchema = z.object({
  format: z.literal(POPULATION_FORMAT),
  formatVersion: z.number().int(),
  round: z.number().int().min(0),
  config: z.unknown(),
  generation: z.string().regex(/^gen-/),
  members: z.array(z.object({ id: z.string(), seed: z.number().int(), hyper: HyperJSON, iterations: z.number().int().min(0), recentReturns: z.array(z.number()) })),
  winRates: z.record(z.record(z.object({ rate: z.number(), games: z.number() }))),
  snapshots: z.array(z.object({ name: z.string(), member: z.string(), step: z.number().int().min(0), round: z.number().int().min(0), dir: z.string() })),
});
type PopulationState = z.infer<typeof PopulationStateSchema>;

/**
 * Save the whole population under `dir` (layout and crash safety: src/train/population/persist.ts).
 * Do not save while a round is running.
 */
export async function savePopulation(pop: Population, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const generation = generationName(pop.round);
  for (const m of pop.members) {
    await saveTrainerCheckpoint(join(dir, generation, 'members', m.id), m.trainer, {
      tokenizer: pop.tokenizer,
      rng: {},
      trainerState: { member: m.id, hyper: m.hyper, iterations: m.iterations },
    });
  }
  const snapshots: PopulationState['snapshots'] = [];
  const model = pop.members[0]!.trainer.model;
  for (const s of pop.league.snapshots) {
    const sdir = snapshotDirName(s.member, s.step);
    // Snapshots never change: one written by an earlier save is reused (its manifest hash is verified on load).
    const existing = await loadCheckpoint(join(dir, 'snapshots', sdir)).then((c) => !c.recovered, () => false);
    if (!existing) {
      await saveCheckpoint(join(dir, 'snapshots', sdir), {
        step: s.step, weightVersion: s.step, config: { model: model.config }, tokenizer: null, rng: {},
        trainerState: { name: s.name, member: s.member, step: s.step, round: s.round },
        model: paramsToTensors(model, s.params), optimizer: null,
      });
    }
    snapshots.push({ name: s.name, member: s.member, step: s.step, round: s.round, dir: sdir });
  }
  const state: PopulationState = {
    format: POPULATION_FORMAT,
    formatVersion: POPULATION_FORMAT_VERSION,
    round: pop.round,
    config: pop.cfg,
    generation,
    members: pop.members.map((m) => ({ id: m.id, seed: m.seed, hyper: { ...m.hyper }, iterations: m.iterations, recentReturns: [...m.recentReturns] })),
    winRates: pop.league.winRates.toJSON(),
    snapshots,
  };
  await writeJsonAtomic(join(dir, STATE_FILE), state);
  await removeUnreferenced(dir, /^gen-/, new Set([generation]));
  await removeUnreferenced(join(dir, 'snapshots'), /./, new Set(snapshots.map((s) => s.dir)));
}

/** Restore a population saved by savePopulation; it continues exactly where the saved one stood. */
export async function loadPopulation(dir: string, opts: { backend?: Backend } = {}): Promise<Population> {
  const backend = opts.backend ?? defaultBackend();
  const path = join(dir, STATE_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Error(`loadPopulation: cannot read ${path}: ${(e as Error).message} (is ${dir} a directory written by savePopulation?)`);
  }
  const parsed = PopulationStateSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`loadPopulation: ${path} is not a population state: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const state = parsed.data;
  if (state.formatVersion !== POPULATION_FORMAT_VERSION) throw new Error(`loadPopulation: ${path} has format version ${state.formatVersion}; this build reads version ${POPULATION_FORMAT_VERSION}`);
  const cfg = parsePopulationConfig(state.config);
  if (state.members.length !== cfg.size) throw new Error(`loadPopulation: ${path} lists ${state.members.length} members but the config says size ${cfg.size}`);
  let tokenizer: SerializableTokenizer | null = null;
  const members: PopulationMember[] = [];
  for (const ms of state.members) {
    const mdir = join(dir, state.generation, 'members', ms.id);
    // Every member must have the first member's model config (a mismatch would fail a round later).
    const restored = await loadTrainerCheckpoint(mdir, backend, { expectModel: members[0]?.trainer.model.config });
    if (!restored.tokenizer) throw new Error(`loadPopulation: member checkpoint ${mdir} has no tokenizer`);
    tokenizer ??= restored.tokenizer;
    const trainer = restored.trainer;
    setLearningRate(trainer, ms.hyper.lr);
    const engine = new BuiltinEngine(new Transformer(trainer.model.config, backend, 0), tokenizer, { maxBatch: maxBatchOf(cfg), seed: mixSeed(ms.seed, STREAM_ENGINE, ms.iterations) });
    engine.setWeights(trainer.model.params, trainer.version());
    members.push({ id: ms.id, seed: ms.seed, hyper: { ...ms.hyper }, engine, trainer, iterations: ms.iterations, recentReturns: [...ms.recentReturns] });
  }
  const model = members[0]!.trainer.model;
  const league = makeLeague(cfg, tokenizer!, model, backend, WinRateTable.fromJSON(state.winRates as WinRateJSON, cfg.league.winRatePrior, cfg.league.winRateRate));
  for (const s of state.snapshots) {
    const sdir = join(dir, 'snapshots', s.dir);
    const ck = await loadCheckpoint(sdir);
    const params = new Float32Array(model.numParams);
    tensorsToParams(model, ck.model, params, `snapshot ${sdir}`);
    const entry = league.addSnapshot(s.member, s.step, s.round, params);
    if (entry.name !== s.name) throw new Error(`loadPopulation: snapshot ${sdir} is named '${entry.name}', the state says '${s.name}'`);
  }
  return new Population({ cfg, members, league, tokenizer: tokenizer!, backend, round: state.round });
}

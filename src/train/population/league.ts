/**
 * The opponent league: the scripted opponents (by name, with base weights) plus frozen snapshots
 * of population members, a running win-rate table per (learner, opponent), and opponent sampling
 * with fixed weights or PFSP priorities. `makeEnv(name)` builds an environment against either kind.
 *
 * Snapshots are environment-specific (the frozen policy must be turned into that game's opponent
 * object); `SNAPSHOT_ADAPTERS` lists the environments that support them (Kuhn poker, tic-tac-toe).
 */
import { z } from 'zod';
import type { Rng } from '../../core/rng.ts';
import type { TextEnv } from '../../envs/types.ts';
import type { Backend } from '../../engine/backend.ts';
import type { Tokenizer } from '../../engine/types.ts';
import { Transformer, type ModelConfig } from '../../engine/model.ts';
import { envOptionSchemas } from '../../envs/registry.ts';
import { KuhnEnv } from '../../envs/kuhn.ts';
import { TicTacToeEnv } from '../../envs/tictactoe.ts';
import type { TrialConfig } from '../../agents/trial.ts';
import { drawOpponent } from '../trial-source.ts';
import { KuhnSnapshotOpponent } from './kuhn-snapshot.ts';
import { TttSnapshotOpponent } from './ttt-snapshot.ts';
import { poolWeights, WinRateTable } from './pfsp.ts';

export const LeagueConfigSchema = z.object({
  /** 'fixed': sample by base weight; 'pfsp': base weight × max(floor, (1 − winrate)^power). */
  mode: z.enum(['fixed', 'pfsp']).default('pfsp'),
  pfspPower: z.number().min(0).default(2),
  /** Minimum PFSP priority, so no opponent's weight reaches 0. */
  pfspFloor: z.number().gt(0).max(1).default(0.05),
  /** Base weight of every snapshot (scripted opponents carry their own). */
  snapshotWeight: z.number().positive().default(1),
  /** Add snapshots every this many population rounds; 0 = never (scripted pool only, as MAGE). */
  snapshotEvery: z.number().int().min(0).default(2),
  /** Which members are frozen at a snapshot round. */
  snapshotMembers: z.enum(['all', 'best']).default('all'),
  /** Snapshots kept; the oldest is dropped beyond this. */
  maxSnapshots: z.number().int().min(1).default(8),
  /** Win-rate table: value before any game, and the EMA rate after the first 1/rate games. */
  winRatePrior: z.number().min(0).max(1).default(0.5),
  winRateRate: z.number().gt(0).max(1).default(0.05),
}).strict();
export type LeagueConfig = z.output<typeof LeagueConfigSchema>;
export type LeagueConfigInput = z.input<typeof LeagueConfigSchema>;

/** A frozen copy of a member's policy. */
export interface FrozenPolicy {
  name: string;
  model: Transformer;
  tokenizer: Tokenizer;
}

/** Turns frozen policies into opponents of one environment. */
export interface SnapshotEnvAdapter {
  /** Build the opponent object once per snapshot. */
  makeOpponent(frozen: FrozenPolicy): unknown;
  /** A fresh environment in which `opponent` (from makeOpponent) plays the agent. */
  makeEnv(opponent: unknown): TextEnv;
}

/** Kuhn poker: snapshots play as KuhnSnapshotOpponent through KuhnEnv's `opponent` object option. */
export function kuhnSnapshotAdapter(envOptions: Record<string, unknown>, trial: TrialConfig): SnapshotEnvAdapter {
  const parsed = envOptionSchemas.kuhn.omit({ opponent: true }).safeParse(envOptions);
  if (!parsed.success) throw new Error(`league: invalid kuhn envOptions — ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')} (the opponent is chosen by the league, not by envOptions)`);
  const opts = parsed.data;
  const rulesText = new KuhnEnv(opts).rules();
  return {
    makeOpponent: (f) => new KuhnSnapshotOpponent(f.name, f.model, f.tokenizer, { prompt: trial, rulesText, temperature: trial.temperature, topK: trial.topK, topP: trial.topP, observation: opts.observation }),
    makeEnv: (opponent) => new KuhnEnv({ ...opts, opponent: opponent as KuhnSnapshotOpponent }),
  };
}

/** Tic-tac-toe (token observation only): snapshots play as TttSnapshotOpponent through TicTacToeEnv's `opponent` object option. */
export function tttSnapshotAdapter(envOptions: Record<string, unknown>, trial: TrialConfig): SnapshotEnvAdapter {
  const parsed = envOptionSchemas.tictactoe.omit({ opponent: true }).safeParse(envOptions);
  if (!parsed.success) throw new Error(`league: invalid tictactoe envOptions — ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')} (the opponent is chosen by the league, not by envOptions)`);
  const opts = parsed.data;
  if ((opts.observation ?? 'text') !== 'token') {
    throw new Error(`league: tictactoe snapshots need envOptions.observation 'token' (got '${opts.observation ?? 'text'}', the env's default is 'text'): with 'text' the agent answers (row, col) in two slots and can name a taken cell, which an opponent cannot play; set envOptions.observation to token or league.snapshotEvery to 0`);
  }
  const rulesText = new TicTacToeEnv(opts).rules();
  return {
    makeOpponent: (f) => new TttSnapshotOpponent(f.name, f.model, f.tokenizer, { prompt: trial, rulesText, temperature: trial.temperature, topK: trial.topK, topP: trial.topP, observation: opts.observation }),
    makeEnv: (opponent) => new TicTacToeEnv({ ...opts, opponent: opponent as TttSnapshotOpponent }),
  };
}

export const SNAPSHOT_ADAPTERS: Record<string, (envOptions: Record<string, unknown>, trial: TrialConfig) => SnapshotEnvAdapter> = {
  kuhn: kuhnSnapshotAdapter,
  tictactoe: tttSnapshotAdapter,
};

export interface SnapshotEntry {
  /** `<member>@<step>`: the opponent name used in sampling, sample keys and the win-rate table. */
  name: string;
  member: string;
  step: number;
  round: number;
  /** The frozen weights (a private copy). */
  params: Float32Array;
  opponent: unknown;
}

export interface LeagueSnapshotSupport {
  adapter: SnapshotEnvAdapter;
  modelConfig: ModelConfig;
  backend: Backend;
  tokenizer: Tokenizer;
}

export class League {
  readonly winRates: WinRateTable;
  private readonly snaps: SnapshotEntry[] = [];

  constructor(
    readonly cfg: LeagueConfig,
    readonly scripted: readonly { name: string; weight: number }[],
    private readonly scriptedEnv: (name: string) => TextEnv,
    private readonly snapshotSupport: LeagueSnapshotSupport | null,
    winRates?: WinRateTable,
  ) {
    if (scripted.length === 0) throw new Error('League: the scripted pool is empty; give at least one opponent');
    const names = new Set<string>();
    for (const s of scripted) {
      if (names.has(s.name)) throw new Error(`League: scripted opponent '${s.name}' is listed twice`);
      if (s.name.includes('@')) throw new Error(`League: scripted opponent name '${s.name}' contains '@', which marks snapshots`);
      names.add(s.name);
    }
    this.winRates = winRates ?? new WinRateTable(cfg.winRatePrior, cfg.winRateRate);
  }

  get snapshots(): readonly SnapshotEntry[] {
    return this.snaps;
  }

  /** Every opponent with its base weight: scripted first, then snapshots oldest first. */
  pool(): { name: string; weight: number }[] {
    return [...this.scripted.map((s) => ({ ...s })), ...this.snaps.map((s) => ({ name: s.name, weight: this.cfg.snapshotWeight }))];
  }

  /** Sampling weights for one learner (fixed or PFSP per the config). */
  weightsFor(learner: string): { name: string; weight: number }[] {
    return poolWeights(this.pool(), (o) => this.winRates.winRate(learner, o), { mode: this.cfg.mode, power: this.cfg.pfspPower, floor: this.cfg.pfspFloor });
  }

  /** Draw one opponent for a learner. */
  sample(learner: string, rng: Rng): string {
    return drawOpponent(this.weightsFor(learner), rng);
  }

  /**
   * Freeze `params` as an opponent named `<member>@<step>` (returns the existing entry if that name
   * is already in the league). Drops the oldest snapshots beyond maxSnapshots, with their win rates.
   */
  addSnapshot(member: string, step: number, round: number, params: Float32Array): SnapshotEntry {
    const support = this.snapshotSupport;
    if (!support) throw new Error('League.addSnapshot: this league has no snapshot support (only environments in SNAPSHOT_ADAPTERS can freeze members as opponents; set league.snapshotEvery to 0)');
    const name = `${member}@${step}`;
    const existing = this.snaps.find((s) => s.name === name);
    if (existing) return existing;
    const model = new Transformer(support.modelConfig, support.backend, 0);
    if (params.length !== model.numParams) throw new Error(`League.addSnapshot: ${params.length} weights given, the model has ${model.numParams}`);
    model.params.set(params);
    const entry: SnapshotEntry = { name, member, step, round, params: model.params, opponent: support.adapter.makeOpponent({ name, model, tokenizer: support.tokenizer }) };
    this.snaps.push(entry);
    while (this.snaps.length > this.cfg.maxSnapshots) this.winRates.dropOpponent(this.snaps.shift()!.name);
    return entry;
  }

  /** A fresh environment against the named opponent (scripted or snapshot). */
  makeEnv(name: string): TextEnv {
    const snap = this.snaps.find((s) => s.name === name);
    if (snap) return this.snapshotSupport!.adapter.makeEnv(snap.opponent);
    if (!this.scripted.some((s) => s.name === name)) throw new Error(`League.makeEnv: unknown opponent '${name}'; the league has ${this.pool().map((p) => p.name).join(', ')}`);
    return this.scriptedEnv(name);
  }
}

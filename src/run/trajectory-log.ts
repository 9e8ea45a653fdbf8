/**
 * Trajectories sampled into the run directory while training, for `agentrl dashboard`'s viewer:
 *
 *   RUN/trajectories/step-000012.jsonl   one JSON line per logged trajectory of step 12
 *
 * Every `every` steps, `perStep` trajectories of the trained batch (evenly spaced over its groups,
 * so every group and opponent shows up over time) are written with everything a person debugging
 * the run needs per token: id, text piece (the tokenizer's own token string, so the viewer never
 * re-tokenizes), behaviour logprob, policy version, loss mask and source; per sample: reward, the
 * credited return and the advantage; per trajectory: opponent, episodes, info. Each file is written
 * whole and renamed into place, so a reader never sees half a file.
 *
 * Also here: `opponentStats`, the per-opponent breakdown of a batch that metrics.jsonl carries as
 * `byOpponent` (the dashboard's per-opponent curves and tables).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { EpisodeRecord, Sample, StepRecord, Trajectory } from '../core/types.ts';
import { episodeMeans } from '../train/trainer.ts';

export const TrajectoryLogSchema = z
  .object({
    /** Log trajectories every this many steps (steps 0, every, 2·every, …); 0 = never. */
    every: z.number().int().min(0).default(10),
    /** Trajectories logged per logged step (fewer when the batch has fewer). */
    perStep: z.number().int().min(1).default(4),
    /**
     * Most tokens kept per trajectory (over all its samples); the rest are cut and the record says
     * how many were dropped, so a runaway generation cannot fill the disk.
     */
    maxTokens: z.number().int().min(1).default(100_000),
  })
  .strict();
export type TrajectoryLogConfig = z.output<typeof TrajectoryLogSchema>;

/** The run config's `log` section: `log: { trajectories: { every, perStep, maxTokens } }`. */
export const LogSectionSchema = z.object({ trajectories: TrajectoryLogSchema.default({}) }).strict();
export type LogSection = z.output<typeof LogSectionSchema>;

export const TRAJECTORY_DIR = 'trajectories';

/** The file of one step's logged trajectories. */
export function trajectoryFileName(step: number): string {
  return `step-${String(step).padStart(6, '0')}.jsonl`;
}

/** Parse a trajectory file name back to its step (null for other files). */
export function stepOfTrajectoryFile(name: string): number | null {
  const m = /^step-(\d{6,})\.jsonl$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** One sample (an LLM call, or a grown multi-turn sequence) as logged. */
export interface LoggedSample {
  reward: number;
  /** Return credited by the credit stage (null when the trajectory was logged before credit). */
  ret: number | null;
  /** Per-sample advantage, or per token (aligned with `tokens.ids`); null before the advantage stage. */
  advantage: number | number[] | null;
  keys: Record<string, string>;
  step: StepRecord | null;
  temperature: number | null;
  tokens: {
    ids: number[];
    /** Each token's string as the tokenizer spells it (tokenString), aligned with ids. */
    text: string[];
    logprobs: number[];
    versions: number[];
    mask: number[];
    /** 0 prompt, 1 model, 2 tool, 3 env (TokenSource). */
    source: number[];
  };
  /** Tokens of this sample not logged (the trajectory's maxTokens was reached). */
  droppedTokens: number;
}

/** One line of a trajectory file. */
export interface LoggedTrajectory {
  step: number;
  /** Position of the trajectory in the step's batch (group order). */
  batchIndex: number;
  /** The trainer's version that trained on this batch (token staleness = this − token version); null when not given. */
  trainerVersion: number | null;
  id: string;
  groupId: string;
  opponent: string;
  reward: number;
  episodes: EpisodeRecord[];
  info: Record<string, unknown>;
  samples: LoggedSample[];
  /** Tokens of the whole trajectory, logged or not. */
  totalTokens: number;
  droppedTokens: number;
}

/** Indices of `k` of `n` items, evenly spaced and starting at 0 (all of them when k ≥ n). */
export function evenlySpaced(n: number, k: number): number[] {
  if (k >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: k }, (_, i) => Math.floor((i * n) / k));
}

/** JSON-safe number: NaN and ±Infinity become null rather than silently breaking a line. */
function num(x: number | undefined): number | null {
  return x === undefined || !Number.isFinite(x) ? null : x;
}

/**
 * The trajectories of a batch with their samples replaced by the trainer's credited copies (`ret`
 * and `advantage` filled): `samples` is the Trainer's onBatch argument, every trajectory's samples in
 * group order (prepareBatch's output).
 */
export function withCredit(trajectories: readonly Trajectory[], samples: readonly Sample[]): Trajectory[] {
  let i = 0;
  const out = trajectories.map((t) => {
    const s = samples.slice(i, i + t.samples.length);
    i += t.samples.length;
    return { ...t, samples: s };
  });
  if (i !== samples.length) throw new Error(`withCredit: the batch has ${samples.length} samples but its trajectories hold ${i}; pass onBatch's samples with the groups' trajectories in the same order`);
  return out;
}

/** A trajectory as logged (pure: the decode function gives token strings). */
export function loggedTrajectory(
  t: Trajectory, where: { step: number; batchIndex: number; trainerVersion: number | null },
  decode: (ids: number[]) => string[], maxTokens: number,
): LoggedTrajectory {
  let budget = maxTokens;
  let totalTokens = 0;
  let droppedTokens = 0;
  const samples = t.samples.map((s): LoggedSample => {
    const n = s.seq.ids.length;
    const keep = Math.max(0, Math.min(n, budget));
    budget -= keep;
    totalTokens += n;
    droppedTokens += n - keep;
    const ids = s.seq.ids.slice(0, keep);
    const text = decode(ids);
    if (text.length !== ids.length) throw new Error(`TrajectoryLog: decode returned ${text.length} token strings for ${ids.length} ids; it must return one string per id (the tokenizer's tokenString)`);
    const adv = s.advantage;
    return {
      reward: s.reward,
      ret: num(s.ret),
      advantage: adv === undefined ? null : Array.isArray(adv) ? adv.slice(0, keep).map((a) => num(a) ?? 0) : num(adv),
      keys: s.keys,
      step: s.step ?? null,
      temperature: num(s.temperature),
      tokens: {
        ids, text,
        logprobs: s.seq.logprobs.slice(0, keep).map((x) => num(x) ?? 0),
        versions: s.seq.versions.slice(0, keep),
        mask: s.seq.mask.slice(0, keep),
        source: s.seq.source.slice(0, keep),
      },
      droppedTokens: n - keep,
    };
  });
  return {
    step: where.step, batchIndex: where.batchIndex, trainerVersion: where.trainerVersion,
    id: t.id, groupId: t.groupId, opponent: t.opponent ?? '', reward: t.reward,
    episodes: t.episodes ?? [], info: t.info, samples, totalTokens, droppedTokens,
  };
}

export class TrajectoryLog {
  readonly dir: string;

  constructor(out: string, readonly config: TrajectoryLogConfig) {
    this.dir = join(out, TRAJECTORY_DIR);
  }

  /** Whether step `step` is logged. */
  due(step: number): boolean {
    return this.config.every > 0 && step % this.config.every === 0;
  }

  /**
   * Log step `step`'s batch when it is due: `trajectories` in batch order, with credited samples
   * (see withCredit) so returns and advantages are logged too; `decode` maps ids to token strings.
   * Returns the file written, or null when the step is not due.
   */
  record(step: number, trajectories: readonly Trajectory[], decode: (ids: number[]) => string[], o: { trainerVersion?: number } = {}): string | null {
    if (!this.due(step) || trajectories.length === 0) return null;
    const lines = evenlySpaced(trajectories.length, this.config.perStep).map((i) =>
      JSON.stringify(loggedTrajectory(trajectories[i]!, { step, batchIndex: i, trainerVersion: o.trainerVersion ?? null }, decode, this.config.maxTokens)),
    );
    mkdirSync(this.dir, { recursive: true });
    const path = join(this.dir, trajectoryFileName(step));
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, lines.join('\n') + '\n');
    renameSync(tmp, path);
    return path;
  }
}

/** A trajectory logger for run directory `out` (`section`: the run config's `log.trajectories`, parsed or raw). */
export function createTrajectoryLog(out: string, section: z.input<typeof TrajectoryLogSchema> = {}): TrajectoryLog {
  const r = TrajectoryLogSchema.safeParse(section);
  if (!r.success) throw new Error(`invalid log.trajectories section: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return new TrajectoryLog(out, r.data);
}

/** Per-opponent statistics of one batch (metrics.jsonl's `byOpponent`). */
export interface OpponentStats {
  trajectories: number;
  meanReward: number;
  /** Mean reward and win rate by episode index over the trajectories that reached it. */
  episodeReward: number[];
  winRate: number[];
}

/** The batch's trajectories grouped by opponent ('' when a trajectory has none). */
export function opponentStats(trajectories: readonly Trajectory[]): Record<string, OpponentStats> {
  const by = new Map<string, Trajectory[]>();
  for (const t of trajectories) {
    const k = t.opponent ?? '';
    let list = by.get(k);
    if (!list) by.set(k, (list = []));
    list.push(t);
  }
  const out: Record<string, OpponentStats> = {};
  for (const [k, ts] of [...by].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const ep = episodeMeans(ts);
    out[k] = { trajectories: ts.length, meanReward: ts.reduce((a, t) => a + t.reward, 0) / ts.length, episodeReward: ep.reward, winRate: ep.win };
  }
  return out;
}

/**
 * Outcome advantage estimators (one scalar reward per sample → one advantage per sample) and global
 * masked whitening of per-token values.
 *
 * Groups are explicit: each sample carries key fields (`Sample.keys`, e.g. `{ prompt: 'q17' }` or
 * `{ seed: '3', opponent: 'aggressive' }`) and the config names the fields that form a group
 * (`groupBy: ['seed', 'opponent']`). See groups.ts.
 */
import { z } from 'zod';
import { groupSamples, type GroupKeys } from './groups.ts';
import { mean, std } from './stats.ts';

export const GroupAdvantageConfigSchema = z
  .object({
    /**
     * - grpo: (r − group mean), divided by (group std + eps) when normalizeStd.
     * - rloo: r − mean of the OTHER members of the group.
     * - reinforce: r − baseline (a number; pass a running mean from `updateRunningMean`). Groups unused.
     * - none: the reward itself.
     */
    estimator: z.enum(['grpo', 'rloo', 'reinforce', 'none']).default('grpo'),
    /** Key fields that define a group; [] = the whole batch is one group. */
    groupBy: z.array(z.string().min(1)),
    /** GRPO only: divide by (std + eps). Off = Dr.GRPO. */
    normalizeStd: z.boolean().default(true),
    /** Bessel-corrected (n − 1) std, as verl's torch.std; false divides by n. */
    stdUnbiased: z.boolean().default(true),
    eps: z.number().min(0).default(1e-6),
    /**
     * A group with a single sample (grpo, rloo) has no baseline. 'zero': its advantage is 0 (it
     * teaches nothing). 'raw': mean 0, std 1, i.e. the raw reward (what verl's GRPO and RLOO code do).
     */
    singleton: z.enum(['zero', 'raw']).default('zero'),
    /** REINFORCE baseline. */
    baseline: z.number().default(0),
  })
  .strict();
export type GroupAdvantageConfig = z.output<typeof GroupAdvantageConfigSchema>;
export type GroupAdvantageConfigInput = z.input<typeof GroupAdvantageConfigSchema>;

export interface GroupStats {
  /** The groupBy fields' values shared by the group. */
  key: Record<string, string>;
  members: number[];
  mean: number;
  /** Std as configured (unbiased or not); 0 for a singleton. */
  std: number;
}

export interface GroupAdvantageResult {
  advantages: number[];
  /** Index into `groups` of each sample. */
  groupOf: number[];
  groups: GroupStats[];
}

/** Per-sample advantages from per-sample rewards and explicit group keys. */
export function groupAdvantages(rewards: readonly number[], keys: readonly GroupKeys[], cfgIn: GroupAdvantageConfigInput): GroupAdvantageResult {
  const cfg = GroupAdvantageConfigSchema.parse(cfgIn);
  if (rewards.length !== keys.length) throw new Error(`groupAdvantages: ${rewards.length} rewards but ${keys.length} key records; pass one key record per sample`);
  rewards.forEach((r, i) => {
    if (!Number.isFinite(r)) throw new Error(`groupAdvantages: reward ${i} is ${r}; rewards must be finite numbers`);
  });
  const { groups, groupOf } = groupSamples(keys, cfg.groupBy);
  const stats: GroupStats[] = groups.map((g) => {
    const rs = g.members.map((i) => rewards[i]!);
    return { key: g.key, members: g.members, mean: mean(rs), std: std(rs, cfg.stdUnbiased) };
  });
  const advantages = rewards.map((r, i) => {
    const g = stats[groupOf[i]!]!;
    const n = g.members.length;
    switch (cfg.estimator) {
      case 'none':
        return r;
      case 'reinforce':
        return r - cfg.baseline;
      case 'grpo':
        if (n === 1) return cfg.singleton === 'zero' ? 0 : cfg.normalizeStd ? r / (1 + cfg.eps) : r;
        return cfg.normalizeStd ? (r - g.mean) / (g.std + cfg.eps) : r - g.mean;
      case 'rloo':
        if (n === 1) return cfg.singleton === 'zero' ? 0 : r;
        // mean of the others = (n·mean − r)/(n − 1)
        return r - (n * g.mean - r) / (n - 1);
    }
  });
  return { advantages, groupOf, groups: stats };
}

export interface RunningMeanState {
  mean: number;
  /** Values seen so far. */
  count: number;
}

/**
 * Update a running mean with a batch of values (for the REINFORCE baseline). `momentum` null: the
 * exact cumulative mean of everything seen; a number m in [0, 1): exponential moving average
 * mean ← m·mean + (1 − m)·batchMean (the first batch sets the mean). Returns a new state.
 */
export function updateRunningMean(state: RunningMeanState, values: readonly number[], momentum: number | null = null): RunningMeanState {
  if (values.length === 0) return { ...state };
  if (momentum !== null && !(momentum >= 0 && momentum < 1)) throw new Error(`updateRunningMean: momentum must be in [0, 1) or null, got ${momentum}`);
  const bm = mean(values);
  if (state.count === 0) return { mean: bm, count: values.length };
  const count = state.count + values.length;
  if (momentum === null) return { mean: state.mean + (bm - state.mean) * (values.length / count), count };
  return { mean: momentum * state.mean + (1 - momentum) * bm, count };
}

export interface WhitenOptions {
  /** Add the mean back after scaling (verl `shift_mean=False`): only the spread is normalised. */
  keepMean?: boolean;
  /** Added to the variance before the square root (verl 1e-8). */
  eps?: number;
}

/**
 * Global whitening over masked entries: (x − mean)/sqrt(var + eps), mean and variance taken over
 * entries with mask ≠ 0, variance Bessel-corrected like verl's masked_whiten (one entry: variance 0).
 * Entries with mask 0 come back as 0 (they carry no advantage).
 */
export function maskedWhiten(values: ArrayLike<number>, mask?: ArrayLike<number> | null, opts: WhitenOptions = {}): number[] {
  const n = values.length;
  if (mask && mask.length !== n) throw new Error(`maskedWhiten: mask has length ${mask.length} but values has ${n}`);
  const eps = opts.eps ?? 1e-8;
  const on = (i: number) => !mask || mask[i] !== 0;
  let count = 0, sum = 0;
  for (let i = 0; i < n; i++) if (on(i)) { count++; sum += values[i]!; }
  const out = new Array<number>(n).fill(0);
  if (count === 0) return out;
  const m = sum / count;
  let ss = 0;
  for (let i = 0; i < n; i++) if (on(i)) ss += (values[i]! - m) ** 2;
  const variance = count > 1 ? ss / (count - 1) : 0;
  const scale = 1 / Math.sqrt(variance + eps);
  for (let i = 0; i < n; i++) if (on(i)) out[i] = (values[i]! - m) * scale + (opts.keepMean ? m : 0);
  return out;
}

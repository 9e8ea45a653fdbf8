/**
 * The two pure stages between finished trajectories and the loss, configured as data so one training
 * loop serves every agent:
 *
 *   trajectories ──credit──▶ per-sample return G and score s ──advantage──▶ per-sample advantage A
 *
 * Credit: `outcome` (every sample gets its trajectory's reward: single-turn tasks, tool and search
 * agents), `discounted` (G_t = r_t + γ·G_{t+1} over a trajectory's samples from their environment
 * rewards) or `mage` (differential or raw episode rewards discounted across the episodes of a trial,
 * with penalties; src/rl/credit.ts). Advantage: outcome estimators over groups (GRPO, RLOO,
 * REINFORCE, none; src/rl/advantages.ts) or GiGPO's two-level step advantages (src/rl/credit.ts).
 */
import { z } from 'zod';
import type { Sample, Trajectory } from '../core/types.ts';
import { GroupAdvantageConfigSchema, groupAdvantages } from './advantages.ts';
import { assignTrialCredit, checkMageCredit, MAGE_CREDIT_SHAPE, StepAdvantageConfigSchema, stepAdvantages } from './credit.ts';

/** The sample key the trainer sets to each trajectory's rollout group (the default advantage groupBy). */
export const GROUP_KEY = 'group';

export const CreditStageSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('outcome') }).strict(),
    z.object({ kind: z.literal('discounted'), gamma: z.number().min(0).max(1).default(1) }).strict(),
    z.object({ kind: z.literal('mage'), ...MAGE_CREDIT_SHAPE }).strict(),
  ])
  .superRefine((c, ctx) => {
    if (c.kind === 'mage') checkMageCredit(c, ctx);
  });
export type CreditStage = z.output<typeof CreditStageSchema>;
export type CreditStageInput = z.input<typeof CreditStageSchema>;

const OUTCOME_ESTIMATORS = ['grpo', 'rloo', 'reinforce', 'none'] as const;
export const AdvantageStageSchema = z.discriminatedUnion('estimator', [
  GroupAdvantageConfigSchema.extend({
    estimator: z.enum(OUTCOME_ESTIMATORS),
    groupBy: z.array(z.string().min(1)).default([GROUP_KEY]),
    /**
     * What a group's members are: 'sample' (each training sample) or 'trajectory' (each trajectory
     * counts once, its advantage broadcast to its samples — for agents whose trajectories split into
     * several training sequences, e.g. the search agent, so a split trajectory does not weigh more in
     * its group's mean and std). Needs credit kind 'outcome'.
     */
    unit: z.enum(['sample', 'trajectory']).default('sample'),
  }),
  StepAdvantageConfigSchema.extend({ estimator: z.literal('gigpo') }),
]);
export type AdvantageStage = z.output<typeof AdvantageStageSchema>;
export type AdvantageStageInput = z.input<typeof AdvantageStageSchema>;

/** Per sample of one trajectory: the return G (what step-level baselines compare) and the score s (episode level). */
export interface Credited {
  ret: number[];
  score: number[];
}

/** Credit one trajectory. */
export function creditTrajectory(t: Trajectory, cfg: CreditStage): Credited {
  const n = t.samples.length;
  switch (cfg.kind) {
    case 'outcome': {
      const r = new Array<number>(n).fill(t.reward);
      return { ret: r, score: [...r] };
    }
    case 'discounted': {
      const ret = new Array<number>(n).fill(0);
      let next = 0;
      for (let i = n - 1; i >= 0; i--) ret[i] = next = t.samples[i]!.reward + cfg.gamma * next;
      return { ret, score: [...ret] };
    }
    case 'mage': {
      const steps = t.samples.map((s, i) => {
        if (!s.step) throw new Error(`credit kind 'mage': sample ${i} of trajectory ${t.id} has no step record; MAGE credit needs workflows that set sample.step (e.g. agents/trial.ts), use credit kind 'outcome' otherwise`);
        return { ...s.step, reward: s.reward };
      });
      const { kind: _, ...mage } = cfg;
      const c = assignTrialCredit(steps, mage, t.episodes?.map((e) => e.reward));
      return { ret: c.returns, score: c.scores };
    }
  }
}

/** Advantages for samples whose `ret` is set (score defaults to ret). */
export function computeAdvantages(samples: readonly { ret: number; score?: number; keys: Record<string, string> }[], cfg: AdvantageStage): number[] {
  if (cfg.estimator === 'gigpo') {
    const { estimator: _, ...step } = cfg;
    return stepAdvantages(samples.map((s) => ({ score: s.score ?? s.ret, ret: s.ret, keys: s.keys })), step).advantages;
  }
  const { unit: _, ...group } = cfg;
  return groupAdvantages(samples.map((s) => s.ret), samples.map((s) => s.keys), group).advantages;
}

/**
 * The batch the loss trains on: every trajectory's samples in order, shallow-copied (trajectories
 * are not mutated), tagged with their rollout group (`keys.group`), credited (`ret`) and given an
 * advantage. `groupIdOf` names a trajectory's group when it has no groupId.
 */
export function prepareBatch(groups: readonly { trajectories: readonly Trajectory[]; groupId: string }[], credit: CreditStage, advantage: AdvantageStage): Sample[] {
  const samples: Sample[] = [];
  const scores: number[] = [];
  for (const g of groups) {
    for (const t of g.trajectories) {
      const c = creditTrajectory(t, credit);
      const group = t.groupId || g.groupId;
      t.samples.forEach((s, i) => {
        samples.push({ ...s, ret: c.ret[i]!, keys: { ...s.keys, [GROUP_KEY]: group } });
        scores.push(c.score[i]!);
      });
    }
  }
  if (samples.length === 0) throw new Error('prepareBatch: the batch has no samples (every trajectory returned samples: [])');
  if (advantage.estimator !== 'gigpo' && advantage.unit === 'trajectory') {
    if (credit.kind !== 'outcome') throw new Error(`advantage unit 'trajectory' needs credit kind 'outcome' (every sample of a trajectory shares its return), got '${credit.kind}'`);
    // One member per trajectory: its first sample stands for it (same return, same keys).
    const firsts: number[] = [];
    for (let i = 0, k = 0; k < groups.length; k++) for (const t of groups[k]!.trajectories) { firsts.push(i); i += t.samples.length; }
    const per = computeAdvantages(firsts.map((i) => ({ ret: samples[i]!.ret!, keys: samples[i]!.keys })), advantage);
    let f = 0;
    for (const g of groups) for (const t of g.trajectories) {
      for (let j = 0; j < t.samples.length; j++) samples[firsts[f]! + j]!.advantage = per[f]!;
      f++;
    }
    return samples;
  }
  const adv = computeAdvantages(samples.map((s, i) => ({ ret: s.ret!, score: scores[i]!, keys: s.keys })), advantage);
  samples.forEach((s, i) => (s.advantage = adv[i]!));
  return samples;
}

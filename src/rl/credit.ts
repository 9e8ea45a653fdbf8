/**
 * MAGE credit assignment for multi-episode trials: differential episode rewards, discounted step
 * returns across episodes, score penalties, and GiGPO-style two-level step advantages with
 * agent-specific (per-opponent) normalisation.
 *
 * Vocabulary: a trial is K episodes (k = 0..K−1) against one opponent; every LLM call is a step,
 * either a `play` turn or a `reflection` written after an episode. R_k is episode k's return.
 */
import { z } from 'zod';
import type { StepRecord } from '../core/types.ts';
import { groupSamples, type GroupKeys } from './groups.ts';
import { mean, std } from './stats.ts';

/** r̃_0 = R_0, r̃_k = R_k − R_{k−1}: credit for the improvement over the previous episode. Σ r̃ = R_last. */
export function differentialRewards(episodeReturns: readonly number[]): number[] {
  return episodeReturns.map((r, k) => (k === 0 ? r : r - episodeReturns[k - 1]!));
}

/** Invalid action / missing remark penalty: coef·(1 − valid). */
export function invalidPenalty(valid: boolean | number, coef: number): number {
  return coef * (1 - Number(valid));
}

/** Overlong-response penalty: coef·min(1, max(0, len − L/2)/(L/2)); 0 up to L/2 tokens, coef from L on. */
export function lengthPenalty(len: number, maxLen: number, coef: number): number {
  if (!(maxLen > 0)) throw new Error(`lengthPenalty: maxLen must be positive, got ${maxLen}`);
  const half = maxLen / 2;
  return coef * Math.min(1, Math.max(0, len - half) / half);
}

/** One step of a trial, in trial order. */
export interface TrialStep {
  kind: 'play' | 'reflection';
  /** Episode index k (a reflection carries the index of the episode it reflects on). */
  episode: number;
  /** Environment reward of this play turn (default 0); summed into R_k. Must be 0/absent on reflections. */
  reward?: number;
  /** A cost (≥ 0 normally) charged to this step's score, and to its return if penaltyInReturns. */
  penalty?: number;
}

export interface TrialReturnsConfig {
  /** Discount between consecutive play steps of one episode (MAGE 0.95). */
  gammaStep: number;
  /** Discount from the last play step of an episode to the first of the next (MAGE 0.6; 0.9 Sokoban). */
  gammaTrial: number;
  /** Also subtract each step's penalty from its reward in the return recursion (MAGE: false, penalties hit scores only). */
  penaltyInReturns?: boolean;
  /** R_k per episode; default: the sum of the play steps' rewards of each episode. */
  episodeReturns?: readonly number[];
  /**
   * What each episode contributes: 'differential' r̃_k = R_k − R_{k−1} (MAGE: the sum is the final
   * episode's reward) or 'raw' R_k (the sum is the trial's total; for new_state trials, where every
   * episode is a fresh deal and R_{k−1} says nothing about episode k's actions).
   */
  episodeReward?: 'differential' | 'raw';
}

export interface TrialReturns {
  /** G per step (the GiGPO step-level quantity). */
  returns: number[];
  /** Episode score per step: r̃_k − penalty for play steps of episode k, −penalty for reflections. */
  scores: number[];
  /** Reward r_t each play step enters the return recursion with (0 for reflections). */
  stepRewards: number[];
  episodeReturns: number[];
  /** The per-episode reward used: r̃_k (differential, default) or R_k ('raw'). */
  differential: number[];
}

/**
 * Discounted returns of one trial.
 *
 * Semantics (exact):
 * 1. R_k = episodeReturns[k] (default Σ of play-step rewards of episode k); r̃ = differentialRewards(R),
 *    or r̃ = R with episodeReward 'raw'.
 * 2. Each play step's reward r_t is r̃_k if it is the LAST play step of its episode k, else 0
 *    (minus its penalty when penaltyInReturns). Environment rewards of intermediate turns thus
 *    reach the return only through R_k.
 * 3. Backwards over play steps: G_t = r_t + γ·G_next, where G_next is the next play step's return and
 *    γ = gammaStep if that step is in the same episode, gammaTrial if it is in a later episode; the
 *    trial's final play step has G_t = r_t. Reflections are not time steps: they are not discounted.
 * 4. A reflection step gets the G of the next play step after it in trial order (the episode its
 *    advice is used in), or 0 if none follows (a reflection after the final episode); minus its
 *    penalty when penaltyInReturns.
 * Steps must be in trial order with non-decreasing episode indices 0..K−1, each episode having at
 * least one play step.
 */
export function trialReturns(steps: readonly TrialStep[], cfg: TrialReturnsConfig): TrialReturns {
  const n = steps.length;
  const penaltyInReturns = cfg.penaltyInReturns ?? false;
  let K = 0;
  const lastPlay: number[] = [];
  const summed: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = steps[i]!;
    if (!Number.isInteger(s.episode) || s.episode < 0) throw new Error(`trialReturns: step ${i} has episode ${s.episode}; episodes are integers from 0`);
    if (i > 0 && s.episode < steps[i - 1]!.episode) throw new Error(`trialReturns: step ${i} (episode ${s.episode}) comes after a step of episode ${steps[i - 1]!.episode}; pass steps in trial order`);
    if (s.kind === 'reflection' && (s.reward ?? 0) !== 0) throw new Error(`trialReturns: reflection step ${i} has reward ${s.reward}; reflections earn no environment reward (use penalty for costs)`);
    K = Math.max(K, s.episode + 1);
    if (s.kind === 'play') {
      lastPlay[s.episode] = i;
      summed[s.episode] = (summed[s.episode] ?? 0) + (s.reward ?? 0);
    }
  }
  for (let k = 0; k < K; k++) {
    if (lastPlay[k] === undefined) throw new Error(`trialReturns: episode ${k} has no play step; every episode 0..${K - 1} needs at least one play step to carry its differential reward`);
  }
  const episodeReturns = cfg.episodeReturns ? [...cfg.episodeReturns] : summed.slice(0, K).map((r) => r ?? 0);
  if (episodeReturns.length !== K) throw new Error(`trialReturns: episodeReturns has ${episodeReturns.length} entries but the steps cover ${K} episodes`);
  const differential = cfg.episodeReward === 'raw' ? [...episodeReturns] : differentialRewards(episodeReturns);

  const returns = new Array<number>(n).fill(0);
  const scores = new Array<number>(n).fill(0);
  const stepRewards = new Array<number>(n).fill(0);
  let nextG: number | null = null;
  let nextEpisode = -1;
  for (let i = n - 1; i >= 0; i--) {
    const s = steps[i]!;
    const penalty = s.penalty ?? 0;
    const charged = penaltyInReturns ? penalty : 0;
    if (s.kind === 'play') {
      const r = (lastPlay[s.episode] === i ? differential[s.episode]! : 0) - charged;
      stepRewards[i] = r;
      const gamma = nextEpisode === s.episode ? cfg.gammaStep : cfg.gammaTrial;
      returns[i] = r + (nextG === null ? 0 : gamma * nextG);
      scores[i] = differential[s.episode]! - penalty;
      nextG = returns[i]!;
      nextEpisode = s.episode;
    } else {
      returns[i] = (nextG ?? 0) - charged;
      scores[i] = 0 - penalty; // (0 − 0 is +0, unlike −0)
    }
  }
  return { returns, scores, stepRewards, episodeReturns, differential };
}

/** Fields of MAGE credit assignment (shared by CreditConfigSchema and the trainer's credit stage). */
export const MAGE_CREDIT_SHAPE = {
  gammaStep: z.number().min(0).max(1).default(0.95),
  gammaTrial: z.number().min(0).max(1).default(0.6),
  /** Penalty coefficient for an invalid action or a missing remark (MAGE 0.5; Kuhn 2.0). */
  invalidCoef: z.number().min(0).default(0.5),
  /** Length-penalty coefficient (MAGE 2.0 TTT/Kuhn, 1.0 Sokoban); 0 = off. */
  lengthCoef: z.number().min(0).default(0),
  /** L of the length penalty, in completion tokens; required when lengthCoef > 0. */
  maxLength: z.number().positive().nullable().default(null),
  penaltyInReturns: z.boolean().default(false),
  /** 'differential' (MAGE) or 'raw' episode rewards; see TrialReturnsConfig.episodeReward. */
  episodeReward: z.enum(['differential', 'raw']).default('differential'),
};

/** lengthCoef > 0 needs maxLength. */
export function checkMageCredit(c: { lengthCoef: number; maxLength: number | null }, ctx: z.RefinementCtx): void {
  if (c.lengthCoef > 0 && c.maxLength === null) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['maxLength'], message: 'lengthCoef > 0 needs maxLength (L, in tokens)' });
}

export const CreditConfigSchema = z.object(MAGE_CREDIT_SHAPE).strict().superRefine(checkMageCredit);
export type CreditConfig = z.output<typeof CreditConfigSchema>;
export type CreditConfigInput = z.input<typeof CreditConfigSchema>;

/** A step as MAGE credit sees it: the agent's step record plus the environment reward of the step. */
export type CreditStep = Pick<StepRecord, 'kind' | 'episode' | 'valid' | 'length'> & { reward: number };

/**
 * MAGE credit for one trial: penalty_i = invalidPenalty(valid, invalidCoef) + lengthPenalty(length,
 * maxLength, lengthCoef), then `trialReturns`. Feed `scores` and `returns` to `stepAdvantages`.
 */
export function assignTrialCredit(steps: readonly CreditStep[], cfgIn: CreditConfigInput = {}, episodeReturns?: readonly number[]): TrialReturns {
  const cfg = CreditConfigSchema.parse(cfgIn);
  const trialSteps: TrialStep[] = steps.map((s) => ({
    kind: s.kind === 'reflection' ? 'reflection' : 'play',
    episode: s.episode,
    reward: s.kind === 'reflection' ? 0 : s.reward,
    penalty: invalidPenalty(s.valid, cfg.invalidCoef) + (cfg.lengthCoef > 0 ? lengthPenalty(s.length, cfg.maxLength!, cfg.lengthCoef) : 0),
  }));
  return trialReturns(trialSteps, { gammaStep: cfg.gammaStep, gammaTrial: cfg.gammaTrial, penaltyInReturns: cfg.penaltyInReturns, episodeReturns, episodeReward: cfg.episodeReward });
}

export const StepAdvantageConfigSchema = z
  .object({
    /** mean_norm: subtract the group mean; mean_std_norm: also divide by (std + eps). */
    mode: z.enum(['mean_norm', 'mean_std_norm']).default('mean_norm'),
    /** w, the weight of the step-level term. */
    stepWeight: z.number().min(0).default(1),
    /**
     * Key fields of an episode group U. The default includes the opponent, so every baseline is per
     * opponent ("agent-specific normalisation"): samples against different opponents never share one.
     */
    groupBy: z.array(z.string().min(1)).default(['group', 'opponent']),
    /** Key field holding the step anchor (observation text); step group S = groupBy ∪ {anchorKey}. */
    anchorKey: z.string().min(1).default('anchor'),
    eps: z.number().min(0).default(1e-6),
    /** Bessel-corrected std (torch.std) for mean_std_norm. */
    stdUnbiased: z.boolean().default(true),
    /** Singleton episode group: 'raw' = mean 0 (and std 1), as MAGE/GiGPO; 'zero' = term 0. */
    episodeSingleton: z.enum(['raw', 'zero']).default('raw'),
  })
  .strict();
export type StepAdvantageConfig = z.output<typeof StepAdvantageConfigSchema>;
export type StepAdvantageConfigInput = z.input<typeof StepAdvantageConfigSchema>;

export interface StepSample {
  /** Episode score s_i (with penalties), from `trialReturns`/`assignTrialCredit`. */
  score: number;
  /** Step return G_i. */
  ret: number;
  keys: GroupKeys;
}

export interface StepAdvantageResult {
  /** A_i = episodeTerm_i + stepWeight·stepTerm_i. */
  advantages: number[];
  episodeTerm: number[];
  stepTerm: number[];
  episodeGroupOf: number[];
  stepGroupOf: number[];
  episodeGroups: { key: Record<string, string>; members: number[]; mean: number; std: number }[];
  stepGroups: { key: Record<string, string>; members: number[]; mean: number; std: number }[];
}

/**
 * GiGPO two-level advantages (MAGE): A_i = (s_i − mean_{U(i)} s) + w·(G_i − mean_{S(i)} G), where
 * U(i) = samples sharing the `groupBy` fields (default group and opponent) and S(i) = samples of U(i)
 * with the same anchor. mean_std_norm divides each term by its group's (std + eps). A singleton
 * episode group uses mean 0 (std 1) — the raw score — unless episodeSingleton is 'zero'; a singleton
 * step group has step term 0.
 */
export function stepAdvantages(samples: readonly StepSample[], cfgIn: StepAdvantageConfigInput = {}): StepAdvantageResult {
  const cfg = StepAdvantageConfigSchema.parse(cfgIn);
  samples.forEach((s, i) => {
    if (!Number.isFinite(s.score) || !Number.isFinite(s.ret)) throw new Error(`stepAdvantages: sample ${i} has score ${s.score} and return ${s.ret}; both must be finite`);
  });
  const keys = samples.map((s) => s.keys);
  const stepFields = cfg.groupBy.includes(cfg.anchorKey) ? cfg.groupBy : [...cfg.groupBy, cfg.anchorKey];
  const ep = groupSamples(keys, cfg.groupBy);
  const st = groupSamples(keys, stepFields);
  const stats = (groups: { key: Record<string, string>; members: number[] }[], value: (i: number) => number) =>
    groups.map((g) => {
      const xs = g.members.map(value);
      return { key: g.key, members: g.members, mean: mean(xs), std: std(xs, cfg.stdUnbiased) };
    });
  const episodeGroups = stats(ep.groups, (i) => samples[i]!.score);
  const stepGroups = stats(st.groups, (i) => samples[i]!.ret);
  const byStd = cfg.mode === 'mean_std_norm';

  const episodeTerm = samples.map((s, i) => {
    const g = episodeGroups[ep.groupOf[i]!]!;
    if (g.members.length === 1) return cfg.episodeSingleton === 'zero' ? 0 : byStd ? s.score / (1 + cfg.eps) : s.score;
    return byStd ? (s.score - g.mean) / (g.std + cfg.eps) : s.score - g.mean;
  });
  const stepTerm = samples.map((s, i) => {
    const g = stepGroups[st.groupOf[i]!]!;
    if (g.members.length === 1) return 0;
    return byStd ? (s.ret - g.mean) / (g.std + cfg.eps) : s.ret - g.mean;
  });
  const advantages = episodeTerm.map((e, i) => e + cfg.stepWeight * stepTerm[i]!);
  return { advantages, episodeTerm, stepTerm, episodeGroupOf: ep.groupOf, stepGroupOf: st.groupOf, episodeGroups, stepGroups };
}

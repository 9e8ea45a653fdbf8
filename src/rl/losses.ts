/**
 * Policy-gradient losses on flat per-token arrays, with analytic gradients.
 *
 * The engine computes the current policy's logprob (and entropy) of every trained token; this module
 * returns the scalar loss and dL/dlogp[t], dL/dent[t], which the engine backpropagates through its
 * network. All arithmetic is float64; gradients come back as Float32Array (what the engine consumes).
 *
 * Per trained token t (mask 1), with advantage A, the loss term is
 *   ℓ_t = pg_t + klCoef·kl_t − entropyCoef·ent_t
 * and the batch loss is an aggregation Σ_t c_t·ℓ_t whose coefficients c_t depend only on the mask and
 * the sequence ids (see `aggregationWeights`), so dL/dlogp[t] = c_t·(∂pg_t + klCoef·∂kl_t) and
 * dL/dent[t] = −entropyCoef·c_t.
 *
 * Policy terms (verl / AReaL semantics):
 * - `ppo`: r = exp(logp − old); pg = max(−A·r, −A·clip(r, 1−εlow, 1+εhigh)); with dual clip c and
 *   A < 0: pg = min(pg, −A·c). The log-ratio is clamped to [−20, 20] before exp (zero gradient
 *   outside), as verl does, so a stale token cannot overflow.
 * - `decoupled_ppo` (AReaL): u = exp(logp − prox), w = exp(prox − old) (a constant),
 *   pg = w·max(−A·u, −A·clip(u, 1−εlow, 1+εhigh)) (dual clip, if on, applies to the max term).
 *   Tokens with w > behavCap are masked from the policy term (`capMode: 'mask'`) or get w = behavCap
 *   (`'clamp'`). DENOMINATOR CHOICE: a masked (capped) token still counts in the aggregation
 *   denominators, exactly as AReaL's code does — its policy term is 0 but it keeps its weight c_t,
 *   so capping a token never enlarges the step taken on the others. Its KL and entropy terms
 *   still apply (they regularise the current policy, which is defined on that token).
 * - `reinforce`: pg = −A·logp (plain on-policy policy gradient; no ratio, no clipping).
 * KL to a reference policy (only when klCoef > 0; refLogprobs required):
 * - `k1`: logp − ref; `k2`: ½(logp − ref)²;
 * - `k3` (verl low_var_kl): x = clamp(ref − logp, −20, 20), kl = eˣ − x − 1 clamped to [−10, 10].
 */
import { z } from 'zod';

type Nums = ArrayLike<number>;

/** Flat per-token inputs of a policy loss. All arrays have one entry per token. */
export interface TokenBatch {
  /** Current-policy logprobs (the variables the gradient is taken with respect to). */
  logprobs: Nums;
  /** Behaviour logprobs recorded when the tokens were sampled. */
  oldLogprobs: Nums;
  /** Proximal-policy logprobs (decoupled PPO: the policy before this update, recomputed by the trainer). */
  proxLogprobs?: Nums | null;
  /** Reference-policy logprobs (KL loss). */
  refLogprobs?: Nums | null;
  /** Current-policy entropies (the other gradient variable). */
  entropy?: Nums | null;
  /** Per-token advantages. */
  advantages: Nums;
  /** 1 = token counts; default all 1. */
  mask?: Nums | null;
  /** Which sequence each token belongs to (any integers); needed by the seq-* aggregations. */
  seqIds?: Nums | null;
}

export const AGGREGATIONS = ['token-mean', 'seq-mean-token-sum', 'seq-mean-token-mean', 'seq-mean-token-sum-norm'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

export const LossConfigSchema = z
  .object({
    kind: z.enum(['ppo', 'decoupled_ppo', 'reinforce']).default('ppo'),
    /** Lower clip ε: ratios below 1 − epsLow are clipped. */
    epsLow: z.number().min(0).max(1).default(0.2),
    /** Upper clip ε: ratios above 1 + epsHigh are clipped (DAPO clip-higher uses 0.28). */
    epsHigh: z.number().min(0).default(0.2),
    /** Dual-clip constant c ≥ 1 for negative advantages (verl clip_ratio_c, default 3); null = off. */
    dualClip: z.number().min(1).nullable().default(3),
    /** Decoupled PPO: behaviour importance weight cap (AReaL/ASearcher 5); null = no cap. */
    behavCap: z.number().positive().nullable().default(5),
    /** What happens to a token whose behaviour weight exceeds behavCap. */
    capMode: z.enum(['mask', 'clamp']).default('mask'),
    klCoef: z.number().min(0).default(0),
    klKind: z.enum(['k1', 'k2', 'k3']).default('k3'),
    /** loss −= entropyCoef · aggregated entropy. */
    entropyCoef: z.number().default(0),
    aggregation: z.enum(AGGREGATIONS).default('token-mean'),
    /** Fixed per-sequence token-sum normaliser (Dr.GRPO: the max response length); required by 'seq-mean-token-sum-norm'. */
    normConstant: z.number().positive().nullable().default(null),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.aggregation === 'seq-mean-token-sum-norm' && c.normConstant === null) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['normConstant'], message: "aggregation 'seq-mean-token-sum-norm' needs normConstant (e.g. the max response length)" });
    }
  });
export type LossConfig = z.output<typeof LossConfigSchema>;
export type LossConfigInput = z.input<typeof LossConfigSchema>;

/** Diagnostics; fractions and means are over masked tokens (token-mean), whatever the aggregation. */
export type PolicyLossMetrics = {
  /** Aggregated policy term (before KL and entropy). */
  pgLoss: number;
  /** Aggregated KL (before klCoef); 0 when klCoef = 0. */
  kl: number;
  /** Aggregated entropy; 0 when no entropy was given. */
  entropy: number;
  /** Fraction of tokens where the clipped branch was taken (no gradient through the ratio). */
  clipFrac: number;
  /** Fraction of tokens where dual clip was active. */
  dualClipFrac: number;
  /** Mean of (base − logp), base = old (ppo/reinforce) or prox (decoupled): verl's ppo_kl. */
  approxKl: number;
  ratioMean: number;
  ratioMax: number;
  /** Decoupled PPO: fraction of tokens whose behaviour weight exceeded behavCap. */
  cappedFrac: number;
  /** Decoupled PPO: mean behaviour weight exp(prox − old) before capping. */
  behavWeightMean: number;
  tokens: number;
  sequences: number;
};

export interface PolicyLossOutput {
  loss: number;
  dLogp: Float32Array;
  dEnt: Float32Array;
  metrics: PolicyLossMetrics;
}

const LOG_RATIO_CLAMP = 20;
const K3_CLAMP = 10;

/**
 * The aggregation coefficients c_t (loss = Σ c_t·ℓ_t), verl `agg_loss` semantics:
 * - token-mean: m_t / Σm.
 * - seq-mean-token-sum: m_t / S (S = number of sequences with at least one masked token).
 * - seq-mean-token-mean: m_t / (S · n_seq(t)), n = masked tokens of that sequence.
 * - seq-mean-token-sum-norm: m_t / (S · normConstant) (Dr.GRPO: a fixed horizon instead of lengths).
 * All zeros when no token is masked in.
 */
export function aggregationWeights(mask: Nums | null | undefined, seqIds: Nums | null | undefined, n: number, aggregation: Aggregation, normConstant: number | null = null): { weights: Float64Array; tokens: number; sequences: number } {
  const w = new Float64Array(n);
  const m = (t: number) => (mask ? mask[t]! : 1);
  let tokens = 0;
  for (let t = 0; t < n; t++) if (m(t) !== 0) tokens++;
  const perSeq = new Map<number, number>();
  if (seqIds) for (let t = 0; t < n; t++) if (m(t) !== 0) perSeq.set(seqIds[t]!, (perSeq.get(seqIds[t]!) ?? 0) + 1);
  const sequences = perSeq.size;
  if (tokens === 0) return { weights: w, tokens, sequences };
  if (aggregation !== 'token-mean' && !seqIds) {
    throw new Error(`aggregation '${aggregation}' needs seqIds (the sequence each token belongs to); pass batch.seqIds or use 'token-mean'`);
  }
  for (let t = 0; t < n; t++) {
    const mt = m(t);
    if (mt === 0) continue;
    switch (aggregation) {
      case 'token-mean': w[t] = mt / tokens; break;
      case 'seq-mean-token-sum': w[t] = mt / sequences; break;
      case 'seq-mean-token-mean': w[t] = mt / (sequences * perSeq.get(seqIds![t]!)!); break;
      case 'seq-mean-token-sum-norm': {
        if (normConstant === null || !(normConstant > 0)) throw new Error("aggregation 'seq-mean-token-sum-norm' needs a positive normConstant");
        w[t] = mt / (sequences * normConstant);
        break;
      }
    }
  }
  return { weights: w, tokens, sequences };
}

function checkLength(name: string, a: Nums | null | undefined, n: number): void {
  if (a && a.length !== n) throw new Error(`policyLoss: ${name} has length ${a.length} but logprobs has ${n}; every per-token array must have one entry per token`);
}

function checkFinite(name: string, a: Nums, t: number): number {
  const v = a[t]!;
  if (!Number.isFinite(v)) throw new Error(`policyLoss: ${name}[${t}] is ${v} on a trained token; mask the token out or fix its source (a -Infinity behaviour logprob means the sampler's constraint forbade the token)`);
  return v;
}

/** Policy loss of a token batch, its gradients w.r.t. each token's logprob and entropy, and diagnostics. */
export function policyLoss(batch: TokenBatch, cfgIn: LossConfigInput): PolicyLossOutput {
  const cfg: LossConfig = LossConfigSchema.parse(cfgIn);
  const n = batch.logprobs.length;
  checkLength('oldLogprobs', batch.oldLogprobs, n);
  checkLength('advantages', batch.advantages, n);
  checkLength('mask', batch.mask, n);
  checkLength('seqIds', batch.seqIds, n);
  checkLength('proxLogprobs', batch.proxLogprobs, n);
  checkLength('refLogprobs', batch.refLogprobs, n);
  checkLength('entropy', batch.entropy, n);
  const decoupled = cfg.kind === 'decoupled_ppo';
  if (decoupled && !batch.proxLogprobs) throw new Error("policyLoss: kind 'decoupled_ppo' needs proxLogprobs (the pre-update policy's logprobs, recomputed by the trainer)");
  const useKl = cfg.klCoef > 0;
  if (useKl && !batch.refLogprobs) throw new Error('policyLoss: klCoef > 0 needs refLogprobs (reference-policy logprobs); set klCoef to 0 to train without a KL term');
  if (cfg.entropyCoef !== 0 && !batch.entropy) throw new Error('policyLoss: entropyCoef != 0 needs entropy (per-token entropies of the current policy)');

  const { weights: c, tokens, sequences } = aggregationWeights(batch.mask, batch.seqIds, n, cfg.aggregation, cfg.normConstant);
  const dLogp = new Float32Array(n), dEnt = new Float32Array(n);
  let pgLoss = 0, klAgg = 0, entAgg = 0;
  let clipped = 0, dualClipped = 0, capped = 0, approxKl = 0, ratioSum = 0, ratioMax = 0, behavSum = 0;
  const lo = 1 - cfg.epsLow, hi = 1 + cfg.epsHigh;

  for (let t = 0; t < n; t++) {
    if (batch.mask && batch.mask[t] === 0) continue;
    const ct = c[t]!;
    const lp = checkFinite('logprobs', batch.logprobs, t);
    const A = checkFinite('advantages', batch.advantages, t);
    const old = checkFinite('oldLogprobs', batch.oldLogprobs, t);

    // Policy term and its derivative w.r.t. lp.
    let pg: number, dpg: number;
    if (cfg.kind === 'reinforce') {
      pg = -A * lp;
      dpg = -A;
      approxKl += old - lp;
      const r = Math.exp(Math.max(-LOG_RATIO_CLAMP, Math.min(LOG_RATIO_CLAMP, lp - old)));
      ratioSum += r;
      ratioMax = Math.max(ratioMax, r);
    } else {
      const base = decoupled ? checkFinite('proxLogprobs', batch.proxLogprobs!, t) : old;
      const d = lp - base;
      approxKl += -d;
      const inRange = d > -LOG_RATIO_CLAMP && d < LOG_RATIO_CLAMP;
      const r = Math.exp(Math.max(-LOG_RATIO_CLAMP, Math.min(LOG_RATIO_CLAMP, d)));
      const dr = inRange ? r : 0;
      ratioSum += r;
      ratioMax = Math.max(ratioMax, r);
      const unclippedLoss = -A * r;
      const clippedLoss = -A * Math.min(hi, Math.max(lo, r));
      if (clippedLoss > unclippedLoss) {
        // Only possible with r outside [lo, hi]: the clipped ratio is a constant.
        pg = clippedLoss;
        dpg = 0;
        clipped++;
      } else {
        pg = unclippedLoss;
        dpg = -A * dr;
      }
      if (cfg.dualClip !== null && A < 0) {
        const bound = -A * cfg.dualClip;
        if (pg > bound) {
          pg = bound;
          dpg = 0;
          dualClipped++;
        }
      }
      if (decoupled) {
        let w = Math.exp(batch.proxLogprobs![t]! - old);
        behavSum += w;
        if (cfg.behavCap !== null && w > cfg.behavCap) {
          capped++;
          w = cfg.capMode === 'mask' ? 0 : cfg.behavCap;
        }
        pg *= w;
        dpg *= w;
      }
    }

    // KL to the reference policy.
    let kl = 0, dkl = 0;
    if (useKl) {
      const ref = checkFinite('refLogprobs', batch.refLogprobs!, t);
      if (cfg.klKind === 'k1') {
        kl = lp - ref;
        dkl = 1;
      } else if (cfg.klKind === 'k2') {
        kl = 0.5 * (lp - ref) * (lp - ref);
        dkl = lp - ref;
      } else {
        const raw = ref - lp;
        const x = Math.max(-LOG_RATIO_CLAMP, Math.min(LOG_RATIO_CLAMP, raw));
        const ex = Math.exp(x);
        kl = ex - x - 1;
        dkl = raw > -LOG_RATIO_CLAMP && raw < LOG_RATIO_CLAMP ? 1 - ex : 0;
        if (kl > K3_CLAMP) {
          kl = K3_CLAMP;
          dkl = 0;
        }
      }
    }

    const ent = batch.entropy ? checkFinite('entropy', batch.entropy, t) : 0;
    pgLoss += ct * pg;
    klAgg += ct * kl;
    entAgg += ct * ent;
    dLogp[t] = ct * (dpg + cfg.klCoef * dkl);
    dEnt[t] = -cfg.entropyCoef * ct;
  }

  const loss = pgLoss + cfg.klCoef * klAgg - cfg.entropyCoef * entAgg;
  const per = (x: number) => (tokens > 0 ? x / tokens : 0);
  return {
    loss,
    dLogp,
    dEnt,
    metrics: {
      pgLoss,
      kl: klAgg,
      entropy: entAgg,
      clipFrac: per(clipped),
      dualClipFrac: per(dualClipped),
      approxKl: per(approxKl),
      ratioMean: per(ratioSum),
      ratioMax,
      cappedFrac: per(capped),
      behavWeightMean: per(behavSum),
      tokens,
      sequences,
    },
  };
}

/** Validate a config once and return a loss function over token batches (the trainer's LossFn shape). */
export function makePolicyLoss(cfgIn: LossConfigInput): (batch: TokenBatch) => PolicyLossOutput {
  const cfg = LossConfigSchema.parse(cfgIn);
  return (batch) => policyLoss(batch, cfg);
}

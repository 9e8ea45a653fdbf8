/**
 * The built-in train engine: collates token-in-token-out samples into padded batches, recomputes
 * per-token logprobs with the current weights, asks a loss function for dL/dlogp and dL/dentropy,
 * backpropagates, clips the gradient norm and applies AdamW with an LR schedule.
 *
 * The loss sees only trained tokens, flattened: it never sees text, and nothing is re-tokenized.
 */
import { z } from 'zod';
import type { Sample } from '../core/types.ts';
import type { ParamView, Transformer } from '../engine/model.ts';
import type { TrainStepMetrics } from '../engine/types.ts';
import { formatZodError } from '../core/config-errors.ts';
import type { LoraAdapter } from './lora.ts';

export const OptimizerConfigSchema = z.object({
  lr: z.number().positive().finite().default(1e-3),
  /** β₁, β₂ in [0, 1): β = 1 never updates a moment and divides by 1 − β^t = 0 (every weight NaN). */
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  eps: z.number().positive().finite().default(1e-8),
  weightDecay: z.number().min(0).finite().default(0.01),
  /** Max global gradient L2 norm; 0 = no clipping. */
  gradClip: z.number().min(0).finite().default(1.0),
  schedule: z.enum(['constant', 'linear', 'cosine']).default('constant'),
  warmupSteps: z.number().int().min(0).default(0),
  /** Needed by the linear/cosine schedules. */
  totalSteps: z.number().int().positive().optional(),
  /** Min LR as a fraction of lr at the end of a decaying schedule. */
  minLrRatio: z.number().min(0).max(1).default(0.1),
  /** Max padded tokens (rows × padded length) per forward pass. */
  microBatchTokens: z.number().int().positive().default(8192),
}).strict();
export type OptimizerConfig = z.output<typeof OptimizerConfigSchema>;

/** Inputs of a loss, flattened over trained tokens of the whole batch. */
export interface LossInputs {
  /** Current-policy logprobs (requires grad). */
  logprobs: Float32Array;
  /** Current-policy entropies (requires grad). */
  entropy: Float32Array;
  /** Behaviour logprobs recorded at sampling time. */
  oldLogprobs: Float32Array;
  /** Proximal-policy logprobs (decoupled PPO), if computed. */
  proxLogprobs: Float32Array | null;
  /** Per-token advantages. */
  advantages: Float32Array;
  /** Index of the sample each token belongs to. */
  seqIds: Int32Array;
  /** Policy version of each token's sampler (-1 if not sampled). */
  versions: Int32Array;
}
export interface LossOutput {
  loss: number;
  dLogp: Float32Array;
  dEnt: Float32Array;
  metrics?: Record<string, number>;
}
export type LossFn = (inp: LossInputs) => LossOutput;

/** Supervised loss: mean negative log-likelihood of trained tokens. */
export const sftLoss: LossFn = (inp) => {
  const n = inp.logprobs.length;
  let loss = 0;
  const dLogp = new Float32Array(n), dEnt = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    loss -= inp.logprobs[i]!;
    dLogp[i] = -1 / n;
  }
  return { loss: n > 0 ? loss / n : 0, dLogp, dEnt };
};

interface Collated {
  B: number; T: number;
  tokens: Int32Array; targets: Int32Array; masks: Uint8Array | null;
  /** For each trained token (in flattened order): its index into the [B*T] grid. */
  gridIndex: Int32Array;
  temperature: number;
}

export interface BuiltinTrainerOptions {
  /**
   * Train LoRA adapters instead of every weight (src/train/lora.ts): AdamW steps only the adapter
   * (its moments are adapter-sized) and merges it into the model after each step.
   */
  lora?: LoraAdapter;
}

export class BuiltinTrainer {
  readonly opt: OptimizerConfig;
  /** The LoRA adapter being trained, or null for full fine-tuning. */
  readonly lora: LoraAdapter | null;
  /** AdamW first and second moments, same layout as the trained parameters (model.params, or the adapter's). */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Optimizer steps taken; also the published weights version. */
  step = 0;

  constructor(readonly model: Transformer, opt: z.input<typeof OptimizerConfigSchema> = {}, options: BuiltinTrainerOptions = {}) {
    const r = OptimizerConfigSchema.safeParse(opt);
    if (!r.success) throw new Error(`invalid optimizer config: ${formatZodError(r.error, { schema: OptimizerConfigSchema, prefix: 'optimizer' })}`);
    this.opt = r.data;
    if (this.opt.schedule !== 'constant' && !this.opt.totalSteps) throw new Error(`optimizer.totalSteps is required by the '${this.opt.schedule}' schedule; set it or use schedule 'constant'`);
    this.lora = options.lora ?? null;
    if (this.lora && this.lora.model !== model) throw new Error('BuiltinTrainer: the LoRA adapter is attached to another model');
    // LoRA: the model's weights are frozen and the adapter takes its linear layers' gradients directly.
    if (this.lora) model.weightGradDelegate = this.lora;
    const trained = this.lora ? this.lora.numParams : model.numParams;
    this.m = new Float32Array(trained);
    this.v = new Float32Array(trained);
  }

  /** What AdamW steps: the model's parameters, or the LoRA adapter's. */
  trainedParameters(): { params: Float32Array; grads: Float32Array; layout: readonly ParamView[] } {
    return this.lora ?? this.model;
  }

  version(): number {
    return this.step;
  }

  /** LR at a given step (warmup then constant/linear/cosine decay). */
  lrAt(step: number): number {
    const o = this.opt;
    if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
    if (o.schedule === 'constant') return o.lr;
    const total = o.totalSteps!;
    const frac = Math.min(1, Math.max(0, (step - o.warmupSteps) / Math.max(1, total - o.warmupSteps)));
    const min = o.lr * o.minLrRatio;
    if (o.schedule === 'linear') return o.lr - (o.lr - min) * frac;
    return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * frac));
  }

  /** Split samples into micro-batches of at most microBatchTokens padded tokens, grouped by temperature. */
  private microBatches(samples: Sample[]): number[][] {
    const ctx = this.model.config.contextLength, V = this.model.config.vocabSize;
    const order = samples.map((_, i) => i);
    for (const i of order) {
      const seq = samples[i]!.seq;
      const L = seq.ids.length;
      if (L < 2) throw new Error(`sample ${i} has ${L} token(s); a trained sample needs a context token and at least one target`);
      if (L - 1 > ctx) throw new Error(`sample ${i} has ${L} tokens; the model's contextLength is ${ctx} (split long trajectories into several samples)`);
      for (let t = 0; t < L; t++) {
        const id = seq.ids[t]!;
        // Int32Array would turn 3.7 into 3 and NaN into 0; a negative target would be skipped yet counted.
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new Error(`sample ${i}: token id ${id} at position ${t} is not a token of the model (ids are integers in [0, ${V}))`);
        }
      }
      if (seq.mask.length !== L) throw new Error(`sample ${i}: mask has ${seq.mask.length} entries for ${L} token ids`);
    }
    // Sort by temperature then length so padding is small; keep it deterministic.
    order.sort((a, b) => (samples[a]!.temperature ?? 1) - (samples[b]!.temperature ?? 1) || samples[a]!.seq.ids.length - samples[b]!.seq.ids.length || a - b);
    const out: number[][] = [];
    let cur: number[] = [];
    let curT = 0;
    for (const i of order) {
      const s = samples[i]!;
      const T = s.seq.ids.length - 1;
      const sameTemp = cur.length === 0 || (samples[cur[0]!]!.temperature ?? 1) === (s.temperature ?? 1);
      if (cur.length > 0 && (!sameTemp || (cur.length + 1) * Math.max(curT, T) > this.opt.microBatchTokens)) {
        out.push(cur);
        cur = [];
        curT = 0;
      }
      cur.push(i);
      curT = Math.max(curT, T);
    }
    if (cur.length) out.push(cur);
    return out;
  }

  /**
   * Lay out samples as B right-padded rows: input tokens ids[0..L-2], targets ids[1..L-1] where the
   * target is selected (all positions when `scoreAll`, else where mask = 1).
   */
  private collate(samples: Sample[], idx: number[], scoreAll: boolean): Collated {
    const V = this.model.config.vocabSize;
    const B = idx.length;
    const T = Math.max(...idx.map((i) => samples[i]!.seq.ids.length - 1));
    const tokens = new Int32Array(B * T), targets = new Int32Array(B * T).fill(-1);
    const anyMask = idx.some((i) => samples[i]!.seq.constraintMasks?.some((m) => m));
    const masks = anyMask ? new Uint8Array(B * T * V).fill(1) : null;
    const grid: number[] = [];
    for (let b = 0; b < B; b++) {
      const seq = samples[idx[b]!]!.seq;
      const L = seq.ids.length;
      for (let t = 0; t < L - 1; t++) tokens[b * T + t] = seq.ids[t]!;
      for (let t = 1; t < L; t++) {
        if (!scoreAll && !seq.mask[t]) continue;
        const g = b * T + t - 1;
        targets[g] = seq.ids[t]!;
        grid.push(g);
        const cm = seq.constraintMasks?.[t];
        if (masks && cm) {
          if (cm.length !== V) throw new Error(`constraint mask of token ${t} has length ${cm.length}, expected vocabSize ${V}`);
          masks.set(cm, g * V);
        }
      }
    }
    return { B, T, tokens, targets, masks, gridIndex: Int32Array.from(grid), temperature: samples[idx[0]!]!.temperature ?? 1 };
  }

  /**
   * Logprob of every token of every sample given its prefix, under the current weights (position 0
   * has no prefix and gets NaN). Used for proximal logprobs (decoupled PPO) and for checking the
   * token-in-token-out contract.
   */
  computeLogprobs(samples: Sample[]): Float32Array[] {
    const out = samples.map((s) => new Float32Array(s.seq.ids.length).fill(Number.NaN));
    for (const idx of this.microBatches(samples)) {
      const c = this.collate(samples, idx, true);
      const { logprobs } = this.model.forward({ B: c.B, T: c.T, tokens: c.tokens, targets: c.targets, masks: c.masks, temperature: c.temperature });
      for (let b = 0; b < idx.length; b++) {
        const L = samples[idx[b]!]!.seq.ids.length;
        for (let t = 1; t < L; t++) out[idx[b]!]![t] = logprobs[b * c.T + t - 1]!;
      }
    }
    return out;
  }

  /**
   * One optimizer step on `samples` (each with an advantage) with the given loss. Exact for any
   * loss: when the batch needs several micro-batches, a first no-grad pass collects the current
   * logprobs of the whole batch, the loss is evaluated once on all tokens, and a second pass
   * backpropagates each micro-batch's share of dL/dlogp.
   */
  trainStep(samples: Sample[], lossFn: LossFn, opts: { proxLogprobs?: Float32Array[] } = {}): TrainStepMetrics {
    if (samples.length === 0) throw new Error('trainStep: empty batch');
    const mbs = this.microBatches(samples);
    const collated = mbs.map((idx) => this.collate(samples, idx, false));
    // Flattened per-token inputs, in micro-batch order.
    const nTok = collated.reduce((a, c) => a + c.gridIndex.length, 0);
    if (nTok === 0) throw new Error('trainStep: no trained tokens in the batch (every mask is 0)');
    for (const [i, s] of samples.entries()) {
      const L = s.seq.ids.length;
      if (s.seq.logprobs.length !== L || s.seq.versions.length !== L) {
        throw new Error(`trainStep: sample ${i} has ${L} token ids but ${s.seq.logprobs.length} logprobs and ${s.seq.versions.length} versions`);
      }
    }
    const old = new Float32Array(nTok), adv = new Float32Array(nTok), seqIds = new Int32Array(nTok), versions = new Int32Array(nTok);
    /** Position of each trained token in its sample (for error messages). */
    const positions = new Int32Array(nTok);
    const prox = opts.proxLogprobs ? new Float32Array(nTok) : null;
    let k = 0;
    collated.forEach((c, m) => {
      const idx = mbs[m]!;
      for (let b = 0; b < idx.length; b++) {
        const s = samples[idx[b]!]!;
        const L = s.seq.ids.length;
        for (let t = 1; t < L; t++) {
          if (!s.seq.mask[t]) continue;
          old[k] = s.seq.logprobs[t]!;
          const a = s.advantage;
          adv[k] = a === undefined ? 0 : typeof a === 'number' ? a : a[t]!;
          seqIds[k] = idx[b]!;
          positions[k] = t;
          versions[k] = s.seq.versions[t]!;
          if (prox) prox[k] = opts.proxLogprobs![idx[b]!]![t]!;
          k++;
        }
      }
    });
    const run = (c: Collated) => this.model.forward({ B: c.B, T: c.T, tokens: c.tokens, targets: c.targets, masks: c.masks, temperature: c.temperature });
    const logp = new Float32Array(nTok), ent = new Float32Array(nTok);
    const single = collated.length === 1;
    k = 0;
    for (const c of collated) {
      const r = run(c);
      for (let j = 0; j < c.gridIndex.length; j++, k++) {
        logp[k] = r.logprobs[c.gridIndex[j]!]!;
        ent[k] = r.entropy[c.gridIndex[j]!]!;
      }
    }
    // Non-finite weights or logits were reported by the forward pass; what is left is a target its own
    // recorded constraint mask forbids (logprob −∞), which would otherwise show up as an infinite loss.
    for (let j = 0; j < nTok; j++) {
      if (logp[j] === -Infinity) {
        const s = samples[seqIds[j]!]!, t = positions[j]!;
        throw new Error(`trainStep: sample ${seqIds[j]}, position ${t}: token ${s.seq.ids[t]} has logprob -Infinity because its constraint mask forbids it (the mask does not belong to this token); weights were not updated`);
      }
    }
    const out = lossFn({ logprobs: logp, entropy: ent, oldLogprobs: old, proxLogprobs: prox, advantages: adv, seqIds, versions });
    if (!Number.isFinite(out.loss)) {
      throw new Error(`trainStep: loss is ${out.loss} (non-finite); weights were not updated. Check advantages/rewards for NaN and the learning rate.`);
    }
    this.model.zeroGrad();
    this.lora?.zeroGrad();
    k = 0;
    for (const c of collated) {
      if (!single) run(c);
      const N = c.B * c.T;
      const dLogp = new Float32Array(N), dEnt = new Float32Array(N);
      for (let j = 0; j < c.gridIndex.length; j++, k++) {
        dLogp[c.gridIndex[j]!] = out.dLogp[k]!;
        dEnt[c.gridIndex[j]!] = out.dEnt[k]!;
      }
      this.model.backward(dLogp, dEnt);
    }
    const gradNorm = this.applyGradients();
    return { loss: out.loss, gradNorm, tokens: nTok, version: this.step, lr: this.lrAt(this.step - 1), ...(out.metrics ?? {}) };
  }

  /**
   * Clip, then AdamW per parameter tensor (decay only where the layout says so). With LoRA the
   * adapter's gradients (accumulated by the backward, see LoraAdapter.linear) are stepped and the
   * adapter is merged after the step. Returns the pre-clip norm (of the trained parameters' gradient).
   */
  applyGradients(): number {
    const be = this.model.backend, o = this.opt;
    const trained = this.trainedParameters(), g = trained.grads;
    const norm = Math.sqrt(be.sumSquares(g, g.length));
    if (!Number.isFinite(norm)) {
      this.model.zeroGrad();
      this.lora?.zeroGrad();
      throw new Error(`gradient norm is ${norm} (NaN/inf in the gradients); the step was skipped and weights are unchanged`);
    }
    if (o.gradClip > 0 && norm > o.gradClip) be.scale(g, o.gradClip / (norm + 1e-6), g.length);
    const lr = this.lrAt(this.step);
    this.step++;
    for (const pv of trained.layout) {
      const a = pv.offset, e = pv.offset + pv.size;
      be.adamw(trained.params.subarray(a, e), g.subarray(a, e), this.m.subarray(a, e), this.v.subarray(a, e), pv.size, lr, o.beta1, o.beta2, o.eps, pv.decay ? o.weightDecay : 0, this.step);
    }
    this.lora?.merge();
    // One cheap pass (double accumulation: finite weights cannot overflow it) so that a step that
    // produced NaN/Inf weights is reported here, naming the parameter, not steps later as NaN logprobs.
    if (!Number.isFinite(be.sumSquares(this.model.params, this.model.numParams))) this.model.assertFiniteParams(`optimizer step ${this.step}`);
    return norm;
  }
}

/**
 * `TinkerTrainer`: the PolicyTrainer of the RL loop on a Tinker-compatible training service (the
 * hosted one, SkyRL's self-hosted server, or `agentrl serve trainer`), in place of a BuiltinTrainer.
 *
 * Per minibatch: one forward_backward over the minibatch's samples as Datums, then one optim_step;
 * after the batch, save_weights_for_sampler, and the saved weights are downloaded (the checkpoint's
 * archive URL) into the local sampler's layout, so the loop's `engine.setWeights` works unchanged.
 *
 * The loss is expressed EXACTLY as agentrl's own (src/rl/losses.ts). Tinker's losses are sums over
 * positions; agentrl's is Σ_t c_t·ℓ_t with aggregation coefficients c_t ≥ 0 that depend only on the
 * mask and sequence ids. Both RL losses are positively homogeneous in the advantage, so sending
 * A'_t = c_t·A_t (0 on untrained positions) makes Tinker's sum equal agentrl's loss:
 *   ppo           → Tinker `ppo`, clip_low_threshold = 1 − epsLow, clip_high_threshold = 1 + epsHigh,
 *                   logprobs = the behaviour logprobs.
 *   decoupled_ppo → Tinker `ppo` with logprobs = the proximal logprobs (a `forward` call per
 *                   minibatch before the batch's first step, AReaL's π_prox) and A'_t = c_t·w_t·A_t,
 *                   w_t = exp(prox − behaviour) capped by behavCap as the config says (w is a constant,
 *                   so it scales the clipped objective exactly as agentrl's loss does).
 *   reinforce     → Tinker `cross_entropy` with weights c_t·A_t (−Σ w·logp has the gradient −c·A).
 * Not expressible, so refused with the fix named: dual clip (set loss.dualClip: null), an entropy
 * bonus (entropyCoef: 0), a KL penalty (klCoef: 0), samples with token masks (constrained decoding,
 * top-k/top-p: set trial.constrained: false and sample without truncation) or a temperature other
 * than 1 (Tinker scores at temperature 1). Agentrl's log-ratio clamp at ±20 is not applied remotely
 * (it only matters for tokens whose ratio is beyond e^20).
 *
 * Adam: the optimizer config's lr (through its schedule, computed here per step and sent as the
 * step's learning_rate), beta1, beta2, eps, weightDecay, gradClip map to adam_params;
 * microBatchTokens is the service's business. The loss and policy metrics are recomputed here from
 * the logprobs forward_backward returns, so they are those the built-in trainer reports (entropy
 * excepted: Tinker does not return it); gradNorm is the service's `grad_norm` metric (NaN if absent).
 */
import { z } from 'zod';
import type { Sample } from '../../core/types.ts';
import type { ParamView } from '../../engine/model.ts';
import { readSafetensors } from '../../engine/safetensors.ts';
import { formatZodError } from '../../core/config-errors.ts';
import { LossConfigSchema, aggregationWeights, policyLoss, type LossConfig, type LossConfigInput } from '../../rl/losses.ts';
import { BuiltinTrainer, OptimizerConfigSchema, type OptimizerConfig } from '../builtin-trainer.ts';
import { mergeMinibatchMetrics, type PolicyTrainer, type TrainedStep } from '../policy-trainer.ts';
import { tensorsToParams } from '../trainer-checkpoint.ts';
import { TinkerClient } from './tinker-client.ts';
import { SAMPLER_WEIGHTS_FORMAT, datum, tensor, type AdamParams, type Datum, type TinkerLoraConfig, type TinkerLossFn } from './tinker-protocol.ts';

/** The run config section that trains on a Tinker-compatible service (`trainerService`). */
export const TrainerServiceSchema = z.object({
  kind: z.literal('tinker'),
  /** Base URL of the service, e.g. http://127.0.0.1:8000 (`agentrl serve trainer`). */
  url: z.string().min(1),
  /** Sent as X-API-Key; default the TINKER_API_KEY environment variable. */
  apiKey: z.string().min(1).optional(),
  /** The service's name of the model to train; default the first model the service lists. */
  baseModel: z.string().min(1).optional(),
  /** Train a LoRA adapter (the hosted service trains LoRA only); absent = full fine-tuning. */
  lora: z.object({
    rank: z.number().int().min(1),
    /** Scale numerator (agentrl serve trainer; default 8). */
    alpha: z.number().positive().finite().optional(),
    seed: z.number().int().default(0),
    trainAttn: z.boolean().default(true),
    trainMlp: z.boolean().default(true),
  }).strict().optional(),
  requestTimeoutSeconds: z.number().positive().default(120),
  futureTimeoutSeconds: z.number().positive().default(3600),
  maxRetries: z.number().int().min(0).default(5),
}).strict();
export type TrainerServiceConfig = z.output<typeof TrainerServiceSchema>;
export type TrainerServiceInput = z.input<typeof TrainerServiceSchema>;

export interface TinkerTrainerOptions {
  client: TinkerClient;
  modelId: string;
  /** The local sampler's model (its parameter layout receives the downloaded weights). */
  model: { layout: readonly ParamView[]; numParams: number };
  optimizer: z.input<typeof OptimizerConfigSchema>;
}

/** A loss config as a Tinker loss: the loss_fn, its config, and agentrl's parsed config. */
export interface TinkerLossPlan {
  cfg: LossConfig;
  lossFn: TinkerLossFn;
  lossFnConfig: Record<string, number> | undefined;
}

/** Map agentrl's loss config onto a Tinker loss, or say which setting Tinker cannot express. */
export function tinkerLossPlan(lossIn: LossConfigInput): TinkerLossPlan {
  const parsed = LossConfigSchema.safeParse(lossIn);
  if (!parsed.success) throw new Error(`invalid loss config: ${formatZodError(parsed.error, { prefix: 'loss' })}`);
  const cfg = parsed.data;
  const refuse = (what: string) => new Error(`trainerService (Tinker): ${what}`);
  if (cfg.entropyCoef !== 0) throw refuse(`loss.entropyCoef is ${cfg.entropyCoef}, but Tinker's losses have no entropy term; set loss.entropyCoef: 0`);
  if (cfg.klCoef !== 0) throw refuse(`loss.klCoef is ${cfg.klCoef}, but Tinker's losses have no KL term; set loss.klCoef: 0`);
  if (cfg.kind === 'reinforce') return { cfg, lossFn: 'cross_entropy', lossFnConfig: undefined };
  if (cfg.dualClip !== null) throw refuse(`loss.dualClip is ${cfg.dualClip}, but Tinker's ppo has no dual clip; set loss.dualClip: null`);
  return { cfg, lossFn: 'ppo', lossFnConfig: { clip_low_threshold: 1 - cfg.epsLow, clip_high_threshold: 1 + cfg.epsHigh } };
}

/** Refuse samples Tinker would score differently from the sampler (masks, temperature). */
function checkSamples(minibatches: Sample[][]): void {
  minibatches.forEach((mb, m) => mb.forEach((s, i) => {
    if ((s.temperature ?? 1) !== 1) throw new Error(`trainerService (Tinker): minibatch ${m}, sample ${i} was sampled at temperature ${s.temperature}, but Tinker scores tokens at temperature 1; sample at temperature 1 (e.g. trial.temperature: 1)`);
    if (s.seq.constraintMasks?.some((x) => x)) throw new Error(`trainerService (Tinker): minibatch ${m}, sample ${i} carries token masks (constrained decoding or top-k/top-p), which Tinker cannot apply when scoring; set trial.constrained: false and sample without top-k/top-p`);
  }));
}

/** The LR the built-in trainer would use at `step` (one definition of the schedules: the built-in's). */
function lrAt(opt: OptimizerConfig, step: number): number {
  return BuiltinTrainer.prototype.lrAt.call({ opt } as BuiltinTrainer, step);
}

/** Per trained token of a minibatch (samples in order, positions ascending): where it is and its inputs. */
interface Flat {
  sample: Int32Array;
  pos: Int32Array;
  old: Float32Array;
  adv: Float32Array;
  prox: Float32Array | null;
  seqIds: Int32Array;
}

function flatten(mb: Sample[], prox: Float32Array[] | undefined): Flat {
  const sample: number[] = [], pos: number[] = [];
  mb.forEach((s, i) => {
    const L = s.seq.ids.length;
    if (L < 2) throw new Error(`sample ${i} has ${L} token(s); a trained sample needs a context token and at least one target`);
    if (s.seq.mask.length !== L || s.seq.logprobs.length !== L) throw new Error(`sample ${i}: ${L} token ids but ${s.seq.mask.length} mask entries and ${s.seq.logprobs.length} logprobs`);
    for (let t = 1; t < L; t++) if (s.seq.mask[t]) {
      sample.push(i);
      pos.push(t);
    }
  });
  if (sample.length === 0) throw new Error('trainerService (Tinker): no trained tokens in the minibatch (every mask is 0)');
  const n = sample.length;
  // Float32, as the built-in trainer holds them, so both compute on the same values.
  const old = new Float32Array(n), adv = new Float32Array(n), p = prox ? new Float32Array(n) : null;
  for (let k = 0; k < n; k++) {
    const s = mb[sample[k]!]!, t = pos[k]!;
    old[k] = s.seq.logprobs[t]!;
    const a = s.advantage;
    adv[k] = a === undefined ? 0 : typeof a === 'number' ? a : a[t]!;
    if (p) p[k] = prox![sample[k]!]![t]!;
  }
  return { sample: Int32Array.from(sample), pos: Int32Array.from(pos), old, adv, prox: p, seqIds: Int32Array.from(sample) };
}

/**
 * The minibatch as Datums whose summed Tinker loss is agentrl's loss: next-token layout, advantages
 * (or cross-entropy weights) scaled by the aggregation coefficients, zero on untrained positions.
 */
export function minibatchDatums(mb: Sample[], plan: TinkerLossPlan, prox?: Float32Array[]): { datums: Datum[]; flat: Flat } {
  const { cfg } = plan;
  const flat = flatten(mb, prox);
  const n = flat.sample.length;
  const { weights: c } = aggregationWeights(null, flat.seqIds, n, cfg.aggregation, cfg.normConstant);
  const scaled = mb.map((s) => new Float64Array(s.seq.ids.length - 1));
  for (let k = 0; k < n; k++) {
    let a = c[k]! * flat.adv[k]!;
    if (cfg.kind === 'decoupled_ppo') {
      let w = Math.exp(flat.prox![k]! - flat.old[k]!);
      if (cfg.behavCap !== null && w > cfg.behavCap) w = cfg.capMode === 'mask' ? 0 : cfg.behavCap;
      a *= w;
    }
    if (!Number.isFinite(a) || !Number.isFinite(flat.old[k]!)) {
      throw new Error(`trainerService (Tinker): sample ${flat.sample[k]}, position ${flat.pos[k]}: advantage ${flat.adv[k]} / behaviour logprob ${flat.old[k]} is not finite; fix the rewards or mask the token`);
    }
    scaled[flat.sample[k]!]![flat.pos[k]! - 1] = a;
  }
  const datums = mb.map((s, i) => {
    const ids = s.seq.ids, L = ids.length;
    const targets = ids.slice(1);
    if (plan.lossFn === 'cross_entropy') return datum(ids.slice(0, L - 1), { target_tokens: tensor(targets, 'int64'), weights: tensor(scaled[i]!, 'float32') });
    const base = cfg.kind === 'decoupled_ppo' ? Array.from(prox![i]!.subarray(1)) : ids.slice(1).map((_, j) => Math.fround(s.seq.logprobs[j + 1]!));
    return datum(ids.slice(0, L - 1), { target_tokens: tensor(targets, 'int64'), logprobs: tensor(base, 'float32'), advantages: tensor(scaled[i]!, 'float32') });
  });
  return { datums, flat };
}

export class TinkerTrainer implements PolicyTrainer {
  readonly client: TinkerClient;
  readonly modelId: string;
  private readonly opt: OptimizerConfig;
  private readonly model: { layout: readonly ParamView[]; numParams: number };
  private step = 0;

  constructor(o: TinkerTrainerOptions) {
    const r = OptimizerConfigSchema.safeParse(o.optimizer);
    if (!r.success) throw new Error(`invalid optimizer config: ${formatZodError(r.error, { schema: OptimizerConfigSchema, prefix: 'optimizer' })}`);
    this.opt = r.data;
    if (this.opt.schedule !== 'constant' && !this.opt.totalSteps) throw new Error(`optimizer.totalSteps is required by the '${this.opt.schedule}' schedule; set it or use schedule 'constant'`);
    this.client = o.client;
    this.modelId = o.modelId;
    this.model = o.model;
  }

  version(): number {
    return this.step;
  }

  private adam(lr: number): AdamParams {
    const o = this.opt;
    return { learning_rate: lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weight_decay: o.weightDecay, grad_clip_norm: o.gradClip };
  }

  /** Current-policy logprobs of every sample's tokens (NaN at position 0), from a gradient-free forward. */
  private async logprobs(mb: Sample[]): Promise<Float32Array[]> {
    const datums = mb.map((s) => datum(s.seq.ids.slice(0, -1), { target_tokens: tensor(s.seq.ids.slice(1), 'int64'), weights: tensor(new Float32Array(s.seq.ids.length - 1), 'float32') }));
    const out = await this.client.forward(this.modelId, datums, 'cross_entropy');
    return mb.map((s, i) => {
      const lp = new Float32Array(s.seq.ids.length).fill(Number.NaN);
      lp.set(readLogprobs(out.loss_fn_outputs[i], s.seq.ids.length - 1, i), 1);
      return lp;
    });
  }

  async train(minibatches: Sample[][], loss: LossConfigInput): Promise<TrainedStep> {
    const t0 = performance.now();
    if (minibatches.length === 0 || minibatches.some((mb) => mb.length === 0)) throw new Error('TinkerTrainer: every minibatch needs at least one sample');
    const plan = tinkerLossPlan(loss);
    checkSamples(minibatches);
    // Decoupled PPO: π_prox is the policy before this batch's updates, for every minibatch.
    const prox = plan.cfg.kind === 'decoupled_ppo' ? await Promise.all(minibatches.map((mb) => this.logprobs(mb))) : undefined;
    const per: Record<string, number>[] = [];
    for (const [m, mb] of minibatches.entries()) {
      const { datums, flat } = minibatchDatums(mb, plan, prox?.[m]);
      const out = await this.client.forwardBackward(this.modelId, datums, plan.lossFn, plan.lossFnConfig);
      if (out.loss_fn_outputs.length !== mb.length) throw new Error(`forward_backward answered ${out.loss_fn_outputs.length} outputs for ${mb.length} datums`);
      const lps = mb.map((s, i) => readLogprobs(out.loss_fn_outputs[i], s.seq.ids.length - 1, i));
      const lp = new Float32Array(flat.sample.length);
      for (let k = 0; k < lp.length; k++) lp[k] = lps[flat.sample[k]!]![flat.pos[k]! - 1]!;
      const pl = policyLoss({ logprobs: lp, oldLogprobs: flat.old, proxLogprobs: flat.prox, advantages: flat.adv, seqIds: flat.seqIds }, plan.cfg);
      const lr = lrAt(this.opt, this.step);
      const om = await this.client.optimStep(this.modelId, this.adam(lr));
      this.step++;
      const { entropy: _entropy, ...policyMetrics } = pl.metrics;
      per.push({
        ...policyMetrics, loss: pl.loss, gradNorm: om.grad_norm ?? Number.NaN, tokens: lp.length, version: this.step, lr,
        ...(out.metrics['loss:sum'] !== undefined ? { serviceLoss: out.metrics['loss:sum'] } : {}),
      });
    }
    const weights = await this.samplerWeights(`agentrl-v${this.step}`);
    return { version: this.step, weights, metrics: mergeMinibatchMetrics(per), busySeconds: (performance.now() - t0) / 1000 };
  }

  /**
   * Save the service's current weights for sampling and download them in the local layout (the
   * format of agentrl serve trainer: a safetensors file of agentrl's parameters, SAMPLER_WEIGHTS_FORMAT).
   */
  async samplerWeights(name: string): Promise<Float32Array> {
    const path = await this.client.saveWeightsForSampler(this.modelId, name);
    const url = await this.client.archiveUrl(path);
    const bytes = await this.client.download(url);
    let contents;
    try {
      contents = readSafetensors(bytes, url);
    } catch (e) {
      throw new Error(`sampler weights ${path} from ${url} are not a safetensors file (${(e as Error).message}); the local sampler needs agentrl serve trainer's weights download (the hosted service's archives hold PEFT adapters: sample on the service instead)`);
    }
    if (contents.metadata.format !== SAMPLER_WEIGHTS_FORMAT) {
      throw new Error(`sampler weights ${path} from ${url} have format '${contents.metadata.format ?? '(none)'}', expected '${SAMPLER_WEIGHTS_FORMAT}' (agentrl's parameters, LoRA merged)`);
    }
    const out = new Float32Array(this.model.numParams);
    tensorsToParams(this.model, contents.tensors, out, `sampler weights ${path}`);
    return out;
  }

  /** The service's weights before any step (version 0): publish them to the local sampler before the loop. */
  async initialWeights(): Promise<Float32Array> {
    return this.samplerWeights(`agentrl-v${this.step}`);
  }

  async close(): Promise<void> {
    await this.client.unloadModel(this.modelId).catch(() => undefined);
  }
}

function readLogprobs(rec: Record<string, { data: number[] }> | undefined, n: number, i: number): Float32Array {
  const lp = rec?.logprobs?.data;
  if (!lp || lp.length !== n) throw new Error(`forward_backward output ${i}: expected 'logprobs' with ${n} values (one per position), got ${lp ? lp.length : 'none'}`);
  return Float32Array.from(lp);
}

export interface TinkerTrainerContext {
  /** The local sampler's model (its parameter layout receives the downloaded weights). */
  model: { layout: readonly ParamView[]; numParams: number };
  /** The run's optimizer config (lr, betas, eps, weight decay, grad clip, schedule). */
  optimizer: z.input<typeof OptimizerConfigSchema>;
}

/**
 * Connect to the service, open a session and create the model to train. The caller publishes
 * `await trainer.initialWeights()` to its engine as version 0 before the loop (they are the
 * service's copy of the base model), and closes the trainer at the end.
 */
export async function createTinkerTrainer(section: TrainerServiceInput, ctx: TinkerTrainerContext): Promise<TinkerTrainer> {
  const r = TrainerServiceSchema.safeParse(section);
  if (!r.success) throw new Error(`invalid trainerService config: ${formatZodError(r.error, { schema: TrainerServiceSchema, prefix: 'trainerService' })}`);
  const s = r.data;
  const client = new TinkerClient({ url: s.url, apiKey: s.apiKey, requestTimeoutMs: s.requestTimeoutSeconds * 1000, futureTimeoutMs: s.futureTimeoutSeconds * 1000, maxRetries: s.maxRetries });
  let baseModel = s.baseModel;
  if (!baseModel) {
    const caps = await client.capabilities();
    baseModel = caps.supported_models.find((m) => m.model_name)?.model_name ?? undefined;
    if (!baseModel) throw new Error(`trainerService.baseModel: ${s.url} lists no models; set baseModel`);
  }
  const sessionId = await client.createSession();
  const lora: TinkerLoraConfig | null = s.lora ? { rank: s.lora.rank, seed: s.lora.seed, train_attn: s.lora.trainAttn, train_mlp: s.lora.trainMlp, train_unembed: false, ...(s.lora.alpha !== undefined ? { alpha: s.lora.alpha } : {}) } : null;
  const modelId = await client.createModel({ sessionId, baseModel, lora });
  return new TinkerTrainer({ client, modelId, model: ctx.model, optimizer: ctx.optimizer });
}

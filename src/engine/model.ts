/**
 * The built-in decoder-only transformer, written llm.c style: all parameters in one Float32Array
 * with named views, all activations preallocated per batch shape, one explicit forward and one
 * explicit backward that call the kernels of a `Backend` in order. Gradients are proven by the
 * whole-model gradient checks in test/model.test.ts and test/model-arch.test.ts.
 *
 * One block serves GPT-2 and the open-weight families (Llama, Qwen2, Qwen3; weights mapped in by
 * src/engine/hf-model.ts): x += proj(attn(rope(qknorm(qkv(norm(x)))))); x += proj(act(fc(norm(x)))),
 * with grouped-query attention (qkv rows [q | k | v], NH + 2·NKV heads of width headDim), an
 * interleaved-pair RoPE over precomputed (possibly scaled) frequencies, GELU or SwiGLU (fc rows
 * [gate | up]), optional biases and q/k norms, and a tied or separate output head.
 *
 * The network ends in per-token logprobs of given targets (and entropies): RL losses are functions of
 * those, so `backward(dLogp, dEnt)` is all the trainer needs.
 */
import { totalmem } from 'node:os';
import { z } from 'zod';
import type { Backend } from './backend.ts';
import { Rng } from '../core/rng.ts';
import { formatZodError } from '../core/config-errors.ts';
import { formatIndex } from './safetensors.ts';
import { ropeInvFreq } from './rope-freq.ts';

const posFinite = z.number().positive().finite();

/** RoPE frequency scaling, as in src/engine/arch.ts (`RopeScaling`). */
const RopeScalingSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('llama3'), factor: posFinite, lowFreqFactor: posFinite, highFreqFactor: posFinite, originalMaxPositions: z.number().int().min(1) }).strict(),
  z.object({ type: z.literal('linear'), factor: posFinite }).strict(),
]);

/**
 * The transformer's shape. The defaults describe the GPT-2-style model agentrl trains from scratch
 * (multi-head attention, GELU MLP, biases everywhere, tied head); the optional fields describe the
 * open-weight families (Llama, Qwen2, Qwen3: grouped-query attention, SwiGLU, no biases, q/k norms,
 * untied heads, scaled RoPE). Parsing fills nKvHead, headDim and intermediateSize in, so a parsed
 * config states every dimension.
 */
export const ModelConfigSchema = z.object({
  vocabSize: z.number().int().min(2),
  contextLength: z.number().int().min(2),
  nLayer: z.number().int().min(1),
  nHead: z.number().int().min(1),
  nEmbd: z.number().int().min(2),
  norm: z.enum(['layernorm', 'rmsnorm']).default('layernorm'),
  positions: z.enum(['learned', 'rope']).default('learned'),
  ropeBase: z.number().positive().finite().default(10000),
  mlpRatio: z.number().int().min(1).default(4),
  /** Init std of weight matrices (GPT-2: 0.02); residual projections are scaled by 1/sqrt(2·nLayer). 0 = all zeros. */
  initStd: z.number().min(0).finite().default(0.02),
  /** Key/value heads (grouped-query attention: q head h reads kv head ⌊h / (nHead/nKvHead)⌋). Default nHead. */
  nKvHead: z.number().int().min(1).optional(),
  /** Width of each attention head. Default nEmbd / nHead; may differ (Qwen3). */
  headDim: z.number().int().min(1).optional(),
  /** 'gelu': proj(gelu(fc(x))); 'swiglu': down(silu(gate(x))·up(x)), gate and up fused in one matrix. */
  mlp: z.enum(['gelu', 'swiglu']).default('gelu'),
  /** MLP hidden width. Default mlpRatio·nEmbd (when given, mlpRatio is ignored). */
  intermediateSize: z.number().int().min(1).optional(),
  /** The output head is the token embedding (no `lm_head.w`). */
  tiedEmbeddings: z.boolean().default(true),
  qkvBias: z.boolean().default(true),
  oBias: z.boolean().default(true),
  mlpBias: z.boolean().default(true),
  /** Per-head RMSNorm of q and k before RoPE (Qwen3), gains `attn.qnorm.w` / `attn.knorm.w` [headDim]. */
  qkNorm: z.boolean().default(false),
  /** Epsilon of every norm (layer norms and q/k norms). */
  normEps: z.number().positive().finite().default(1e-5),
  /** RoPE frequency scaling (llama3 or linear); null = plain θ_i = ropeBase^(−2i/headDim). */
  ropeScaling: RopeScalingSchema.nullable().default(null),
}).strict().superRefine((c, ctx) => {
  const issue = (path: string, message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
  if (c.headDim === undefined && c.nEmbd % c.nHead !== 0) {
    issue('nEmbd', `nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead}) (or set headDim)`);
  }
  if (c.nKvHead !== undefined && c.nHead % c.nKvHead !== 0) {
    issue('nKvHead', `nHead (${c.nHead}) must be divisible by nKvHead (${c.nKvHead}): each key/value head serves a whole group of query heads`);
  }
  if (c.positions === 'rope') {
    if (c.headDim !== undefined && c.headDim % 2 !== 0) issue('headDim', `rotary positions need an even head size; headDim = ${c.headDim}`);
    else if (c.headDim === undefined && (c.nEmbd / c.nHead) % 2 !== 0) issue('nHead', `rotary positions need an even head size; nEmbd/nHead = ${c.nEmbd / c.nHead}`);
  } else if (c.ropeScaling !== null) {
    issue('ropeScaling', `applies to rotary positions only, but positions is '${c.positions}'; remove it or set positions: 'rope'`);
  }
  if (c.ropeScaling?.type === 'llama3' && !(c.ropeScaling.highFreqFactor > c.ropeScaling.lowFreqFactor)) {
    issue('ropeScaling', `llama3 scaling needs highFreqFactor (${c.ropeScaling.highFreqFactor}) > lowFreqFactor (${c.ropeScaling.lowFreqFactor})`);
  }
}).transform((c) => ({
  ...c,
  nKvHead: c.nKvHead ?? c.nHead,
  headDim: c.headDim ?? c.nEmbd / c.nHead,
  intermediateSize: c.intermediateSize ?? c.mlpRatio * c.nEmbd,
}));
export type ModelConfigInput = z.input<typeof ModelConfigSchema>;
export type ModelConfig = z.output<typeof ModelConfigSchema>;

/**
 * Parse a model config, throwing an error that names the field and the fix. Unknown keys are
 * errors that name the closest valid key (`model.position: unknown key (did you mean 'positions'?)`).
 */
export function parseModelConfig(input: unknown): ModelConfig {
  const r = ModelConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid model config: ${formatZodError(r.error, { schema: ModelConfigSchema, prefix: 'model' })}`);
  return r.data;
}

/** Where a value of a parameter-layout buffer is not finite. */
export interface NonFiniteValue {
  /** Parameter name (e.g. 'h0.attn.qkv.w'). */
  name: string;
  /** Flat index inside that parameter. */
  index: number;
  value: number;
}

/** The first NaN/±Infinity in `buf` (laid out as `layout`), or null when every value is finite. */
export function findNonFinite(buf: Float32Array, layout: readonly ParamView[]): NonFiniteValue | null {
  for (const v of layout) {
    for (let i = v.offset, e = v.offset + v.size; i < e; i++) {
      const x = buf[i]!;
      if (x - x !== 0) return { name: v.name, index: i - v.offset, value: x }; // NaN and ±Infinity
    }
  }
  return null;
}

/** 'parameter 'wte' holds NaN at [3, 1]' for messages. */
export function describeNonFinite(f: NonFiniteValue, shape?: readonly number[]): string {
  return `parameter '${f.name}' holds ${f.value} at ${shape ? formatIndex(f.index, shape) : `index ${f.index}`}`;
}

export interface ParamView {
  name: string;
  offset: number;
  shape: number[];
  size: number;
  /** Weight decay applies to matrices (and embeddings), not to biases or norm gains (nanoGPT convention). */
  decay: boolean;
}

interface LayerParams {
  ln1w: Float32Array; ln1b: Float32Array;
  qkvw: Float32Array; qkvb: Float32Array;
  qnormw: Float32Array; knormw: Float32Array;
  projw: Float32Array; projb: Float32Array;
  ln2w: Float32Array; ln2b: Float32Array;
  fcw: Float32Array; fcb: Float32Array;
  fcprojw: Float32Array; fcprojb: Float32Array;
}
interface Params {
  wte: Float32Array;
  wpe: Float32Array | null;
  layers: LayerParams[];
  lnfw: Float32Array; lnfb: Float32Array;
  /** The output head [V, C]: `lm_head.w`, or wte when tied. */
  head: Float32Array;
}

/** Derived widths of a config, named once. */
export interface ModelDims {
  C: number; V: number; NH: number; NKV: number; hd: number;
  /** Attention output width NH·hd (the input of attn.proj). */
  AD: number;
  /** Width of a key or value row, NKV·hd (a KV-cache row). */
  KVD: number;
  /** Width of a qkv row, (NH + 2·NKV)·hd: [q | k | v]. */
  QKV: number;
  /** MLP hidden width. */
  I: number;
  /** Width of the fc output: 2I for SwiGLU ([gate | up]), I for GELU. */
  F: number;
}

export function modelDims(c: ModelConfig): ModelDims {
  const hd = c.headDim, NH = c.nHead, NKV = c.nKvHead, I = c.intermediateSize;
  return { C: c.nEmbd, V: c.vocabSize, NH, NKV, hd, AD: NH * hd, KVD: NKV * hd, QKV: (NH + 2 * NKV) * hd, I, F: c.mlp === 'swiglu' ? 2 * I : I };
}

/**
 * Compute the parameter layout of a config (names, shapes, offsets into the flat buffer). The
 * defaults give the original GPT-2 layout, unchanged: optional tensors (q/k norms, lm_head) only
 * appear when their feature is on, and biases disappear only when turned off.
 */
export function paramLayout(c: ModelConfig): ParamView[] {
  const { C, V, hd, AD, QKV, I, F } = modelDims(c);
  const views: ParamView[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], decay: boolean) => {
    const size = shape.reduce((a, b) => a * b, 1);
    views.push({ name, offset, shape, size, decay });
    offset += size;
  };
  const normBias = c.norm === 'layernorm';
  add('wte', [V, C], true);
  if (c.positions === 'learned') add('wpe', [c.contextLength, C], true);
  for (let l = 0; l < c.nLayer; l++) {
    add(`h${l}.ln1.w`, [C], false);
    if (normBias) add(`h${l}.ln1.b`, [C], false);
    add(`h${l}.attn.qkv.w`, [QKV, C], true);
    if (c.qkvBias) add(`h${l}.attn.qkv.b`, [QKV], false);
    if (c.qkNorm) {
      add(`h${l}.attn.qnorm.w`, [hd], false);
      add(`h${l}.attn.knorm.w`, [hd], false);
    }
    add(`h${l}.attn.proj.w`, [C, AD], true);
    if (c.oBias) add(`h${l}.attn.proj.b`, [C], false);
    add(`h${l}.ln2.w`, [C], false);
    if (normBias) add(`h${l}.ln2.b`, [C], false);
    add(`h${l}.mlp.fc.w`, [F, C], true); // SwiGLU: rows [gate | up], one GEMM
    if (c.mlpBias) add(`h${l}.mlp.fc.b`, [F], false);
    add(`h${l}.mlp.proj.w`, [C, I], true);
    if (c.mlpBias) add(`h${l}.mlp.proj.b`, [C], false);
  }
  add('lnf.w', [C], false);
  if (normBias) add('lnf.b', [C], false);
  if (!c.tiedEmbeddings) add('lm_head.w', [V, C], true);
  return views;
}

const EMPTY = new Float32Array(0);

function bindParams(buf: Float32Array, layout: ParamView[], c: ModelConfig): Params {
  const byName = new Map(layout.map((v) => [v.name, buf.subarray(v.offset, v.offset + v.size)]));
  const get = (n: string) => byName.get(n) ?? EMPTY;
  const layers: LayerParams[] = [];
  for (let l = 0; l < c.nLayer; l++) {
    layers.push({
      ln1w: get(`h${l}.ln1.w`), ln1b: get(`h${l}.ln1.b`),
      qkvw: get(`h${l}.attn.qkv.w`), qkvb: get(`h${l}.attn.qkv.b`),
      qnormw: get(`h${l}.attn.qnorm.w`), knormw: get(`h${l}.attn.knorm.w`),
      projw: get(`h${l}.attn.proj.w`), projb: get(`h${l}.attn.proj.b`),
      ln2w: get(`h${l}.ln2.w`), ln2b: get(`h${l}.ln2.b`),
      fcw: get(`h${l}.mlp.fc.w`), fcb: get(`h${l}.mlp.fc.b`),
      fcprojw: get(`h${l}.mlp.proj.w`), fcprojb: get(`h${l}.mlp.proj.b`),
    });
  }
  const wte = get('wte');
  return { wte, wpe: byName.get('wpe') ?? null, layers, lnfw: get('lnf.w'), lnfb: get('lnf.b'), head: c.tiedEmbeddings ? wte : get('lm_head.w') };
}

/** Activations saved by one layer's forward for its backward. */
interface LayerActs {
  ln1: Float32Array; ln1Mean: Float32Array; ln1Rstd: Float32Array;
  /** q/k heads before their norms, and the norms' rstd (qkNorm only). */
  qIn: Float32Array; qRstd: Float32Array; kIn: Float32Array; kRstd: Float32Array;
  qkv: Float32Array; atty: Float32Array; lse: Float32Array;
  attproj: Float32Array; res2: Float32Array;
  ln2: Float32Array; ln2Mean: Float32Array; ln2Rstd: Float32Array;
  fch: Float32Array; fchAct: Float32Array; fcproj: Float32Array; res3: Float32Array;
}

/** All buffers for one (B, T) shape; reused across steps. */
class Workspace {
  readonly encoded: Float32Array;
  readonly layers: LayerActs[] = [];
  readonly lnf: Float32Array; readonly lnfMean: Float32Array; readonly lnfRstd: Float32Array;
  readonly logits: Float32Array;
  readonly logprobs: Float32Array; readonly entropy: Float32Array;
  // gradient scratch
  readonly dres: Float32Array; readonly dln: Float32Array; readonly dqkv: Float32Array;
  readonly datty: Float32Array; readonly dfch: Float32Array; readonly dfchAct: Float32Array;
  readonly pos0: Int32Array;

  constructor(readonly B: number, readonly T: number, c: ModelConfig) {
    const N = B * T, { C, V, NH, NKV, AD, KVD, QKV, I, F } = modelDims(c);
    const f = (n: number) => new Float32Array(n);
    const qk = (n: number) => (c.qkNorm ? f(n) : EMPTY);
    this.encoded = f(N * C);
    for (let l = 0; l < c.nLayer; l++) {
      this.layers.push({
        ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N),
        qIn: qk(N * AD), qRstd: qk(N * NH), kIn: qk(N * KVD), kRstd: qk(N * NKV),
        qkv: f(N * QKV), atty: f(N * AD), lse: f(B * NH * T),
        attproj: f(N * C), res2: f(N * C),
        ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
        fch: f(N * F), fchAct: f(N * I), fcproj: f(N * C), res3: f(N * C),
      });
    }
    this.lnf = f(N * C); this.lnfMean = f(N); this.lnfRstd = f(N);
    this.logits = f(N * V);
    this.logprobs = f(N); this.entropy = f(N);
    this.dres = f(N * C); this.dln = f(N * C); this.dqkv = f(N * QKV);
    this.datty = f(N * AD); this.dfch = f(N * F); this.dfchAct = f(N * I);
    this.pos0 = new Int32Array(B);
  }

  /** Bytes of every typed array held here and in `layers`. */
  bytes(): number {
    let n = 0;
    for (const holder of [this, ...this.layers]) {
      for (const v of Object.values(holder)) if (ArrayBuffer.isView(v)) n += v.byteLength;
    }
    return n;
  }
}

/** Input of a training/scoring forward pass: B rows of T tokens, right-padded. */
export interface ForwardBatch {
  B: number;
  T: number;
  /** [B*T] input token ids (padding may be any valid id, e.g. 0). */
  tokens: Int32Array;
  /** [B*T] the id to score at each position (normally the next token); -1 = not scored. */
  targets: Int32Array;
  /** Optional [B*T*V] allowed-token masks (constrained decoding), 1 = allowed. */
  masks?: Uint8Array | null;
  /** Sampling temperature the logprobs are computed under (default 1). */
  temperature?: number;
}

export interface ForwardResult {
  /** [B*T] logprob of targets under the tempered, masked distribution (0 where target < 0). */
  logprobs: Float32Array;
  /** [B*T] entropy of that distribution (0 where target < 0). */
  entropy: Float32Array;
}

/** The rotary inverse frequencies of a config (headDim/2 of them), or null with learned positions. */
export function modelInvFreq(c: ModelConfig): Float64Array | null {
  if (c.positions !== 'rope') return null;
  return ropeInvFreq({ positions: 'rope', headDim: c.headDim, ropeTheta: c.ropeBase, ropeScaling: c.ropeScaling });
}

/**
 * Takes over the weight gradients of the linear layers (LoRA): the model then treats every weight as
 * frozen — it skips the weight-gradient GEMMs, the output head's and the embedding's — and hands each
 * linear layer's input X [N, in] and output gradient dY [N, out] to `linear`, from which low-rank
 * adapters get their gradients at a fraction of dW's cost. Norm gains and biases still accumulate
 * into `grads` (cheap, and ignored by such a trainer).
 */
export interface WeightGradDelegate {
  /** `param` is the weight's name (e.g. 'h3.attn.qkv.w'); rows of dY are strided by ldY, rows of X by ldX. */
  linear(param: string, dY: Float32Array, ldY: number, X: Float32Array, ldX: number, N: number): void;
}

/**
 * Refuse a model whose weights and gradients (4 + 4 bytes per parameter, before AdamW's 8 more and
 * the activations) cannot fit in this machine's memory, before allocating anything: a typo such as
 * nEmbd: 64000 would otherwise die in an allocation error (or the OOM killer) far from its cause.
 */
export function checkModelFits(numParams: number, c: ModelConfig, totalBytes = totalmem()): void {
  const need = numParams * 8;
  if (!Number.isSafeInteger(numParams) || numParams > 2 ** 32 - 1 || need > totalBytes) {
    const gib = (b: number) => (b / 2 ** 30).toFixed(1);
    throw new Error(
      `model: ${numParams.toExponential(2)} parameters (vocabSize ${c.vocabSize}, nLayer ${c.nLayer}, nEmbd ${c.nEmbd}, intermediateSize ${c.intermediateSize}) need ${gib(need)} GiB for weights and gradients alone ` +
        `(training adds as much again for AdamW's moments); this machine has ${gib(totalBytes)} GiB${numParams > 2 ** 32 - 1 ? ' and one buffer holds at most 2^32 − 1 floats' : ''}. Make model.nEmbd or model.nLayer smaller.`,
    );
  }
}

export class Transformer {
  readonly config: ModelConfig;
  readonly dims: ModelDims;
  readonly layout: ParamView[];
  readonly numParams: number;
  /** All parameters, one contiguous buffer. */
  readonly params: Float32Array;
  /** Gradients, same layout. */
  readonly grads: Float32Array;
  private readonly p: Params;
  private readonly g: Params;
  /** RoPE inverse frequencies, computed once (null with learned positions). */
  private readonly invFreq: Float64Array | null;
  private ws: Workspace | null = null;
  /** When set, weights are frozen and linear layers' gradients go to the delegate (see WeightGradDelegate). */
  weightGradDelegate: WeightGradDelegate | null = null;
  private last: { batch: ForwardBatch; ws: Workspace; invTemp: number } | null = null;

  constructor(config: ModelConfigInput, readonly backend: Backend, seed = 0) {
    this.config = parseModelConfig(config);
    this.dims = modelDims(this.config);
    this.layout = paramLayout(this.config);
    const last = this.layout[this.layout.length - 1]!;
    this.numParams = last.offset + last.size;
    checkModelFits(this.numParams, this.config);
    this.params = new Float32Array(this.numParams);
    this.grads = new Float32Array(this.numParams);
    this.p = bindParams(this.params, this.layout, this.config);
    this.g = bindParams(this.grads, this.layout, this.config);
    this.invFreq = modelInvFreq(this.config);
    this.init(seed);
  }

  /** GPT-2 initialisation: N(0, std) matrices, residual projections scaled by 1/sqrt(2L), zero biases, unit gains. */
  init(seed: number): void {
    const rng = new Rng(seed);
    const c = this.config;
    for (const v of this.layout) {
      const view = this.params.subarray(v.offset, v.offset + v.size);
      if (v.shape.length === 1) {
        view.fill(/(ln\d|lnf|norm)\.w$/.test(v.name) ? 1 : 0);
      } else {
        const std = /(attn\.proj|mlp\.proj)\.w$/.test(v.name) ? c.initStd / Math.sqrt(2 * c.nLayer) : c.initStd;
        if (std === 0) view.fill(0); // loaded models start here: skip drawing millions of normals
        else for (let i = 0; i < view.length; i++) view[i] = rng.normal() * std;
      }
    }
  }

  view(buf: Float32Array, name: string): Float32Array {
    const v = this.layout.find((x) => x.name === name);
    if (!v) throw new Error(`unknown parameter '${name}'`);
    return buf.subarray(v.offset, v.offset + v.size);
  }

  zeroGrad(): void {
    this.grads.fill(0);
  }

  /**
   * Bytes of the activation and gradient buffers a forward + backward of B rows × T tokens keeps
   * (allocated here as `forward` would, and reused by it). Linear in T: attention saves one
   * log-sum-exp per row and head, never a T×T matrix. During a call the native attention kernels add
   * a transient scratch of at most (2·64 + 2·headSize)·T floats per thread, also linear in T.
   */
  activationBytes(B: number, T: number): number {
    return this.workspace(B, T).bytes();
  }

  private workspace(B: number, T: number): Workspace {
    if (!this.ws || this.ws.B !== B || this.ws.T !== T) this.ws = new Workspace(B, T, this.config);
    return this.ws;
  }

  /** Validate a batch against the model; every error names the problem. */
  private check(b: ForwardBatch): void {
    const c = this.config, N = b.B * b.T;
    if (!Number.isInteger(b.B) || !Number.isInteger(b.T) || b.B < 1 || b.T < 1) throw new Error(`forward: B and T must be positive integers (got B=${b.B}, T=${b.T})`);
    if (b.T > c.contextLength) throw new Error(`forward: sequence length T=${b.T} exceeds the model's contextLength ${c.contextLength}`);
    if (b.tokens.length !== N) throw new Error(`forward: tokens has length ${b.tokens.length}, expected B*T = ${N}`);
    if (b.targets.length !== N) throw new Error(`forward: targets has length ${b.targets.length}, expected B*T = ${N}`);
    if (b.masks && b.masks.length !== N * c.vocabSize) throw new Error(`forward: masks has length ${b.masks.length}, expected B*T*V = ${N * c.vocabSize}`);
    for (let i = 0; i < N; i++) {
      const t = b.tokens[i]!;
      if (t < 0 || t >= c.vocabSize) throw new Error(`forward: token id ${t} at position ${i} is outside the vocabulary [0, ${c.vocabSize})`);
      const y = b.targets[i]!;
      if (y >= c.vocabSize) throw new Error(`forward: target id ${y} at position ${i} is outside the vocabulary [0, ${c.vocabSize})`);
    }
    const temp = b.temperature ?? 1;
    if (!(temp > 0) || !Number.isFinite(temp)) throw new Error(`forward: temperature must be a positive finite number (got ${temp})`);
  }

  /** Forward pass; saves activations for `backward`. */
  forward(batch: ForwardBatch): ForwardResult {
    this.check(batch);
    const { B, T } = batch;
    const be = this.backend, p = this.p;
    const N = B * T, { C, V } = this.dims;
    const ws = this.workspace(B, T);
    be.embedForward(ws.encoded, batch.tokens, p.wte, p.wpe, B, T, C);
    const x = this.blocksForward(ws, B, T);
    this.norm(ws.lnf, ws.lnfMean, ws.lnfRstd, x, p.lnfw, p.lnfb, N);
    // Output head: logits = lnf · headᵀ (head = wte when tied).
    be.sgemm(false, true, N, V, C, 1, ws.lnf, C, p.head, C, 0, ws.logits, V);
    const invTemp = 1 / (batch.temperature ?? 1);
    be.logSoftmaxForward(ws.logprobs, ws.entropy, ws.logits, batch.targets, batch.masks ?? null, N, V, invTemp);
    this.checkScores(batch, ws, invTemp);
    this.last = { batch, ws, invTemp };
    return { logprobs: ws.logprobs, entropy: ws.entropy };
  }

  /** The first NaN/±Infinity among the weights, or null when all are finite. */
  nonFiniteParam(): NonFiniteValue | null {
    return findNonFinite(this.params, this.layout);
  }

  /** Throws, naming the parameter, when a weight is NaN/±Infinity; `what` starts the message. */
  assertFiniteParams(what: string): void {
    const bad = this.nonFiniteParam();
    if (bad) throw new Error(`${what}: the model's weights are not finite: ${describeNonFinite(bad, this.layout.find((v) => v.name === bad.name)?.shape)}. They were corrupted (a diverged update, or weights loaded without checks); restore a good checkpoint.`);
  }

  /**
   * Kernels give a NaN logprob/entropy for a row with a NaN or infinite logit (a row whose
   * allowed tokens are all masked gives -∞ and 0 instead, and a forbidden target -∞): say which of
   * weights or activations is at fault, instead of letting it surface later as a masking error.
   */
  private checkScores(b: ForwardBatch, ws: Workspace, invTemp: number): void {
    const N = b.B * b.T, V = this.config.vocabSize;
    for (let i = 0; i < N; i++) {
      if (b.targets[i]! < 0) continue;
      const lp = ws.logprobs[i]!, h = ws.entropy[i]!;
      if (lp === lp && h === h && lp !== Infinity) continue;
      this.assertFiniteParams('forward');
      const row = ws.logits.subarray(i * V, (i + 1) * V);
      let v = 0;
      while (v < V && Number.isFinite(row[v]! * invTemp)) v++;
      const what = v < V ? `logit of token ${v} is ${row[v]! * invTemp}` : `logprob is ${lp}, entropy ${h}`;
      throw new Error(`forward: row ${Math.floor(i / b.T)}, position ${i % b.T}: the tempered ${what} although every weight is finite: the activations overflowed (temperature ${1 / invTemp}; a too-large learning rate or initStd?)`);
    }
  }

  /**
   * q/k of qkv rows [N, QKV] made ready for attention, in place: per-head RMSNorm (qkNorm), then
   * rotary positions (row b's token t at pos0[b] + t). `saved` receives what the norms' backward needs.
   */
  private prepareQk(qkv: Float32Array, w: LayerParams, saved: { qIn: Float32Array; qRstd: Float32Array; kIn: Float32Array; kRstd: Float32Array }, pos0: Int32Array, B: number, T: number): void {
    const c = this.config, be = this.backend, { NH, NKV, hd, AD, QKV } = this.dims, N = B * T;
    if (c.qkNorm) {
      be.headRmsnormForward(qkv, saved.qIn, saved.qRstd, w.qnormw, N, QKV, NH, hd, c.normEps);
      be.headRmsnormForward(qkv.subarray(AD), saved.kIn, saved.kRstd, w.knormw, N, QKV, NKV, hd, c.normEps);
    }
    // q and k heads are adjacent at the start of each row: rotate NH + NKV heads at once.
    if (this.invFreq) be.ropeFreqs(qkv, QKV, pos0, B, T, NH + NKV, hd, this.invFreq, false);
  }

  /**
   * The transformer blocks over ws.encoded (B rows of T tokens, positions from 0); saves every
   * layer's activations in ws and returns the last residual stream. `onQkv` sees each layer's qkv
   * (after the q/k norms and rotary) — prefill uses it to fill the KV cache.
   */
  private blocksForward(ws: Workspace, B: number, T: number, onQkv?: (layer: number, qkv: Float32Array) => void): Float32Array {
    const c = this.config, be = this.backend, p = this.p;
    const N = B * T, { C, NH, NKV, hd, AD, QKV, I, F } = this.dims;
    ws.pos0.fill(0);
    let x = ws.encoded;
    for (let l = 0; l < c.nLayer; l++) {
      const w = p.layers[l]!, a = ws.layers[l]!;
      this.norm(a.ln1, a.ln1Mean, a.ln1Rstd, x, w.ln1w, w.ln1b, N);
      be.sgemm(false, true, N, QKV, C, 1, a.ln1, C, w.qkvw, C, 0, a.qkv, QKV);
      if (c.qkvBias) be.addBias(a.qkv, w.qkvb, N, QKV);
      this.prepareQk(a.qkv, w, a, ws.pos0, B, T);
      onQkv?.(l, a.qkv);
      be.gqaAttentionForward(a.atty, a.lse, a.qkv, B, T, NH, NKV, hd);
      be.sgemm(false, true, N, C, AD, 1, a.atty, AD, w.projw, AD, 0, a.attproj, C);
      if (c.oBias) be.addBias(a.attproj, w.projb, N, C);
      be.add(a.res2, x, a.attproj, N * C);
      this.norm(a.ln2, a.ln2Mean, a.ln2Rstd, a.res2, w.ln2w, w.ln2b, N);
      be.sgemm(false, true, N, F, C, 1, a.ln2, C, w.fcw, C, 0, a.fch, F);
      if (c.mlpBias) be.addBias(a.fch, w.fcb, N, F);
      this.activation(a.fchAct, a.fch, N);
      be.sgemm(false, true, N, C, I, 1, a.fchAct, I, w.fcprojw, I, 0, a.fcproj, C);
      if (c.mlpBias) be.addBias(a.fcproj, w.fcprojb, N, C);
      be.add(a.res3, a.res2, a.fcproj, N * C);
      x = a.res3;
    }
    return x;
  }

  /** MLP nonlinearity: fch [N, F] → out [N, I]. */
  private activation(out: Float32Array, fch: Float32Array, N: number): void {
    const I = this.dims.I;
    if (this.config.mlp === 'swiglu') this.backend.swigluForward(out, fch, N, I);
    else this.backend.geluForward(out, fch, N * I);
  }

  /**
   * Backward from per-token gradients of the loss w.r.t. the logprobs and entropies returned by the
   * last `forward`. Accumulates into `grads` (call zeroGrad once per optimizer step).
   */
  backward(dLogp: Float32Array, dEnt: Float32Array): void {
    if (!this.last) throw new Error('backward: call forward first');
    const { batch, ws, invTemp } = this.last;
    const { B, T } = batch;
    const c = this.config, be = this.backend, p = this.p, g = this.g;
    const N = B * T, { C, V, NH, NKV, hd, AD, QKV, I, F } = this.dims;
    if (dLogp.length !== N || dEnt.length !== N) throw new Error(`backward: dLogp/dEnt must have length B*T = ${N} (got ${dLogp.length}/${dEnt.length})`);
    // The logits buffer becomes dlogits in place (the forward's logits are not needed afterwards).
    const dlogits = ws.logits;
    be.logSoftmaxBackward(dlogits, ws.logits, batch.targets, batch.masks ?? null, dLogp, dEnt, N, V, invTemp);
    be.sgemm(false, false, N, C, V, 1, dlogits, V, p.head, C, 0, ws.dln, C);
    const delegate = this.weightGradDelegate;
    if (!delegate) be.sgemm(true, false, V, C, N, 1, dlogits, V, ws.lnf, C, 1, g.head, C);
    // dW += dYᵀ·X for a linear layer's weight, or the layer's X and dY to the delegate.
    const weightGrad = (name: string, out: number, inp: number, dY: Float32Array, X: Float32Array, gW: Float32Array) => {
      if (delegate) delegate.linear(name, dY, out, X, inp, N);
      else be.sgemm(true, false, out, inp, N, 1, dY, out, X, inp, 1, gW, inp);
    };
    const lastX = c.nLayer > 0 ? ws.layers[c.nLayer - 1]!.res3 : ws.encoded;
    ws.dres.fill(0);
    this.normBackward(ws.dres, g.lnfw, g.lnfb, ws.dln, lastX, p.lnfw, ws.lnfMean, ws.lnfRstd, N);
    for (let l = c.nLayer - 1; l >= 0; l--) {
      const w = p.layers[l]!, gw = g.layers[l]!, a = ws.layers[l]!;
      const x = l === 0 ? ws.encoded : ws.layers[l - 1]!.res3;
      // res3 = res2 + proj(act(fc(ln2(res2))))
      if (c.mlpBias) be.biasBackward(gw.fcprojb, ws.dres, N, C);
      weightGrad(`h${l}.mlp.proj.w`, C, I, ws.dres, a.fchAct, gw.fcprojw);
      be.sgemm(false, false, N, I, C, 1, ws.dres, C, w.fcprojw, I, 0, ws.dfchAct, I);
      ws.dfch.fill(0);
      if (c.mlp === 'swiglu') be.swigluBackward(ws.dfch, a.fch, ws.dfchAct, N, I);
      else be.geluBackward(ws.dfch, a.fch, ws.dfchAct, N * I);
      if (c.mlpBias) be.biasBackward(gw.fcb, ws.dfch, N, F);
      weightGrad(`h${l}.mlp.fc.w`, F, C, ws.dfch, a.ln2, gw.fcw);
      be.sgemm(false, false, N, C, F, 1, ws.dfch, F, w.fcw, C, 0, ws.dln, C);
      this.normBackward(ws.dres, gw.ln2w, gw.ln2b, ws.dln, a.res2, w.ln2w, a.ln2Mean, a.ln2Rstd, N);
      // res2 = x + proj(attn(rope(qknorm(qkv(ln1(x))))))
      if (c.oBias) be.biasBackward(gw.projb, ws.dres, N, C);
      weightGrad(`h${l}.attn.proj.w`, C, AD, ws.dres, a.atty, gw.projw);
      be.sgemm(false, false, N, AD, C, 1, ws.dres, C, w.projw, AD, 0, ws.datty, AD);
      ws.dqkv.fill(0);
      be.gqaAttentionBackward(ws.dqkv, ws.datty, a.qkv, a.lse, B, T, NH, NKV, hd);
      if (this.invFreq) be.ropeFreqs(ws.dqkv, QKV, ws.pos0, B, T, NH + NKV, hd, this.invFreq, true);
      if (c.qkNorm) {
        be.headRmsnormBackward(ws.dqkv, gw.qnormw, a.qIn, w.qnormw, a.qRstd, N, QKV, NH, hd);
        be.headRmsnormBackward(ws.dqkv.subarray(AD), gw.knormw, a.kIn, w.knormw, a.kRstd, N, QKV, NKV, hd);
      }
      if (c.qkvBias) be.biasBackward(gw.qkvb, ws.dqkv, N, QKV);
      weightGrad(`h${l}.attn.qkv.w`, QKV, C, ws.dqkv, a.ln1, gw.qkvw);
      be.sgemm(false, false, N, C, QKV, 1, ws.dqkv, QKV, w.qkvw, C, 0, ws.dln, C);
      this.normBackward(ws.dres, gw.ln1w, gw.ln1b, ws.dln, x, w.ln1w, a.ln1Mean, a.ln1Rstd, N);
    }
    if (!delegate) be.embedBackward(g.wte, g.wpe, ws.dres, batch.tokens, B, T, C);
    this.last = null; // logits were overwritten: a second backward would be wrong
  }

  private norm(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, w: Float32Array, b: Float32Array, N: number): void {
    const c = this.config;
    if (c.norm === 'layernorm') this.backend.layernormForward(out, mean, rstd, inp, w, b, N, c.nEmbd, c.normEps);
    else this.backend.rmsnormForward(out, rstd, inp, w, N, c.nEmbd, c.normEps);
  }

  private normBackward(dinp: Float32Array, dw: Float32Array, db: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array, mean: Float32Array, rstd: Float32Array, N: number): void {
    if (this.config.norm === 'layernorm') this.backend.layernormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, this.config.nEmbd);
    else this.backend.rmsnormBackward(dinp, dw, dout, inp, w, rstd, N, this.config.nEmbd);
  }

  // ---- Incremental decoding with a KV cache -------------------------------------------------

  /** Allocate a KV cache with `slots` rows of up to contextLength tokens. */
  newKVCache(slots: number): KVCache {
    return new KVCache(this.config, slots);
  }

  /**
   * Run `tokens` (a whole prefix) through the model for cache slot `slot`, overwriting that slot's
   * cache, and return the logits [V] of the last position.
   */
  prefill(cache: KVCache, slot: number, tokens: readonly number[]): Float32Array {
    const c = this.config, be = this.backend, p = this.p;
    const T = tokens.length, { C, V, AD, KVD, QKV } = this.dims;
    if (T < 1) throw new Error('prefill: empty prompt');
    if (T > c.contextLength) throw new Error(`prefill: ${T} tokens exceed the model's contextLength ${c.contextLength}`);
    if (!Number.isInteger(slot) || slot < 0 || slot >= cache.slots) throw new Error(`prefill: slot ${slot} is outside the cache's [0, ${cache.slots})`);
    const ids = Int32Array.from(tokens);
    for (let i = 0; i < T; i++) if (ids[i]! < 0 || ids[i]! >= V) throw new Error(`prefill: token id ${ids[i]} at position ${i} is outside the vocabulary [0, ${V})`);
    const ws = this.workspace(1, T);
    be.embedForward(ws.encoded, ids, p.wte, p.wpe, 1, T, C);
    const base = slot * c.contextLength * KVD;
    const x = this.blocksForward(ws, 1, T, (l, qkv) => {
      // Keep this prefix's keys and values (after q/k norms and rotary) in the slot's cache.
      const kc = cache.k[l]!, vc = cache.v[l]!;
      for (let t = 0; t < T; t++) {
        const row = t * QKV + AD;
        kc.set(qkv.subarray(row, row + KVD), base + t * KVD);
        vc.set(qkv.subarray(row + KVD, row + 2 * KVD), base + t * KVD);
      }
    });
    cache.lens[slot] = T;
    // Only the last position's logits are needed.
    const lastRow = x.subarray((T - 1) * C, T * C);
    const lnf = ws.lnf.subarray(0, C);
    this.norm(lnf, ws.lnfMean, ws.lnfRstd, lastRow, p.lnfw, p.lnfb, 1);
    const logits = new Float32Array(V);
    be.sgemm(false, true, 1, V, C, 1, lnf, C, p.head, C, 0, logits, V);
    this.last = null;
    return logits;
  }

  /**
   * One decoding step for cache slots [0, n): appends tokens[b] at position cache.lens[b] of slot b
   * and returns logits [n, V] (a view into the cache's scratch, valid until the next call).
   */
  decode(cache: KVCache, tokens: Int32Array, n: number): Float32Array {
    const c = this.config, be = this.backend, p = this.p, s = cache.scratch;
    const { C, V, NH, NKV, hd, AD, KVD, QKV, I, F } = this.dims, maxT = c.contextLength;
    if (n > cache.slots) throw new Error(`decode: ${n} rows exceed the cache's ${cache.slots} slots`);
    for (let b = 0; b < n; b++) {
      const tok = tokens[b]!, pos = cache.lens[b]!;
      if (tok < 0 || tok >= V) throw new Error(`decode: token id ${tok} in row ${b} is outside the vocabulary [0, ${V})`);
      if (pos >= maxT) throw new Error(`decode: row ${b} is full (${pos} tokens = contextLength)`);
      s.x.set(p.wte.subarray(tok * C, tok * C + C), b * C);
      if (p.wpe) {
        const xr = s.x.subarray(b * C, b * C + C), pe = p.wpe.subarray(pos * C, pos * C + C);
        for (let i = 0; i < C; i++) xr[i] += pe[i]!;
      }
    }
    const x = s.x.subarray(0, n * C), xn = s.xn.subarray(0, n * C), qkv = s.qkv.subarray(0, n * QKV);
    const q = s.q.subarray(0, n * AD), y = s.y.subarray(0, n * AD), h = s.h.subarray(0, n * F), hg = s.hg.subarray(0, n * I);
    const lens = cache.lens.subarray(0, n), newLens = s.newLens.subarray(0, n);
    const qkSaved = { qIn: s.qIn, qRstd: s.qRstd, kIn: s.kIn, kRstd: s.kRstd };
    for (let l = 0; l < c.nLayer; l++) {
      const w = p.layers[l]!;
      this.norm(xn, s.mean, s.rstd, x, w.ln1w, w.ln1b, n);
      be.sgemm(false, true, n, QKV, C, 1, xn, C, w.qkvw, C, 0, qkv, QKV);
      if (c.qkvBias) be.addBias(qkv, w.qkvb, n, QKV);
      this.prepareQk(qkv, w, qkSaved, lens, n, 1); // row b's new token sits at position lens[b]
      const kc = cache.k[l]!, vc = cache.v[l]!;
      for (let b = 0; b < n; b++) {
        const dst = (b * maxT + lens[b]!) * KVD, src = b * QKV;
        q.set(qkv.subarray(src, src + AD), b * AD);
        kc.set(qkv.subarray(src + AD, src + AD + KVD), dst);
        vc.set(qkv.subarray(src + AD + KVD, src + AD + 2 * KVD), dst);
        newLens[b] = lens[b]! + 1;
      }
      be.gqaAttentionDecode(y, q, kc, vc, newLens, n, NH, NKV, hd, maxT);
      be.sgemm(false, true, n, C, AD, 1, y, AD, w.projw, AD, 0, xn, C);
      if (c.oBias) be.addBias(xn, w.projb, n, C);
      be.add(x, x, xn, n * C);
      this.norm(xn, s.mean, s.rstd, x, w.ln2w, w.ln2b, n);
      be.sgemm(false, true, n, F, C, 1, xn, C, w.fcw, C, 0, h, F);
      if (c.mlpBias) be.addBias(h, w.fcb, n, F);
      this.activation(hg, h, n);
      be.sgemm(false, true, n, C, I, 1, hg, I, w.fcprojw, I, 0, xn, C);
      if (c.mlpBias) be.addBias(xn, w.fcprojb, n, C);
      be.add(x, x, xn, n * C);
    }
    for (let b = 0; b < n; b++) lens[b] = lens[b]! + 1;
    this.norm(xn, s.mean, s.rstd, x, p.lnfw, p.lnfb, n);
    const logits = s.logits.subarray(0, n * V);
    be.sgemm(false, true, n, V, C, 1, xn, C, p.head, C, 0, logits, V);
    return logits;
  }
}

/**
 * Per-layer K and V caches, [slots, contextLength, nKvHead·headDim] each (grouped-query attention
 * caches only the key/value heads), plus decode scratch.
 */
export class KVCache {
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];
  /** Tokens held per slot. */
  readonly lens: Int32Array;
  readonly scratch: {
    x: Float32Array; xn: Float32Array; qkv: Float32Array; q: Float32Array; y: Float32Array;
    h: Float32Array; hg: Float32Array; mean: Float32Array; rstd: Float32Array; logits: Float32Array; newLens: Int32Array;
    qIn: Float32Array; qRstd: Float32Array; kIn: Float32Array; kRstd: Float32Array;
  };
  /** Floats per slot and layer in each of k and v. */
  private readonly span: number;
  private readonly rowWidth: number;

  constructor(c: ModelConfig, readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`KVCache: slots must be a positive integer (got ${slots})`);
    const { C, V, NH, NKV, AD, KVD, QKV, I, F } = modelDims(c);
    this.rowWidth = KVD;
    this.span = c.contextLength * KVD;
    const size = slots * this.span;
    for (let l = 0; l < c.nLayer; l++) {
      this.k.push(new Float32Array(size));
      this.v.push(new Float32Array(size));
    }
    this.lens = new Int32Array(slots);
    const f = (n: number) => new Float32Array(n);
    const qk = (n: number) => (c.qkNorm ? f(n) : EMPTY);
    this.scratch = {
      x: f(slots * C), xn: f(slots * C), qkv: f(slots * QKV), q: f(slots * AD), y: f(slots * AD),
      h: f(slots * F), hg: f(slots * I), mean: f(slots), rstd: f(slots), logits: f(slots * V), newLens: new Int32Array(slots),
      qIn: qk(slots * AD), qRstd: qk(slots * NH), kIn: qk(slots * KVD), kRstd: qk(slots * NKV),
    };
  }

  /** Move slot `from` into slot `to` (keeps active rows contiguous when a request finishes). */
  moveSlot(from: number, to: number): void {
    if (from === to) return;
    const span = this.span, len = this.lens[from]! * this.rowWidth;
    for (let l = 0; l < this.k.length; l++) {
      this.k[l]!.copyWithin(to * span, from * span, from * span + len);
      this.v[l]!.copyWithin(to * span, from * span, from * span + len);
    }
    this.lens[to] = this.lens[from]!;
    this.lens[from] = 0;
  }
}

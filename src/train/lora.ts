/**
 * LoRA for the built-in engine: low-rank adapters W = W₀ + (α/r)·B·A on chosen linear layers, with
 * only A and B trained (AdamW state is adapter-sized).
 *
 * The model always computes with merged weights: after every optimizer step the adapters are merged
 * into the model's parameter buffer (W = W₀ + s·B·A, one small GEMM per adapted matrix), so the
 * forward and the sampler are the plain model's — the sampler's logprobs equal the trainer's by
 * construction — at the price of a frozen copy of each adapted matrix (W₀). W is linear in A and B,
 * so dB = s·dW·Aᵀ and dA = s·Bᵀ·dW with dW = dYᵀ·X; the trainer attaches the adapter as the model's
 * weight-gradient delegate, which gets X and dY of every linear layer and computes those products
 * without forming dW (the model then skips every weight-gradient GEMM). `gradsFromModel` is the
 * same from a full dW, for checking.
 *
 * Targets use Hugging Face module names, as PEFT's `target_modules`: q_proj, k_proj, v_proj, o_proj,
 * gate_proj, up_proj, down_proj for SwiGLU models (Llama, Qwen); c_attn, c_proj (attention and MLP
 * output, as PEFT's suffix match does), c_fc for GELU models (GPT-2 and the built-in default model).
 * q/k/v (and gate/up) are row blocks of the engine's fused matrices, each with its own adapter, so
 * they export to PEFT as separate modules. Dropout on the adapter input is not supported (it would
 * need the unmerged path); RL fine-tuning recipes run LoRA without it.
 */
import { z } from 'zod';
import type { Backend } from '../engine/backend.ts';
import type { ParamView, Transformer, WeightGradDelegate } from '../engine/model.ts';
import { Rng } from '../core/rng.ts';
import { formatZodError } from '../core/config-errors.ts';

const SWIGLU_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
const GELU_MODULES = ['c_attn', 'c_proj', 'c_fc'] as const;
export type LoraModule = (typeof SWIGLU_MODULES)[number] | (typeof GELU_MODULES)[number];

export const LoraConfigSchema = z.object({
  rank: z.number().int().min(1),
  /** Scale numerator: the update is (alpha/rank)·B·A. PEFT's default is 8. */
  alpha: z.number().positive().finite().default(8),
  /** Modules to adapt in every layer; default: every linear layer of the block ("all-linear"). */
  targetModules: z.array(z.enum([...SWIGLU_MODULES, ...GELU_MODULES])).min(1).optional(),
  /** Seed of A's initialisation (B starts at zero, so an untrained adapter changes nothing). */
  seed: z.number().int().default(0),
}).strict();
export type LoraConfigInput = z.input<typeof LoraConfigSchema>;
export type LoraConfig = z.output<typeof LoraConfigSchema>;

export function parseLoraConfig(input: unknown): LoraConfig {
  const r = LoraConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid LoRA config: ${formatZodError(r.error, { schema: LoraConfigSchema, prefix: 'lora' })}`);
  return r.data;
}

/** One adapted matrix: rows [rowStart, rowStart + rows) of a model parameter of `cols` columns. */
export interface LoraTarget {
  layer: number;
  module: LoraModule;
  /** The model parameter holding the matrix (e.g. 'h3.attn.qkv.w'). */
  param: string;
  rowStart: number;
  rows: number;
  cols: number;
}

interface ModelShape {
  nLayer: number; nHead: number; nEmbd: number;
  nKvHead?: number; headDim?: number; mlp?: 'gelu' | 'swiglu'; intermediateSize?: number; mlpRatio: number;
}

/** The row blocks `modules` name in every layer of a model with this config (errors name the field). */
export function loraTargets(cfg: ModelShape, modules: readonly LoraModule[] | undefined): LoraTarget[] {
  const swiglu = cfg.mlp === 'swiglu';
  const allowed: readonly string[] = swiglu ? SWIGLU_MODULES : GELU_MODULES;
  const wanted = modules ?? allowed;
  for (const m of wanted) {
    if (!allowed.includes(m)) throw new Error(`lora.targetModules: '${m}' is not a module of this model (${swiglu ? 'a SwiGLU model' : 'a GELU/GPT-2-style model'}); use some of ${allowed.join(', ')}`);
  }
  const hd = cfg.headDim ?? cfg.nEmbd / cfg.nHead, nKv = cfg.nKvHead ?? cfg.nHead;
  const C = cfg.nEmbd, q = cfg.nHead * hd, kv = nKv * hd, I = cfg.intermediateSize ?? cfg.mlpRatio * C;
  const out: LoraTarget[] = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    const add = (module: LoraModule, param: string, rowStart: number, rows: number, cols: number) => {
      if (wanted.includes(module)) out.push({ layer: l, module, param: `h${l}.${param}`, rowStart, rows, cols });
    };
    if (swiglu) {
      add('q_proj', 'attn.qkv.w', 0, q, C);
      add('k_proj', 'attn.qkv.w', q, kv, C);
      add('v_proj', 'attn.qkv.w', q + kv, kv, C);
      add('o_proj', 'attn.proj.w', 0, C, q);
      add('gate_proj', 'mlp.fc.w', 0, I, C);
      add('up_proj', 'mlp.fc.w', I, I, C);
      add('down_proj', 'mlp.proj.w', 0, C, I);
    } else {
      add('c_attn', 'attn.qkv.w', 0, 3 * C, C);
      add('c_proj', 'attn.proj.w', 0, C, C);
      add('c_fc', 'mlp.fc.w', 0, I, C);
      add('c_proj', 'mlp.proj.w', 0, C, I);
    }
  }
  return out;
}

/** Adapter tensor name of a target, e.g. 'h3.q_proj.lora_A' (GPT-2's two c_proj are told apart by their parameter). */
function adapterName(t: LoraTarget, which: 'A' | 'B'): string {
  const where = t.module === 'c_proj' ? (t.param.includes('.attn.') ? 'attn.c_proj' : 'mlp.c_proj') : t.module;
  return `h${t.layer}.${where}.lora_${which}`;
}

export class LoraAdapter implements WeightGradDelegate {
  readonly config: LoraConfig;
  readonly scale: number;
  readonly targets: LoraTarget[];
  /** A [r, cols] and B [rows, r] of every target, one flat buffer (AdamW steps it like model params). */
  readonly layout: ParamView[];
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly numParams: number;
  /** [N, rank] scratch of `linear`. */
  private scratch = new Float32Array(0);
  /** W₀: the frozen rows of each target, as they were when the adapter was attached. */
  private readonly base: Float32Array[];
  private readonly views: { A: Float32Array; B: Float32Array; dA: Float32Array; dB: Float32Array; W: Float32Array; dW: Float32Array }[];

  constructor(readonly model: Transformer, config: LoraConfigInput) {
    this.config = parseLoraConfig(config);
    const r = this.config.rank;
    this.scale = this.config.alpha / r;
    this.targets = loraTargets(model.config as ModelShape, this.config.targetModules);
    this.layout = [];
    let offset = 0;
    for (const t of this.targets) {
      for (const [which, shape] of [['A', [r, t.cols]], ['B', [t.rows, r]]] as const) {
        const size = shape[0] * shape[1];
        this.layout.push({ name: adapterName(t, which), offset, shape: [...shape], size, decay: true });
        offset += size;
      }
    }
    this.numParams = offset;
    this.params = new Float32Array(offset);
    this.grads = new Float32Array(offset);
    this.base = [];
    this.views = this.targets.map((t, i) => {
      const a = this.layout[2 * i]!, b = this.layout[2 * i + 1]!;
      const full = model.layout.find((v) => v.name === t.param);
      if (!full || full.shape[1] !== t.cols || full.shape[0] < t.rowStart + t.rows) throw new Error(`LoRA: model parameter '${t.param}' does not hold rows [${t.rowStart}, ${t.rowStart + t.rows}) × ${t.cols}`);
      const begin = full.offset + t.rowStart * t.cols, end = begin + t.rows * t.cols;
      this.base.push(model.params.slice(begin, end));
      return {
        A: this.params.subarray(a.offset, a.offset + a.size), B: this.params.subarray(b.offset, b.offset + b.size),
        dA: this.grads.subarray(a.offset, a.offset + a.size), dB: this.grads.subarray(b.offset, b.offset + b.size),
        W: model.params.subarray(begin, end), dW: model.grads.subarray(begin, end),
      };
    });
    this.init(this.config.seed);
  }

  /** PEFT's initialisation: A ~ U(−1/√cols, 1/√cols) (kaiming-uniform, a = √5), B = 0. */
  init(seed: number): void {
    const rng = new Rng(seed);
    this.targets.forEach((t, i) => {
      const bound = 1 / Math.sqrt(t.cols), A = this.views[i]!.A;
      for (let j = 0; j < A.length; j++) A[j] = (2 * rng.next() - 1) * bound;
      this.views[i]!.B.fill(0);
    });
  }

  private get backend(): Backend {
    return this.model.backend;
  }

  /** Write W = W₀ + s·B·A into the model's parameters for every target. */
  merge(): void {
    const r = this.config.rank, be = this.backend;
    this.targets.forEach((t, i) => {
      const v = this.views[i]!;
      v.W.set(this.base[i]!);
      be.sgemm(false, false, t.rows, t.cols, r, this.scale, v.B, r, v.A, t.cols, 1, v.W, t.cols);
    });
  }

  /** Adapter gradients from the model's: dB = s·dW·Aᵀ, dA = s·Bᵀ·dW (overwrites `grads`). */
  gradsFromModel(): void {
    const r = this.config.rank, be = this.backend;
    this.targets.forEach((t, i) => {
      const v = this.views[i]!;
      be.sgemm(false, true, t.rows, r, t.cols, this.scale, v.dW, t.cols, v.A, t.cols, 0, v.dB, r);
      be.sgemm(true, false, r, t.cols, t.rows, this.scale, v.B, r, v.dW, t.cols, 0, v.dA, t.cols);
    });
  }

  /** The frozen W₀ rows of every target (for checkpoints), in target order. */
  baseWeights(): readonly Float32Array[] {
    return this.base;
  }

  /** Restore W₀ (from a checkpoint) and re-merge. */
  setBaseWeights(base: readonly Float32Array[]): void {
    if (base.length !== this.base.length || base.some((b, i) => b.length !== this.base[i]!.length)) throw new Error('LoRA: base weights do not match the adapter targets');
    base.forEach((b, i) => this.base[i]!.set(b));
    this.merge();
  }

  zeroGrad(): void {
    this.grads.fill(0);
  }

  /**
   * The adapter gradients straight from a linear layer's input X [N, cols] and output gradient
   * dY [N, out] (as `Transformer.weightGradDelegate`), accumulated: with U = X·Aᵀ and W' = dY_t·B,
   * dB += s·dY_tᵀ·U and dA += s·W'ᵀ·X, where dY_t are the target's columns of dY. The same values as
   * `gradsFromModel` (dW = dYᵀ·X substituted), at O(N·r·(rows + cols)) instead of O(N·rows·cols).
   */
  linear(param: string, dY: Float32Array, ldY: number, X: Float32Array, ldX: number, N: number): void {
    const r = this.config.rank, be = this.backend;
    this.targets.forEach((t, i) => {
      if (t.param !== param) return;
      const v = this.views[i]!;
      if (this.scratch.length < N * r) this.scratch = new Float32Array(N * r);
      const U = this.scratch.subarray(0, N * r), dYt = dY.subarray(t.rowStart);
      be.sgemm(false, true, N, r, t.cols, 1, X, ldX, v.A, t.cols, 0, U, r);
      be.sgemm(true, false, t.rows, r, N, this.scale, dYt, ldY, U, r, 1, v.dB, r);
      be.sgemm(false, false, N, r, t.rows, 1, dYt, ldY, v.B, r, 0, U, r);
      be.sgemm(true, false, r, t.cols, N, this.scale, U, r, X, ldX, 1, v.dA, t.cols);
    });
  }

  /** Bytes the adapter adds: A, B, their gradients and the frozen W₀ copies (AdamW moments: 2 × params more). */
  bytes(): number {
    return (2 * this.numParams + this.base.reduce((a, b) => a + b.length, 0)) * 4;
  }
}

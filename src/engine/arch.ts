/**
 * The open-weight architectures the built-in engine loads, described once in one normalised shape
 * (`ArchConfig`) whatever file they came from: a Hugging Face `config.json` (src/engine/hf-config.ts)
 * or GGUF metadata (src/engine/gguf.ts). Tensors travel between loaders under their Hugging Face
 * names (`HfTensors`), so every format converts to and from one naming.
 */

/** Hugging Face architectures supported: LlamaForCausalLM (SmolLM2 is one), Qwen2ForCausalLM, Qwen3ForCausalLM, GPT2LMHeadModel. */
export type ArchFamily = 'llama' | 'qwen2' | 'qwen3' | 'gpt2';

/** RoPE frequency scaling (transformers' `rope_scaling` / `rope_parameters`). */
export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | { type: 'linear'; factor: number };

export interface ArchConfig {
  family: ArchFamily;
  /** The `architectures[0]` string of config.json (or the GGUF `general.architecture` mapped back). */
  hfArchitecture: string;
  vocabSize: number;
  hiddenSize: number;
  /** MLP hidden width (GPT-2: n_inner ?? 4·hidden). */
  intermediateSize: number;
  nLayer: number;
  nHead: number;
  /** Key/value heads (grouped-query attention); = nHead for multi-head attention. */
  nKvHead: number;
  /** Per-head width; may differ from hiddenSize / nHead (Qwen3). */
  headDim: number;
  /** max_position_embeddings (GPT-2: n_positions). */
  maxPositions: number;
  norm: 'rmsnorm' | 'layernorm';
  normEps: number;
  /** SwiGLU (silu(gate)·up, then down) for Llama/Qwen; GELU-tanh MLP for GPT-2. */
  mlp: 'swiglu' | 'gelu';
  positions: 'rope' | 'learned';
  /** Base of the rotary frequencies (rope_theta); unused with learned positions. */
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** lm_head shares the embedding matrix (no `lm_head.weight` tensor). */
  tiedEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2; Llama with attention_bias; GPT-2). */
  qkvBias: boolean;
  /** The attention output projection carries a bias (GPT-2; Llama with attention_bias). */
  oBias: boolean;
  /** MLP projections carry biases (GPT-2; Llama with mlp_bias). */
  mlpBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3), weights `[headDim]`. */
  qkNorm: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export type HfDType = 'F32' | 'F16' | 'BF16';

/** One weight tensor decoded to F32, with the dtype it was stored in. */
export interface HfTensor {
  shape: number[];
  data: Float32Array;
  dtype: HfDType;
}

/** Weights by Hugging Face tensor name (e.g. `model.layers.0.self_attn.q_proj.weight`). */
export type HfTensors = Map<string, HfTensor>;

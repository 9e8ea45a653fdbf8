/**
 * Hugging Face `config.json` ⇄ `ArchConfig`, for LlamaForCausalLM (SmolLM2 is one),
 * Qwen2ForCausalLM, Qwen3ForCausalLM and GPT2LMHeadModel.
 *
 * Missing optional fields take the defaults transformers' config classes give them (so a config
 * means here what it means there): Llama max_position_embeddings 2048, bos 1, eos 2; Qwen2/Qwen3
 * max_position_embeddings 32768, no bos/eos; Qwen3 head_dim 128; rms_norm_eps 1e-6; rope_theta
 * 10000; tie_word_embeddings false; GPT-2 n_positions 1024, layer_norm_epsilon 1e-5, bos = eos =
 * 50256, always tied. The core dimensions (vocab_size, hidden_size, …) are required: a config
 * without them is broken, and a guessed 4096 would only surface later as a confusing shape error.
 *
 * RoPE comes in two spellings: `rope_theta` + `rope_scaling {rope_type | type, …}` (transformers 4)
 * and `rope_parameters {rope_type, rope_theta, …}` (transformers 5); both are read, and
 * `archToHfConfig` writes the first, which both versions load.
 *
 * Errors name the file, the field and what to change: `config.json: hidden_act: 'gelu' is not
 * supported (LlamaForCausalLM needs 'silu' …)`.
 */
import { z } from 'zod';
import type { ArchConfig, ArchFamily, RopeScaling } from './arch.ts';

/** Supported `architectures[0]` classes and their family. */
export const HF_ARCHITECTURES = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  GPT2LMHeadModel: 'gpt2',
} as const satisfies Record<string, ArchFamily>;
export type HfArchitecture = keyof typeof HF_ARCHITECTURES;

const FAMILY_CLASS: Record<ArchFamily, HfArchitecture> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', gpt2: 'GPT2LMHeadModel' };
/** transformers' `model_type` of each family (used when `architectures` is absent, and written back). */
const MODEL_TYPE: Record<ArchFamily, string> = { llama: 'llama', qwen2: 'qwen2', qwen3: 'qwen3', gpt2: 'gpt2' };
const DEFAULT_ROPE_THETA = 10000;

const posInt = z.number({ invalid_type_error: 'must be a positive integer' }).int('must be a positive integer').positive('must be a positive integer');
const posNum = z.number({ invalid_type_error: 'must be a positive number' }).positive('must be a positive number').finite('must be a positive number');
const flag = z.boolean({ invalid_type_error: 'must be true or false' });
const tokenId = z.number({ invalid_type_error: 'must be a token id (a non-negative integer)' }).int('must be a token id (a non-negative integer)').nonnegative('must be a token id (a non-negative integer)');
const tokenIds = z.union([tokenId, z.array(tokenId)], { errorMap: () => ({ message: 'must be a token id, a list of token ids, or null' }) });
const ropeObject = z.record(z.unknown(), { invalid_type_error: 'must be an object or null' });

const SwigluConfigSchema = z.object({
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  hidden_act: z.string({ invalid_type_error: "must be a string ('silu')" }).nullish(),
  max_position_embeddings: posInt.nullish(),
  rms_norm_eps: posNum.nullish(),
  tie_word_embeddings: flag.nullish(),
  attention_bias: flag.nullish(),
  mlp_bias: flag.nullish(),
  rope_theta: posNum.nullish(),
  rope_scaling: ropeObject.nullish(),
  rope_parameters: ropeObject.nullish(),
  partial_rotary_factor: z.unknown(),
  use_sliding_window: flag.nullish(),
  layer_types: z.array(z.string(), { invalid_type_error: 'must be a list of strings' }).nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds.nullish(),
});

const Gpt2ConfigSchema = z.object({
  vocab_size: posInt,
  n_embd: posInt,
  n_layer: posInt,
  n_head: posInt,
  n_positions: posInt.nullish(),
  n_inner: posInt.nullish(),
  activation_function: z.string({ invalid_type_error: "must be a string ('gelu_new')" }).nullish(),
  layer_norm_epsilon: posNum.nullish(),
  tie_word_embeddings: flag.nullish(),
  scale_attn_weights: flag.nullish(),
  scale_attn_by_inverse_layer_idx: flag.nullish(),
  add_cross_attention: flag.nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds.nullish(),
});

const LinearRopeSchema = z.object({ factor: posNum });
const Llama3RopeSchema = z.object({ factor: posNum, low_freq_factor: posNum, high_freq_factor: posNum, original_max_position_embeddings: posInt });

/** Parse a `config.json` object (`source` names the file in errors) into an `ArchConfig`. */
export function parseHfConfig(json: unknown, source: string): ArchConfig {
  const fail = (field: string, msg: string): never => {
    throw new Error(`${source}: ${field}: ${msg}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${source}: is not a JSON object (a Hugging Face config.json is one)`);
  const raw = json as Record<string, unknown>;
  const hfArchitecture = architectureOf(raw, fail);
  const family = HF_ARCHITECTURES[hfArchitecture];

  let arch: ArchConfig;
  if (family === 'gpt2') {
    const c = parseFields(Gpt2ConfigSchema, raw, source, hfArchitecture);
    if (c.n_embd % c.n_head !== 0) fail('n_embd', `${c.n_embd} is not divisible by n_head ${c.n_head} (each head gets n_embd / n_head channels)`);
    const act = c.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new') fail('activation_function', `'${act}' is not supported (GPT2LMHeadModel here needs 'gelu_new', the tanh approximation)`);
    if (c.tie_word_embeddings === false) fail('tie_word_embeddings', 'false is not supported for GPT2LMHeadModel (its lm_head is always the token embedding wte); remove the field');
    if (c.scale_attn_weights === false) fail('scale_attn_weights', 'false is not supported (attention scores are always scaled by 1/√head_dim); remove the field');
    if (c.scale_attn_by_inverse_layer_idx === true) fail('scale_attn_by_inverse_layer_idx', 'true is not supported; remove the field');
    if (c.add_cross_attention === true) fail('add_cross_attention', 'true is not supported (decoder-only models only)');
    arch = {
      family, hfArchitecture,
      vocabSize: c.vocab_size, hiddenSize: c.n_embd, intermediateSize: c.n_inner ?? 4 * c.n_embd, nLayer: c.n_layer,
      nHead: c.n_head, nKvHead: c.n_head, headDim: c.n_embd / c.n_head, maxPositions: c.n_positions ?? 1024,
      norm: 'layernorm', normEps: c.layer_norm_epsilon ?? 1e-5, mlp: 'gelu', positions: 'learned',
      ropeTheta: DEFAULT_ROPE_THETA, ropeScaling: null, tiedEmbeddings: true,
      qkvBias: true, oBias: true, mlpBias: true, qkNorm: false,
      ...specialTokens(raw, c, { bos: 50256, eos: 50256 }),
    };
  } else {
    const c = parseFields(SwigluConfigSchema, raw, source, hfArchitecture);
    const act = c.hidden_act ?? 'silu';
    if (act !== 'silu') fail('hidden_act', `'${act}' is not supported (${hfArchitecture} here needs 'silu': the MLP is SwiGLU)`);
    if (family !== 'llama') {
      if (c.use_sliding_window === true) fail('use_sliding_window', 'true is not supported (sliding-window attention); set it to false');
      const i = (c.layer_types ?? []).findIndex((t) => t !== 'full_attention');
      if (i >= 0) fail(`layer_types.${i}`, `'${c.layer_types![i]}' is not supported (every layer must be 'full_attention')`);
    }
    const nHead = c.num_attention_heads;
    let headDim = c.head_dim ?? null;
    if (headDim === null) {
      if (family === 'qwen3') headDim = 128; // Qwen3Config's default
      else {
        if (c.hidden_size % nHead !== 0) fail('hidden_size', `${c.hidden_size} is not divisible by num_attention_heads ${nHead}; set head_dim explicitly if the heads are narrower or wider than hidden_size / num_attention_heads`);
        headDim = c.hidden_size / nHead;
      }
    }
    const attnBias = family === 'qwen2' ? true : c.attention_bias ?? false;
    const rope = parseRope(c, source);
    arch = {
      family, hfArchitecture,
      vocabSize: c.vocab_size, hiddenSize: c.hidden_size, intermediateSize: c.intermediate_size, nLayer: c.num_hidden_layers,
      nHead, nKvHead: c.num_key_value_heads ?? nHead, headDim,
      maxPositions: c.max_position_embeddings ?? (family === 'llama' ? 2048 : 32768),
      norm: 'rmsnorm', normEps: c.rms_norm_eps ?? 1e-6, mlp: 'swiglu', positions: 'rope',
      ropeTheta: rope.theta, ropeScaling: rope.scaling,
      tiedEmbeddings: c.tie_word_embeddings ?? false,
      // Qwen2 hard-codes q/k/v biases and an unbiased o_proj; Llama and Qwen3 bias all four with attention_bias.
      qkvBias: attnBias, oBias: family === 'qwen2' ? false : attnBias,
      mlpBias: family === 'llama' ? c.mlp_bias ?? false : false,
      qkNorm: family === 'qwen3',
      ...specialTokens(raw, c, family === 'llama' ? { bos: 1, eos: 2 } : { bos: null, eos: null }),
    };
  }

  const heads = family === 'gpt2' ? 'n_head' : 'num_attention_heads';
  if (arch.nHead % arch.nKvHead !== 0) fail('num_key_value_heads', `${arch.nKvHead} does not divide ${heads} ${arch.nHead} (each key/value head serves a whole group of query heads)`);
  if (arch.positions === 'rope' && arch.headDim % 2 !== 0) fail(raw.head_dim != null ? 'head_dim' : 'hidden_size', `gives an odd head width ${arch.headDim}; RoPE rotates channel pairs, so it must be even`);
  const ids: [string, number][] = [...(arch.bosTokenId !== null ? [['bos_token_id', arch.bosTokenId] as [string, number]] : []), ...arch.eosTokenIds.map((id) => ['eos_token_id', id] as [string, number])];
  for (const [field, id] of ids) {
    if (id >= arch.vocabSize) fail(field, `${id} is outside the vocabulary (vocab_size ${arch.vocabSize})`);
  }
  return arch;
}

/**
 * A `config.json` object that transformers loads as `arch` (and that `parseHfConfig` reads back
 * as exactly `arch`). Throws, naming the field, when `arch` has a feature its family's config
 * cannot express (e.g. qkNorm on Llama).
 */
export function archToHfConfig(arch: ArchConfig): Record<string, unknown> {
  const cls = FAMILY_CLASS[arch.family];
  if (cls === undefined) throw new Error(`archToHfConfig: family '${String(arch.family)}' is not supported (supported: ${Object.keys(FAMILY_CLASS).join(', ')})`);
  if (arch.hfArchitecture !== cls) throw new Error(`archToHfConfig: hfArchitecture '${arch.hfArchitecture}' does not match family '${arch.family}' (expected '${cls}')`);
  const eos = arch.eosTokenIds.length === 0 ? null : arch.eosTokenIds.length === 1 ? arch.eosTokenIds[0] : [...arch.eosTokenIds];
  let out: Record<string, unknown>;
  if (arch.family === 'gpt2') {
    out = {
      architectures: [cls], model_type: MODEL_TYPE.gpt2,
      vocab_size: arch.vocabSize, n_embd: arch.hiddenSize, n_layer: arch.nLayer, n_head: arch.nHead,
      n_positions: arch.maxPositions, n_inner: arch.intermediateSize, activation_function: 'gelu_new',
      layer_norm_epsilon: arch.normEps, tie_word_embeddings: true,
      bos_token_id: arch.bosTokenId, eos_token_id: eos,
    };
  } else {
    out = {
      architectures: [cls], model_type: MODEL_TYPE[arch.family],
      vocab_size: arch.vocabSize, hidden_size: arch.hiddenSize, intermediate_size: arch.intermediateSize,
      num_hidden_layers: arch.nLayer, num_attention_heads: arch.nHead, num_key_value_heads: arch.nKvHead, head_dim: arch.headDim,
      hidden_act: 'silu', max_position_embeddings: arch.maxPositions, rms_norm_eps: arch.normEps,
      rope_theta: arch.ropeTheta, rope_scaling: ropeScalingJson(arch.ropeScaling),
      tie_word_embeddings: arch.tiedEmbeddings,
      ...(arch.family !== 'qwen2' ? { attention_bias: arch.qkvBias } : {}),
      ...(arch.family === 'llama' ? { mlp_bias: arch.mlpBias } : { use_sliding_window: false }),
      bos_token_id: arch.bosTokenId, eos_token_id: eos,
    };
  }
  // What the config cannot express shows up as a field that reads back differently.
  let back: ArchConfig;
  try {
    back = parseHfConfig(out, 'config.json');
  } catch (e) {
    throw new Error(`archToHfConfig: the ${cls} config.json for this ArchConfig is invalid: ${(e as Error).message}`);
  }
  for (const key of Object.keys(arch) as (keyof ArchConfig)[]) {
    if (!sameJson(back[key], arch[key])) {
      throw new Error(`archToHfConfig: ${key} ${JSON.stringify(arch[key])} cannot be written to a ${cls} config.json (it would read back as ${JSON.stringify(back[key])}); ${cls} does not support it`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function architectureOf(raw: Record<string, unknown>, fail: (field: string, msg: string) => never): HfArchitecture {
  const supported = `(supported: ${Object.keys(HF_ARCHITECTURES).join(', ')})`;
  const archs = raw.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === 'string')) {
      fail('architectures', `must be a non-empty list of class names like ["LlamaForCausalLM"], got ${JSON.stringify(archs)}`);
    }
    const name = (archs as string[])[0]!;
    if (!Object.hasOwn(HF_ARCHITECTURES, name)) fail('architectures', `'${name}' is not supported ${supported}`);
    return name as HfArchitecture;
  }
  const type = raw.model_type;
  if (type === undefined || type === null) fail('architectures', `is missing, and so is model_type: cannot tell the model class; add "architectures": ["LlamaForCausalLM"] (or another of ${Object.keys(HF_ARCHITECTURES).join(', ')})`);
  const family = (Object.keys(MODEL_TYPE) as ArchFamily[]).find((f) => MODEL_TYPE[f] === type);
  if (family === undefined) fail('model_type', `${JSON.stringify(type)} is not supported (supported: ${Object.values(MODEL_TYPE).join(', ')}) and there is no architectures field`);
  return FAMILY_CLASS[family!];
}

/** zod-validate the fields of one family; every problem is listed as `field: message (got …)`. */
function parseFields<S extends z.ZodTypeAny>(schema: S, raw: Record<string, unknown>, source: string, cls: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const lines = r.error.issues.map((issue) => {
    const field = issue.path.join('.');
    const value = issue.path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], raw);
    if (value === undefined) return `${field}: is missing (a ${cls} config.json must set it)`;
    return `${field}: ${issue.message} (got ${JSON.stringify(value)})`;
  });
  throw new Error(`${source}: ${lines.join('; ')}`);
}

/** bos/eos: an absent key takes the family default (as transformers does); an explicit null means none. */
function specialTokens(raw: Record<string, unknown>, c: { bos_token_id?: number | null; eos_token_id?: number | number[] | null }, defaults: { bos: number | null; eos: number | null }): { bosTokenId: number | null; eosTokenIds: number[] } {
  const bos = 'bos_token_id' in raw ? c.bos_token_id ?? null : defaults.bos;
  const eos = 'eos_token_id' in raw ? c.eos_token_id ?? null : defaults.eos;
  return { bosTokenId: bos, eosTokenIds: eos === null ? [] : Array.isArray(eos) ? [...eos] : [eos] };
}

type SwigluFields = z.infer<typeof SwigluConfigSchema>;

/** rope_theta and scaling from either spelling; both present must agree. */
function parseRope(c: SwigluFields, source: string): { theta: number; scaling: RopeScaling | null } {
  const fail = (field: string, msg: string): never => {
    throw new Error(`${source}: ${field}: ${msg}`);
  };
  const params = c.rope_parameters ?? null;
  if (params !== null && ('full_attention' in params || 'sliding_attention' in params)) {
    fail('rope_parameters', 'per-layer-type RoPE parameters are not supported (give one {rope_type, rope_theta, …} object)');
  }
  for (const [field, v] of [['partial_rotary_factor', c.partial_rotary_factor], ['rope_parameters.partial_rotary_factor', params?.partial_rotary_factor]] as const) {
    if (v !== undefined && v !== null && v !== 1) fail(field, `${JSON.stringify(v)} is not supported (the whole head is rotated); remove it or set it to 1`);
  }
  let theta = c.rope_theta ?? DEFAULT_ROPE_THETA;
  if (params !== null && params.rope_theta !== undefined && params.rope_theta !== null) {
    const t = posNum.safeParse(params.rope_theta);
    if (!t.success) fail('rope_parameters.rope_theta', `must be a positive number (got ${JSON.stringify(params.rope_theta)})`);
    if (c.rope_theta != null && c.rope_theta !== t.data) fail('rope_theta', `${c.rope_theta} disagrees with rope_parameters.rope_theta ${t.data}; keep one`);
    theta = t.data!;
  }
  const fromParams = params !== null ? ropeScalingOf(params, 'rope_parameters', source) : null;
  const fromScaling = c.rope_scaling != null ? ropeScalingOf(c.rope_scaling, 'rope_scaling', source) : null;
  if (params !== null && c.rope_scaling != null && !sameJson(fromParams, fromScaling)) {
    fail('rope_scaling', 'disagrees with rope_parameters; keep one (rope_parameters is the newer spelling)');
  }
  return { theta, scaling: params !== null ? fromParams : fromScaling };
}

function ropeScalingOf(obj: Record<string, unknown>, field: string, source: string): RopeScaling | null {
  const fail = (f: string, msg: string): never => {
    throw new Error(`${source}: ${f}: ${msg}`);
  };
  const typeField = obj.rope_type !== undefined ? 'rope_type' : 'type';
  const type = obj.rope_type ?? obj.type ?? 'default';
  const fields = <S extends z.ZodTypeAny>(schema: S): z.infer<S> => {
    const r = schema.safeParse(obj);
    if (r.success) return r.data;
    const issue = r.error.issues[0]!;
    const key = issue.path.join('.');
    const v = obj[key];
    return fail(`${field}.${key}`, v === undefined ? `is missing (a '${String(type)}' RoPE scaling needs it)` : `${issue.message} (got ${JSON.stringify(v)})`);
  };
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: fields(LinearRopeSchema).factor };
    case 'llama3': {
      const p = fields(Llama3RopeSchema);
      if (!(p.low_freq_factor < p.high_freq_factor)) {
        fail(`${field}.high_freq_factor`, `${p.high_freq_factor} must be greater than low_freq_factor ${p.low_freq_factor} (the two bound the smoothly scaled band)`);
      }
      return { type: 'llama3', factor: p.factor, lowFreqFactor: p.low_freq_factor, highFreqFactor: p.high_freq_factor, originalMaxPositions: p.original_max_position_embeddings };
    }
    default:
      return fail(`${field}.${typeField}`, `${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
  }
}

function ropeScalingJson(s: RopeScaling | null): Record<string, unknown> | null {
  if (s === null) return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return { rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositions };
}

/** Equal as JSON values, whatever the key order (and prototype) of objects. */
function sameJson(a: unknown, b: unknown): boolean {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : typeof v === 'object' && v !== null ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

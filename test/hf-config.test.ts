import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import './helpers/fast-check-seed.ts';
import type { ArchConfig, ArchFamily } from '../src/engine/arch.ts';
import { archToHfConfig, parseHfConfig } from '../src/engine/hf-config.ts';
import { tinyArch } from './helpers/tiny-models.ts';

const FAMILIES: ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];

// Published config.json files (trimmed of fields that do not matter here only where noted).
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 0, eos_token_id: 0, hidden_act: 'silu',
  hidden_size: 576, initializer_range: 0.041666666666666664, intermediate_size: 1536, is_llama_config: true, max_position_embeddings: 8192,
  model_type: 'llama', num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, pretraining_tp: 1, rms_norm_eps: 1e-05,
  rope_interleaved: false, rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16',
  transformers_version: '4.42.3', use_cache: true, vocab_size: 49152,
};
const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu', hidden_size: 896,
  initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 21, model_type: 'qwen2',
  num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-06, rope_theta: 1000000.0, sliding_window: 32768,
  tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.43.1', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, head_dim: 128,
  hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960, max_window_layers: 28,
  model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-06, rope_scaling: null,
  rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.51.0', use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};
const GPT2 = {
  activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256, embd_pdrop: 0.1, eos_token_id: 50256,
  initializer_range: 0.02, layer_norm_epsilon: 1e-05, model_type: 'gpt2', n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024,
  resid_pdrop: 0.1, summary_activation: null, summary_first_dropout: 0.1, summary_proj_to_labels: true, summary_type: 'cls_index', summary_use_proj: true,
  task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } }, vocab_size: 50257,
};
const LLAMA32_1B_INSTRUCT = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009],
  head_dim: 64, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072,
  mlp_bias: false, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-05,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true, vocab_size: 128256,
};

const parse = (json: unknown) => parseHfConfig(json, 'config.json');
const LLAMA3_SCALING = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } as const;

describe('parseHfConfig: published configs', () => {
  it('SmolLM2-135M (Llama; tied; 9 heads over 3 KV heads)', () => {
    expect(parse(SMOLLM2_135M)).toEqual({
      family: 'llama', hfArchitecture: 'LlamaForCausalLM', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, nLayer: 30, nHead: 9, nKvHead: 3,
      headDim: 64, maxPositions: 8192, norm: 'rmsnorm', normEps: 1e-5, mlp: 'swiglu', positions: 'rope', ropeTheta: 100000, ropeScaling: null,
      tiedEmbeddings: true, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, bosTokenId: 0, eosTokenIds: [0],
    } satisfies ArchConfig);
  });

  it('Qwen2.5-0.5B (q/k/v biases, no o bias, sliding window off)', () => {
    expect(parse(QWEN25_05B)).toEqual({
      family: 'qwen2', hfArchitecture: 'Qwen2ForCausalLM', vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, nLayer: 24, nHead: 14, nKvHead: 2,
      headDim: 64, maxPositions: 32768, norm: 'rmsnorm', normEps: 1e-6, mlp: 'swiglu', positions: 'rope', ropeTheta: 1e6, ropeScaling: null,
      tiedEmbeddings: true, qkvBias: true, oBias: false, mlpBias: false, qkNorm: false, bosTokenId: 151643, eosTokenIds: [151645],
    } satisfies ArchConfig);
  });

  it('Qwen3-0.6B (explicit head_dim 128 ≠ 1024/16, q/k norms)', () => {
    const a = parse(QWEN3_06B);
    expect(a).toMatchObject({ family: 'qwen3', headDim: 128, nHead: 16, nKvHead: 8, qkNorm: true, qkvBias: false, oBias: false, maxPositions: 40960, tiedEmbeddings: true });
  });

  it('GPT-2 (n_inner absent = 4·n_embd, learned positions, tied, all biases)', () => {
    expect(parse(GPT2)).toEqual({
      family: 'gpt2', hfArchitecture: 'GPT2LMHeadModel', vocabSize: 50257, hiddenSize: 768, intermediateSize: 3072, nLayer: 12, nHead: 12, nKvHead: 12,
      headDim: 64, maxPositions: 1024, norm: 'layernorm', normEps: 1e-5, mlp: 'gelu', positions: 'learned', ropeTheta: 10000, ropeScaling: null,
      tiedEmbeddings: true, qkvBias: true, oBias: true, mlpBias: true, qkNorm: false, bosTokenId: 50256, eosTokenIds: [50256],
    } satisfies ArchConfig);
    expect(parse({ ...GPT2, n_inner: null }).intermediateSize).toBe(3072);
    expect(parse({ ...GPT2, n_inner: 1000 }).intermediateSize).toBe(1000);
  });

  it('Llama-3.2-1B-Instruct (llama3 rope scaling, eos list)', () => {
    const a = parse(LLAMA32_1B_INSTRUCT);
    expect(a.ropeTheta).toBe(500000);
    expect(a.ropeScaling).toEqual(LLAMA3_SCALING);
    expect(a.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(a.bosTokenId).toBe(128000);
    expect(a.headDim).toBe(64);
  });

  it('the transformers 5 spelling rope_parameters means the same', () => {
    const { rope_theta: _t, rope_scaling: _s, ...rest } = LLAMA32_1B_INSTRUCT;
    const v5 = { ...rest, rope_parameters: { rope_type: 'llama3', rope_theta: 500000.0, factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 } };
    expect(parse(v5)).toEqual(parse(LLAMA32_1B_INSTRUCT));
    const { rope_theta: _q, ...qwen } = QWEN25_05B;
    expect(parse({ ...qwen, rope_parameters: { rope_type: 'default', rope_theta: 1000000.0 } })).toEqual(parse(QWEN25_05B));
    // Both spellings present and agreeing is fine; disagreeing is an error naming both.
    expect(parse({ ...LLAMA32_1B_INSTRUCT, rope_parameters: v5.rope_parameters })).toEqual(parse(LLAMA32_1B_INSTRUCT));
    expect(() => parse({ ...LLAMA32_1B_INSTRUCT, rope_parameters: { ...v5.rope_parameters, rope_theta: 10000 } }))
      .toThrow("config.json: rope_theta: 500000 disagrees with rope_parameters.rope_theta 10000; keep one");
    expect(() => parse({ ...LLAMA32_1B_INSTRUCT, rope_parameters: { ...v5.rope_parameters, factor: 8 } }))
      .toThrow('config.json: rope_scaling: disagrees with rope_parameters; keep one');
  });
});

describe('parseHfConfig: defaults as transformers applies them', () => {
  const llamaMin = { architectures: ['LlamaForCausalLM'], vocab_size: 100, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4 };
  it('Llama: KV heads = heads, head_dim = hidden/heads, untied, no biases, eps 1e-6, theta 10000, 2048 positions, bos 1, eos 2', () => {
    expect(parse(llamaMin)).toEqual({
      family: 'llama', hfArchitecture: 'LlamaForCausalLM', vocabSize: 100, hiddenSize: 32, intermediateSize: 64, nLayer: 2, nHead: 4, nKvHead: 4, headDim: 8,
      maxPositions: 2048, norm: 'rmsnorm', normEps: 1e-6, mlp: 'swiglu', positions: 'rope', ropeTheta: 10000, ropeScaling: null, tiedEmbeddings: false,
      qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, bosTokenId: 1, eosTokenIds: [2],
    } satisfies ArchConfig);
    expect(parse({ ...llamaMin, num_key_value_heads: null, bos_token_id: null, eos_token_id: null })).toMatchObject({ nKvHead: 4, bosTokenId: null, eosTokenIds: [] });
  });

  it('Llama attention_bias biases q, k, v AND o; mlp_bias the MLP', () => {
    expect(parse({ ...llamaMin, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true, mlpBias: false });
    expect(parse({ ...llamaMin, mlp_bias: true })).toMatchObject({ qkvBias: false, oBias: false, mlpBias: true });
  });

  it('Qwen2 always has q/k/v biases and never an o bias (attention_bias is ignored, as transformers does)', () => {
    const q = { ...llamaMin, architectures: ['Qwen2ForCausalLM'] };
    for (const attention_bias of [undefined, false, true]) {
      expect(parse({ ...q, attention_bias })).toMatchObject({ family: 'qwen2', qkvBias: true, oBias: false, mlpBias: false, maxPositions: 32768, bosTokenId: null, eosTokenIds: [], tiedEmbeddings: false });
    }
  });

  it('Qwen3: q/k norms, attention_bias default false (and biases all four when true), head_dim default 128', () => {
    const q = { ...llamaMin, architectures: ['Qwen3ForCausalLM'] };
    expect(parse(q)).toMatchObject({ family: 'qwen3', qkNorm: true, qkvBias: false, oBias: false, headDim: 128, tiedEmbeddings: false });
    expect(parse({ ...q, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true });
  });

  it('the family comes from model_type when architectures is absent', () => {
    const { architectures: _a, ...noArch } = QWEN25_05B;
    expect(parse(noArch)).toEqual(parse(QWEN25_05B));
  });

  it('explicit head_dim lifts the divisibility requirement', () => {
    expect(parse({ ...llamaMin, hidden_size: 30, head_dim: 8 })).toMatchObject({ hiddenSize: 30, headDim: 8 });
  });

  it('rope_scaling: legacy "type" key, linear, default/null = none', () => {
    expect(parse({ ...llamaMin, rope_scaling: { type: 'linear', factor: 2 } }).ropeScaling).toEqual({ type: 'linear', factor: 2 });
    expect(parse({ ...llamaMin, rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeNull();
    expect(parse({ ...llamaMin, rope_scaling: null }).ropeScaling).toBeNull();
  });
});

describe('parseHfConfig: errors name the file, the field and the fix', () => {
  it('unsupported architectures', () => {
    expect(() => parse({ ...SMOLLM2_135M, architectures: ['MistralForCausalLM'] }))
      .toThrow("config.json: architectures: 'MistralForCausalLM' is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GPT2LMHeadModel)");
    expect(() => parse({ ...SMOLLM2_135M, architectures: [] })).toThrow(/^config\.json: architectures: must be a non-empty list/);
    const { architectures: _a, model_type: _m, ...none } = SMOLLM2_135M;
    expect(() => parse(none)).toThrow(/^config\.json: architectures: is missing, and so is model_type/);
    expect(() => parse({ ...none, model_type: 'mistral' })).toThrow(/^config\.json: model_type: "mistral" is not supported/);
    expect(() => parseHfConfig([], '/m/config.json')).toThrow('/m/config.json: is not a JSON object');
  });

  it('missing and mistyped fields, all listed', () => {
    const { hidden_size: _h, ...noHidden } = SMOLLM2_135M;
    expect(() => parse(noHidden)).toThrow('config.json: hidden_size: is missing (a LlamaForCausalLM config.json must set it)');
    expect(() => parse({ ...SMOLLM2_135M, num_hidden_layers: '30', rms_norm_eps: -1 }))
      .toThrow('config.json: num_hidden_layers: must be a positive integer (got "30"); rms_norm_eps: must be a positive number (got -1)');
    expect(() => parse({ ...SMOLLM2_135M, tie_word_embeddings: 'yes' })).toThrow('config.json: tie_word_embeddings: must be true or false (got "yes")');
    expect(() => parse({ ...SMOLLM2_135M, eos_token_id: 'x' })).toThrow('config.json: eos_token_id: must be a token id, a list of token ids, or null (got "x")');
    expect(() => parse({ ...SMOLLM2_135M, eos_token_id: [0, -1] })).toThrow('config.json: eos_token_id.1: must be a token id (a non-negative integer) (got -1)');
    const { n_embd: _e, ...noEmbd } = GPT2;
    expect(() => parse(noEmbd)).toThrow('config.json: n_embd: is missing (a GPT2LMHeadModel config.json must set it)');
  });

  it('activations', () => {
    expect(() => parse({ ...SMOLLM2_135M, hidden_act: 'gelu' })).toThrow("config.json: hidden_act: 'gelu' is not supported (LlamaForCausalLM here needs 'silu': the MLP is SwiGLU)");
    expect(() => parse({ ...GPT2, activation_function: 'relu' })).toThrow("config.json: activation_function: 'relu' is not supported (GPT2LMHeadModel here needs 'gelu_new', the tanh approximation)");
  });

  it('RoPE: unknown types, missing fields, inverted bands', () => {
    expect(() => parse({ ...SMOLLM2_135M, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow('config.json: rope_scaling.rope_type: "yarn" is not supported (supported: default, linear, llama3)');
    expect(() => parse({ ...SMOLLM2_135M, rope_scaling: { type: 'dynamic', factor: 4 } })).toThrow('config.json: rope_scaling.type: "dynamic" is not supported');
    expect(() => parse({ ...SMOLLM2_135M, rope_parameters: { rope_type: 'longrope', rope_theta: 100000 } })).toThrow('config.json: rope_parameters.rope_type: "longrope" is not supported');
    const { original_max_position_embeddings: _o, ...noOrig } = LLAMA32_1B_INSTRUCT.rope_scaling;
    expect(() => parse({ ...LLAMA32_1B_INSTRUCT, rope_scaling: noOrig })).toThrow("config.json: rope_scaling.original_max_position_embeddings: is missing (a 'llama3' RoPE scaling needs it)");
    expect(() => parse({ ...SMOLLM2_135M, rope_scaling: { type: 'linear', factor: 0 } })).toThrow('config.json: rope_scaling.factor: must be a positive number (got 0)');
    expect(() => parse({ ...LLAMA32_1B_INSTRUCT, rope_scaling: { ...LLAMA32_1B_INSTRUCT.rope_scaling, low_freq_factor: 4 } })).toThrow('config.json: rope_scaling.high_freq_factor: 4 must be greater than low_freq_factor 4');
    expect(() => parse({ ...SMOLLM2_135M, rope_scaling: 3 })).toThrow('config.json: rope_scaling: must be an object or null (got 3)');
  });

  it('head geometry', () => {
    expect(() => parse({ ...SMOLLM2_135M, num_key_value_heads: 4 })).toThrow('config.json: num_key_value_heads: 4 does not divide num_attention_heads 9');
    expect(() => parse({ ...SMOLLM2_135M, hidden_size: 577 })).toThrow('config.json: hidden_size: 577 is not divisible by num_attention_heads 9; set head_dim explicitly');
    expect(() => parse({ ...SMOLLM2_135M, head_dim: 63 })).toThrow('config.json: head_dim: gives an odd head width 63; RoPE rotates channel pairs, so it must be even');
    expect(() => parse({ ...SMOLLM2_135M, hidden_size: 9 * 7, intermediate_size: 10 })).toThrow('config.json: hidden_size: gives an odd head width 7');
    expect(() => parse({ ...GPT2, n_embd: 770 })).toThrow('config.json: n_embd: 770 is not divisible by n_head 12');
  });

  it('features the engine does not have', () => {
    expect(() => parse({ ...QWEN25_05B, use_sliding_window: true })).toThrow('config.json: use_sliding_window: true is not supported (sliding-window attention); set it to false');
    expect(() => parse({ ...QWEN3_06B, layer_types: ['full_attention', 'sliding_attention'] })).toThrow("config.json: layer_types.1: 'sliding_attention' is not supported");
    expect(() => parse({ ...QWEN3_06B, rope_parameters: { full_attention: { rope_type: 'default' } } })).toThrow('config.json: rope_parameters: per-layer-type RoPE parameters are not supported');
    expect(() => parse({ ...SMOLLM2_135M, partial_rotary_factor: 0.5 })).toThrow('config.json: partial_rotary_factor: 0.5 is not supported (the whole head is rotated); remove it or set it to 1');
    expect(() => parse({ ...SMOLLM2_135M, rope_parameters: { rope_type: 'default', rope_theta: 100000, partial_rotary_factor: 0.25 } })).toThrow('config.json: rope_parameters.partial_rotary_factor: 0.25 is not supported');
    expect(parse({ ...SMOLLM2_135M, partial_rotary_factor: 1 }).headDim).toBe(64);
    expect(() => parse({ ...GPT2, tie_word_embeddings: false })).toThrow('config.json: tie_word_embeddings: false is not supported for GPT2LMHeadModel');
    expect(() => parse({ ...GPT2, scale_attn_by_inverse_layer_idx: true })).toThrow('config.json: scale_attn_by_inverse_layer_idx: true is not supported');
  });

  it('special tokens outside the vocabulary', () => {
    expect(() => parse({ ...SMOLLM2_135M, eos_token_id: [0, 49152] })).toThrow('config.json: eos_token_id: 49152 is outside the vocabulary (vocab_size 49152)');
    expect(() => parse({ ...GPT2, vocab_size: 270, eos_token_id: 269 })).toThrow('config.json: bos_token_id: 50256 is outside the vocabulary (vocab_size 270)');
  });
});

describe('archToHfConfig', () => {
  it.each(FAMILIES)('%s: parseHfConfig reads back exactly the tinyArch', (family) => {
    const arch = tinyArch(family);
    const json = archToHfConfig(arch);
    expect(parse(JSON.parse(JSON.stringify(json)))).toEqual(arch);
    expect(json.architectures).toEqual([arch.hfArchitecture]);
  });

  it('writes what transformers reads for a Llama (exact keys)', () => {
    expect(archToHfConfig(tinyArch('llama'))).toEqual({
      architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 270, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, hidden_act: 'silu', max_position_embeddings: 64, rms_norm_eps: 1e-5,
      rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
      tie_word_embeddings: true, attention_bias: false, mlp_bias: false, bos_token_id: null, eos_token_id: 269,
    });
    expect(archToHfConfig(tinyArch('gpt2'))).toEqual({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: 270, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 64, n_inner: 128,
      activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, tie_word_embeddings: true, bos_token_id: null, eos_token_id: 269,
    });
  });

  it('round-trips random architectures of every family', () => {
    const archArb = fc.record({
      family: fc.constantFrom<ArchFamily>(...FAMILIES),
      vocab: fc.integer({ min: 2, max: 1000 }), kv: fc.integer({ min: 1, max: 4 }), group: fc.integer({ min: 1, max: 3 }), halfHead: fc.integer({ min: 1, max: 16 }),
      inter: fc.integer({ min: 1, max: 300 }), layers: fc.integer({ min: 1, max: 40 }), pos: fc.integer({ min: 1, max: 1 << 17 }),
      eps: fc.constantFrom(1e-5, 1e-6, 3e-7), theta: fc.constantFrom(10000, 500000, 1e6, 12345.5),
      scaling: fc.oneof(fc.constant(null), fc.record({ type: fc.constant('linear' as const), factor: fc.constantFrom(2, 4.5) }),
        fc.record({ type: fc.constant('llama3' as const), factor: fc.constantFrom(8, 32), lowFreqFactor: fc.constant(1), highFreqFactor: fc.constantFrom(2, 4), originalMaxPositions: fc.constantFrom(16, 8192) })),
      tied: fc.boolean(), bias: fc.boolean(), mlpBias: fc.boolean(), bos: fc.option(fc.nat(1), { nil: null }), eos: fc.array(fc.nat(1), { maxLength: 3 }),
    });
    fc.assert(fc.property(archArb, (r) => {
      const nHead = r.kv * r.group, headDim = 2 * r.halfHead;
      const base = tinyArch(r.family);
      const swiglu = r.family !== 'gpt2';
      const arch: ArchConfig = {
        ...base, vocabSize: r.vocab, nLayer: r.layers, maxPositions: r.pos, intermediateSize: r.inter, normEps: r.eps,
        nHead, nKvHead: swiglu ? r.kv : nHead, headDim, hiddenSize: swiglu ? nHead * headDim + r.halfHead : nHead * headDim,
        ropeTheta: swiglu ? r.theta : 10000, ropeScaling: swiglu ? r.scaling : null,
        tiedEmbeddings: r.family === 'gpt2' ? true : r.tied,
        qkvBias: r.family === 'llama' || r.family === 'qwen3' ? r.bias : base.qkvBias,
        oBias: r.family === 'llama' || r.family === 'qwen3' ? r.bias : base.oBias,
        mlpBias: r.family === 'llama' ? r.mlpBias : base.mlpBias,
        bosTokenId: r.bos, eosTokenIds: r.eos,
      };
      expect(parse(JSON.parse(JSON.stringify(archToHfConfig(arch))))).toEqual(arch);
    }), { numRuns: 300 });
  });

  it('refuses what the family cannot express, naming the field', () => {
    expect(() => archToHfConfig(tinyArch('qwen2', { oBias: true }))).toThrow('archToHfConfig: oBias true cannot be written to a Qwen2ForCausalLM config.json (it would read back as false)');
    expect(() => archToHfConfig(tinyArch('llama', { qkNorm: true }))).toThrow('archToHfConfig: qkNorm true cannot be written to a LlamaForCausalLM config.json');
    expect(() => archToHfConfig(tinyArch('llama', { oBias: true }))).toThrow('archToHfConfig: oBias true cannot be written');
    expect(() => archToHfConfig(tinyArch('gpt2', { tiedEmbeddings: false }))).toThrow('archToHfConfig: tiedEmbeddings false cannot be written to a GPT2LMHeadModel config.json (it would read back as true)');
    expect(() => archToHfConfig(tinyArch('llama', { nKvHead: 3 }))).toThrow(/^archToHfConfig: the LlamaForCausalLM config\.json for this ArchConfig is invalid: config\.json: num_key_value_heads: 3 does not divide/);
    expect(() => archToHfConfig(tinyArch('gpt2', { nKvHead: 2 }))).toThrow('archToHfConfig: nKvHead 2 cannot be written to a GPT2LMHeadModel config.json (it would read back as 4)');
    expect(() => archToHfConfig(tinyArch('qwen3', { hfArchitecture: 'LlamaForCausalLM' }))).toThrow("archToHfConfig: hfArchitecture 'LlamaForCausalLM' does not match family 'qwen3'");
    expect(() => archToHfConfig(tinyArch('llama', { eosTokenIds: [270] }))).toThrow(/eos_token_id: 270 is outside the vocabulary/);
  });
});

/**
 * Tiny random open-weight models for tests: an `ArchConfig` per family with small shapes that still
 * exercise every feature (grouped-query attention, explicit head_dim ≠ hidden/heads for Qwen3,
 * q/k/v biases, q/k norms, untied heads, rope scaling), and random weights under the family's
 * Hugging Face tensor names. Norm gains and biases are random too, so a loader that drops one is
 * caught.
 */
import type { ArchConfig, ArchFamily, HfTensors } from '../../src/engine/arch.ts';
import { Rng } from '../../src/core/rng.ts';
import { expectedHfTensors } from '../../src/engine/hf-weights.ts';

/** Vocabulary of test/fixtures/tiny-bpe/tokenizer.json (267 BPE tokens + 3 special tokens). */
export const TINY_BPE_VOCAB = 270;

export function tinyArch(family: ArchFamily, overrides: Partial<ArchConfig> = {}): ArchConfig {
  const common = { vocabSize: TINY_BPE_VOCAB, maxPositions: 64, bosTokenId: null, eosTokenIds: [269] };
  let arch: ArchConfig;
  switch (family) {
    case 'llama':
      arch = {
        ...common, family, hfArchitecture: 'LlamaForCausalLM', hiddenSize: 32, intermediateSize: 48, nLayer: 2, nHead: 4, nKvHead: 2,
        headDim: 8, norm: 'rmsnorm', normEps: 1e-5, mlp: 'swiglu', positions: 'rope', ropeTheta: 10000,
        ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
        tiedEmbeddings: true, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false,
      };
      break;
    case 'qwen2':
      arch = {
        ...common, family, hfArchitecture: 'Qwen2ForCausalLM', hiddenSize: 32, intermediateSize: 40, nLayer: 2, nHead: 4, nKvHead: 2,
        headDim: 8, norm: 'rmsnorm', normEps: 1e-6, mlp: 'swiglu', positions: 'rope', ropeTheta: 1000000, ropeScaling: null,
        tiedEmbeddings: false, qkvBias: true, oBias: false, mlpBias: false, qkNorm: false,
      };
      break;
    case 'qwen3':
      arch = {
        ...common, family, hfArchitecture: 'Qwen3ForCausalLM', hiddenSize: 32, intermediateSize: 48, nLayer: 2, nHead: 4, nKvHead: 1,
        headDim: 16, norm: 'rmsnorm', normEps: 1e-6, mlp: 'swiglu', positions: 'rope', ropeTheta: 1000000, ropeScaling: null,
        tiedEmbeddings: true, qkvBias: false, oBias: false, mlpBias: false, qkNorm: true,
      };
      break;
    case 'gpt2':
      arch = {
        ...common, family, hfArchitecture: 'GPT2LMHeadModel', hiddenSize: 32, intermediateSize: 128, nLayer: 2, nHead: 4, nKvHead: 4,
        headDim: 8, norm: 'layernorm', normEps: 1e-5, mlp: 'gelu', positions: 'learned', ropeTheta: 10000, ropeScaling: null,
        tiedEmbeddings: true, qkvBias: true, oBias: true, mlpBias: true, qkNorm: false,
      };
      break;
  }
  return { ...arch, ...overrides };
}

/** Every tensor name and shape of `arch` under Hugging Face naming (GPT-2 with the `transformer.` prefix): the loader's own list. */
export const hfTensorShapes = expectedHfTensors;

/**
 * Random weights for `arch`: matrices N(0, std²) (std 0.2 by default, so the next-token
 * distributions are far from uniform and logprob comparisons are sensitive), norm gains 1 + N(0, 0.1²),
 * biases N(0, 0.1²). Deterministic in `seed`; every value is F32-representable.
 */
export function randomHfTensors(arch: ArchConfig, seed = 1, std = 0.2): HfTensors {
  const rng = new Rng(seed);
  const out: HfTensors = new Map();
  for (const [name, shape] of hfTensorShapes(arch)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = /(layernorm|ln_\d|ln_f|norm)\.weight$/.test(name);
    const isBias = name.endsWith('.bias');
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + 0.1 * rng.normal() : isBias ? 0.1 * rng.normal() : std * rng.normal();
    out.set(name, { shape, data, dtype: 'F32' });
  }
  return out;
}

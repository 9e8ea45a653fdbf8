/**
 * Writes a tiny random open-weight model as a Hugging Face directory (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json), to try `agentrl train --model` without downloading weights:
 * the architecture of the family (Llama: grouped-query attention, SwiGLU, RMSNorm, RoPE; Qwen2: q/k/v
 * biases, untied head; Qwen3: q/k norms, head_dim ≠ hidden/heads; GPT-2: learned positions, GELU,
 * biases) at toy size, the tiny byte-level BPE tokenizer of test/fixtures/tiny-bpe, and weights drawn
 * as a fresh model's (N(0, 0.02²) matrices, unit norm gains, zero biases).
 *
 *   node --import tsx examples/make-tiny-model.ts --family llama --out runs/tiny-llama [--hidden 64] [--layers 2] [--seed 0]
 *   agentrl train examples/configs/kuhn-llama-tiny.yaml --model runs/tiny-llama
 *
 * A real model (e.g. SmolLM2-135M, Qwen2.5-0.5B-Instruct) is trained the same way: pass its directory.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { ArchConfig, ArchFamily, HfTensors } from '../src/engine/arch.ts';
import { expectedHfTensors, writeHfModelDir } from '../src/engine/hf-weights.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { Rng } from '../src/core/rng.ts';

const TOKENIZER_DIR = fileURLToPath(new URL('../test/fixtures/tiny-bpe', import.meta.url));

/** A toy-size architecture of `family`: `hidden` wide (4 query heads), `layers` deep. */
export function tinyFamilyArch(family: ArchFamily, hidden: number, layers: number, vocabSize: number, eosId: number): ArchConfig {
  const nHead = 4, headDim = hidden / nHead;
  const base = { family, vocabSize, hiddenSize: hidden, nLayer: layers, nHead, bosTokenId: null, eosTokenIds: [eosId], normEps: 1e-6, ropeTheta: 10000, ropeScaling: null };
  const rope = { norm: 'rmsnorm', mlp: 'swiglu', positions: 'rope', maxPositions: 2048, intermediateSize: 3 * hidden, oBias: false, mlpBias: false } as const;
  switch (family) {
    case 'llama':
      return { ...base, ...rope, hfArchitecture: 'LlamaForCausalLM', nKvHead: 2, headDim, tiedEmbeddings: true, qkvBias: false, qkNorm: false };
    case 'qwen2':
      return { ...base, ...rope, hfArchitecture: 'Qwen2ForCausalLM', nKvHead: 2, headDim, tiedEmbeddings: false, qkvBias: true, qkNorm: false };
    case 'qwen3':
      return { ...base, ...rope, hfArchitecture: 'Qwen3ForCausalLM', nKvHead: 1, headDim: 2 * headDim, tiedEmbeddings: true, qkvBias: false, qkNorm: true };
    case 'gpt2':
      return {
        ...base, hfArchitecture: 'GPT2LMHeadModel', nKvHead: nHead, headDim, intermediateSize: 4 * hidden, maxPositions: 1024, norm: 'layernorm', normEps: 1e-5,
        mlp: 'gelu', positions: 'learned', tiedEmbeddings: true, qkvBias: true, oBias: true, mlpBias: true, qkNorm: false,
      };
  }
}

/** Weights of a fresh model: matrices N(0, 0.02²), norm gains 1, biases 0. */
export function freshHfTensors(arch: ArchConfig, seed: number): HfTensors {
  const rng = new Rng(seed);
  const out: HfTensors = new Map();
  for (const [name, shape] of expectedHfTensors(arch)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/(layernorm|ln_\d|ln_f|norm)\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith('.bias')) for (let i = 0; i < data.length; i++) data[i] = 0.02 * rng.normal();
    out.set(name, { shape, data, dtype: 'F32' });
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      family: { type: 'string', default: 'llama' }, out: { type: 'string' }, hidden: { type: 'string', default: '64' },
      layers: { type: 'string', default: '2' }, seed: { type: 'string', default: '0' }, overwrite: { type: 'boolean', default: false },
    },
  });
  const families: ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];
  const family = values.family as ArchFamily;
  if (!families.includes(family)) throw new Error(`--family must be one of ${families.join(', ')}, got '${values.family}'`);
  if (!values.out) throw new Error('--out DIR is required (the model directory to write)');
  const hidden = Number(values.hidden), layers = Number(values.layers), seed = Number(values.seed);
  if (!Number.isInteger(hidden) || hidden < 8 || hidden % 8 !== 0) throw new Error(`--hidden must be a multiple of 8 (4 heads of an even width), got '${values.hidden}'`);
  if (!Number.isInteger(layers) || layers < 1) throw new Error(`--layers must be an integer ≥ 1, got '${values.layers}'`);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got '${values.seed}'`);
  const tokenizer = HfTokenizer.fromDirectory(TOKENIZER_DIR);
  const arch = tinyFamilyArch(family, hidden, layers, tokenizer.vocabSize, tokenizer.eosId);
  const { files } = await writeHfModelDir(values.out, arch, freshHfTensors(arch, seed), { dtype: 'F32', tokenizerFrom: TOKENIZER_DIR, overwrite: values.overwrite });
  console.log(`wrote ${values.out}: ${arch.hfArchitecture}, hidden ${hidden}, ${layers} layers, vocabulary ${arch.vocabSize} (${files.join(', ')})`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(`make-tiny-model: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}

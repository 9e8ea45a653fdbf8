/**
 * Hugging Face models on the built-in transformer (src/engine/hf-model.ts): for every family the
 * engine's per-token logprobs equal the independent float64 reference (test/helpers/reference-forward.ts,
 * written from transformers' modeling code) on the same random weights, on the JS path and every
 * native path; the sampler's path (prefill + batched decode over rows of different lengths) gives
 * the same logprobs; and HF → model → HF is bit-identical.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchConfig, HfTensors } from '../src/engine/arch.ts';
import type { Backend } from '../src/engine/backend.ts';
import { loadHfIntoModel, loadHfModel, modelConfigFromArch, modelToHfTensors } from '../src/engine/hf-model.ts';
import { expectedHfTensors, writeHfModelDir } from '../src/engine/hf-weights.ts';
import { Transformer } from '../src/engine/model.ts';
import { referenceLogprobs } from './helpers/reference-forward.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';
import { allBackendsByThreads } from './helpers/backends.ts';
import { Rng } from '../src/core/rng.ts';
import { logSoftmaxF64 as logSoftmax } from '../src/engine/sampling.ts';

const TINY_BPE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-hf-model-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Every family, plus the variants the issue names: Llama with explicit head_dim ≠ hidden/heads, linear RoPE scaling, biases, untied head. */
const ARCHS: [string, ArchConfig][] = [
  ['llama (GQA, llama3 rope scaling, tied)', tinyArch('llama')],
  ['qwen2 (q/k/v biases, untied)', tinyArch('qwen2')],
  ['qwen3 (q/k norms, head_dim 16 ≠ 32/4, one KV head)', tinyArch('qwen3')],
  ['gpt2', tinyArch('gpt2')],
  ['llama, head_dim 12 ≠ 32/4, linear rope scaling, untied', tinyArch('llama', { headDim: 12, ropeScaling: { type: 'linear', factor: 4 }, tiedEmbeddings: false })],
  ['llama with attention_bias and mlp_bias, multi-head', tinyArch('llama', { nKvHead: 4, qkvBias: true, oBias: true, mlpBias: true, ropeScaling: null })],
];

/** JS and every native GEMM path, serial and with 2 threads (the kernels' parallel loops split rows and heads). */
const BACKENDS = allBackendsByThreads([1, 2]);

/** Rows of different lengths; every id in the tiny-BPE vocabulary. */
function rows(seed: number, lengths: number[], V: number): number[][] {
  const rng = new Rng(seed);
  return lengths.map((n) => Array.from({ length: n }, () => rng.int(V)));
}

function loaded(arch: ArchConfig, tensors: HfTensors, backend: Backend, contextLength = 32): Transformer {
  const model = new Transformer(modelConfigFromArch(arch, { contextLength }), backend, 5);
  loadHfIntoModel(model, arch, tensors);
  return model;
}


describe.each(BACKENDS.map((b) => [`${b.name}×${b.threads}`, b] as const))('Hugging Face models on %s', (_name, backend) => {
  describe.each(ARCHS)('%s', (_label, arch) => {
    const tensors = randomHfTensors(arch, 3);
    const seqs = rows(17, [23, 9, 16], arch.vocabSize);
    const reference = seqs.map((s) => referenceLogprobs(arch, tensors, s));

    it('forward: logprobs and entropies of the next tokens equal the float64 reference (≤ 1e-4)', () => {
      const model = loaded(arch, tensors, backend);
      const B = seqs.length, T = Math.max(...seqs.map((s) => s.length));
      const tokens = new Int32Array(B * T), targets = new Int32Array(B * T).fill(-1);
      seqs.forEach((s, b) => s.forEach((tok, t) => {
        tokens[b * T + t] = tok;
        if (t + 1 < s.length) targets[b * T + t] = s[t + 1]!;
      }));
      const { logprobs, entropy } = model.forward({ B, T, tokens, targets });
      let worst = 0, checked = 0, spread = 0;
      seqs.forEach((s, b) => {
        for (let t = 0; t + 1 < s.length; t++) {
          const ref = reference[b]![t]!;
          const want = ref[s[t + 1]!]!;
          let h = 0;
          for (const lp of ref) h -= Math.exp(lp) * lp;
          worst = Math.max(worst, Math.abs(logprobs[b * T + t]! - want), Math.abs(entropy[b * T + t]! - h));
          spread = Math.max(spread, Math.abs(want - ref[s[t]!]!));
          checked++;
        }
      });
      expect(checked).toBe(22 + 8 + 15);
      expect(spread).toBeGreaterThan(0.5); // far from uniform: the comparison is sensitive
      expect(worst).toBeLessThanOrEqual(1e-4);
    });

    it('prefill + batched decode (rows of different lengths, a retired row) give the reference logprobs', () => {
      const model = loaded(arch, tensors, backend);
      const cache = model.newKVCache(3);
      // Prompts of different lengths; then teacher-forced decoding of the rest of each row.
      const prompt = [5, 2, 8];
      const active = [0, 1, 2]; // slot i holds row active[i]
      const pos = prompt.slice();
      let worst = 0;
      const compare = (row: number, t: number, logits: ArrayLike<number>) => {
        const lp = logSoftmax(logits), ref = reference[row]![t]!;
        for (let v = 0; v < lp.length; v++) worst = Math.max(worst, Math.abs(lp[v]! - ref[v]!));
      };
      active.forEach((row, slot) => compare(row, prompt[row]! - 1, model.prefill(cache, slot, seqs[row]!.slice(0, prompt[row]))));
      const tokens = new Int32Array(3);
      let steps = 0;
      while (active.length > 0) {
        active.forEach((row, slot) => { tokens[slot] = seqs[row]![pos[row]!]!; });
        const logits = model.decode(cache, tokens, active.length);
        const V = arch.vocabSize;
        active.forEach((row, slot) => {
          compare(row, pos[row]!, logits.subarray(slot * V, (slot + 1) * V));
          pos[row]!++;
        });
        steps++;
        // Retire finished rows as the engine does: the last active slot moves into the freed one.
        for (let slot = active.length - 1; slot >= 0; slot--) {
          const row = active[slot]!;
          if (pos[row]! < seqs[row]!.length) continue;
          const last = active.length - 1;
          cache.moveSlot(last, slot);
          active[slot] = active[last]!;
          active.pop();
        }
      }
      expect(steps).toBe(23 - 5);
      expect(cache.k[0]!.length).toBe(3 * 32 * arch.nKvHead * arch.headDim); // the cache holds the KV heads only
      expect(worst).toBeLessThanOrEqual(1e-4);
    });
  });
});

describe('HF → model → HF', () => {
  it.each(ARCHS)('%s: bit-identical round trip, every tensor of the architecture', (_label, arch) => {
    const tensors = randomHfTensors(arch, 9);
    const model = loaded(arch, tensors, BACKENDS[0]!, arch.maxPositions);
    const back = modelToHfTensors(model, arch);
    expect([...back.keys()].sort()).toEqual([...expectedHfTensors(arch).keys()].sort());
    for (const [name, t] of tensors) {
      const b = back.get(name)!;
      expect(b.shape, name).toEqual(t.shape);
      expect(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), name).toBe(true);
    }
  });

  it('GPT-2 names without the transformer. prefix load the same weights', () => {
    const arch = tinyArch('gpt2');
    const tensors = randomHfTensors(arch, 4);
    const bare: HfTensors = new Map([...tensors].map(([k, v]) => [k.replace(/^transformer\./, ''), v]));
    const a = loaded(arch, tensors, BACKENDS[0]!), b = loaded(arch, bare, BACKENDS[0]!);
    expect(b.params).toEqual(a.params);
  });

  it('the q/k rows are reordered per head for the interleaved rotary kernel (HF row i → 2i, i + hd/2 → 2i + 1)', () => {
    const arch = tinyArch('qwen2', { nLayer: 1 });
    const tensors = randomHfTensors(arch, 2);
    const model = loaded(arch, tensors, BACKENDS[0]!);
    const C = arch.hiddenSize, hd = arch.headDim, qkv = model.view(model.params, 'h0.attn.qkv.w'), qkvb = model.view(model.params, 'h0.attn.qkv.b');
    const qW = tensors.get('model.layers.0.self_attn.q_proj.weight')!.data, kB = tensors.get('model.layers.0.self_attn.k_proj.bias')!.data;
    const vW = tensors.get('model.layers.0.self_attn.v_proj.weight')!.data;
    // q head 1, HF rows 1 and 1 + hd/2 = 5 → engine rows 2 and 3 of that head.
    expect(Array.from(qkv.subarray((hd + 2) * C, (hd + 3) * C))).toEqual(Array.from(qW.subarray((hd + 1) * C, (hd + 2) * C)));
    expect(Array.from(qkv.subarray((hd + 3) * C, (hd + 4) * C))).toEqual(Array.from(qW.subarray((hd + 5) * C, (hd + 6) * C)));
    // k bias of kv head 0: HF entry 3 → engine 6, HF 7 → engine 7; v rows are copied unchanged.
    const kOff = arch.nHead * hd, vOff = kOff + arch.nKvHead * hd;
    expect(qkvb[kOff + 6]).toBe(kB[3]);
    expect(qkvb[kOff + 7]).toBe(kB[7]);
    expect(Array.from(qkv.subarray(vOff * C, (vOff + 2) * C))).toEqual(Array.from(vW.subarray(0, 2 * C)));
  });
});

describe('errors name the tensor or the field', () => {
  const arch = tinyArch('qwen2');
  const be = BACKENDS[0]!;
  const model = () => new Transformer(modelConfigFromArch(arch, { contextLength: 16 }), be);

  it('missing, misshapen and unexpected tensors', () => {
    const t = randomHfTensors(arch, 1);
    const missing = new Map(t);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => loadHfIntoModel(model(), arch, missing)).toThrow(/missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight' \[40, 32\]/);
    const bad = new Map(t);
    bad.set('model.layers.0.self_attn.k_proj.bias', { shape: [32], data: new Float32Array(32), dtype: 'F32' });
    expect(() => loadHfIntoModel(model(), arch, bad)).toThrow(/tensor 'model\.layers\.0\.self_attn\.k_proj\.bias' has shape \[32\], expected \[16\]/);
    const extra = new Map(t);
    extra.set('model.layers.0.self_attn.o_proj.bias', { shape: [32], data: new Float32Array(32), dtype: 'F32' });
    expect(() => loadHfIntoModel(model(), arch, extra)).toThrow(/unexpected tensor 'model\.layers\.0\.self_attn\.o_proj\.bias'/);
    const buffers = new Map(t);
    buffers.set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [4], data: new Float32Array(4), dtype: 'F32' });
    expect(() => loadHfIntoModel(model(), arch, buffers)).not.toThrow(); // a transformers buffer, not a parameter
  });

  it('a model built for another architecture', () => {
    const other = new Transformer(modelConfigFromArch(tinyArch('qwen2', { nKvHead: 4 })), be);
    expect(() => loadHfIntoModel(other, arch, randomHfTensors(arch, 1))).toThrow(/the model's nKvHead is 4 but Qwen2ForCausalLM needs 2/);
  });

  it('contextLength: defaults to min(maxPositions, 4096); learned positions cannot exceed maxPositions', () => {
    expect(modelConfigFromArch(arch).contextLength).toBe(64);
    expect(modelConfigFromArch({ ...arch, maxPositions: 32768 }).contextLength).toBe(4096);
    expect(modelConfigFromArch(arch, { contextLength: 128 }).contextLength).toBe(128); // RoPE extrapolates
    expect(() => modelConfigFromArch(tinyArch('gpt2'), { contextLength: 65 })).toThrow(/contextLength 65 exceeds maxPositions 64: the model has learned position embeddings/);
    const short = loaded(tinyArch('gpt2'), randomHfTensors(tinyArch('gpt2'), 1), be, 16);
    expect(() => modelToHfTensors(short, tinyArch('gpt2'))).toThrow(/16 learned positions but arch\.maxPositions is 64; export with \{ \.\.\.arch, maxPositions: 16 \}/);
    expect(modelToHfTensors(short, { ...tinyArch('gpt2'), maxPositions: 16 }).get('transformer.wpe.weight')!.shape).toEqual([16, 32]);
  });
});

describe('loadHfModel', () => {
  it('reads a model directory with its tokenizer; the loaded model scores like the reference', async () => {
    const arch = tinyArch('qwen3');
    const tensors = randomHfTensors(arch, 6);
    const dir = join(scratch, 'qwen3');
    await writeHfModelDir(dir, arch, tensors, { dtype: 'F32', tokenizerFrom: TINY_BPE });
    const { model, arch: read, tokenizer } = await loadHfModel(dir, BACKENDS[0]!, { contextLength: 24 });
    expect(read).toEqual(arch);
    expect(model.config.contextLength).toBe(24);
    expect(tokenizer?.vocabSize).toBe(270);
    const ids = tokenizer!.encode('hello world, hello tokens');
    expect(ids.length).toBeGreaterThan(3);
    const targets = Int32Array.from(ids, (_, i) => (i + 1 < ids.length ? ids[i + 1]! : -1));
    const { logprobs } = model.forward({ B: 1, T: ids.length, tokens: Int32Array.from(ids), targets });
    const ref = referenceLogprobs(arch, tensors, ids);
    for (let t = 0; t + 1 < ids.length; t++) expect(Math.abs(logprobs[t]! - ref[t]![ids[t + 1]!]!)).toBeLessThanOrEqual(1e-4);
  });
});

/** Checks of the float64 reference forward pass (test/helpers/reference-forward.ts) that need no llama.cpp. */
import { describe, expect, it } from 'vitest';
import type { ArchConfig, HfTensors } from '../src/engine/arch.ts';
import { ropeInvFreq } from '../src/engine/rope-freq.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';
import { referenceInvFreq, referenceLogprobs } from './helpers/reference-forward.ts';

describe('reference forward pass', () => {
  it('its RoPE frequencies agree with src/engine/rope-freq.ts (default, linear, llama3)', () => {
    const archs: ArchConfig[] = [
      tinyArch('qwen3'),
      tinyArch('llama'),
      tinyArch('llama', { ropeScaling: { type: 'linear', factor: 4 } }),
      tinyArch('llama', { headDim: 64, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } }),
    ];
    for (const arch of archs) {
      const ours = referenceInvFreq(arch), theirs = ropeInvFreq(arch);
      expect(ours.length).toBe(arch.headDim / 2);
      ours.forEach((f, i) => expect(Math.abs(f - theirs[i]!) / f).toBeLessThan(1e-12));
    }
    // Hand-computed: tiny llama, θ = 10⁴, head 8, llama3 (factor 8, low 1, high 4, original 16).
    const s = (16 / (2 * Math.PI) - 1) / 3;
    const want = [(1 - s) / 8 + s, 0.1 / 8, 0.01 / 8, 0.001 / 8];
    referenceInvFreq(tinyArch('llama')).forEach((f, i) => expect(f).toBeCloseTo(want[i]!, 12));
  });

  it('hand-computed: with attention and MLP weights zero, logits are RMSNorm(embedding)·Eᵀ', () => {
    const arch = tinyArch('llama', { vocabSize: 3, hiddenSize: 2, intermediateSize: 2, nLayer: 1, nHead: 1, nKvHead: 1, headDim: 2, ropeScaling: null });
    const t: HfTensors = randomHfTensors(arch, 1);
    for (const [name, x] of t) t.set(name, { ...x, data: name.includes('norm') ? x.data.fill(1) : x.data.fill(0) });
    t.set('model.embed_tokens.weight', { shape: [3, 2], data: Float32Array.from([1, 0, 0, 2, 1, 1]), dtype: 'F32' });
    const lp = referenceLogprobs(arch, t, [1]);
    // Token 1: e = [0, 2], rms = √((0 + 4)/2 + ε) → x̂ = [0, 2/rms]; logits = x̂·e_v = [0, 4/rms, 2/rms].
    const r = Math.sqrt(2 + 1e-5);
    const z = [0, 4 / r, 2 / r];
    const lse = Math.log(z.reduce((a, v) => a + Math.exp(v), 0));
    lp[0]!.forEach((v, i) => expect(v).toBeCloseTo(z[i]! - lse, 12));
  });

  it('is causal and normalised for every family', () => {
    for (const family of ['llama', 'qwen2', 'qwen3', 'gpt2'] as const) {
      const arch = tinyArch(family);
      const t = randomHfTensors(arch, 4);
      const a = referenceLogprobs(arch, t, [5, 6, 7, 8]);
      const b = referenceLogprobs(arch, t, [5, 6, 7, 200]);
      for (let p = 0; p < 3; p++) expect(Array.from(b[p]!)).toEqual(Array.from(a[p]!));
      expect(Array.from(b[3]!)).not.toEqual(Array.from(a[3]!));
      for (const row of a) expect(row.reduce((s, v) => s + Math.exp(v), 0)).toBeCloseTo(1, 12);
    }
  });

  it('accepts GPT-2 tensor names without the transformer. prefix', () => {
    const arch = tinyArch('gpt2');
    const t = randomHfTensors(arch, 2);
    const bare: HfTensors = new Map([...t].map(([n, x]) => [n.replace(/^transformer\./, ''), x]));
    expect(referenceLogprobs(arch, bare, [1, 2, 3])).toEqual(referenceLogprobs(arch, t, [1, 2, 3]));
  });
});

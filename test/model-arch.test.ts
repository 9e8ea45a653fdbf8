/**
 * The transformer's open-weight features (grouped-query attention, headDim ≠ nEmbd/nHead, SwiGLU,
 * q/k norms, bias switches, untied head, scaled RoPE): whole-model gradient checks of every feature
 * combination on every backend, prefill + decode against the full forward, config validation, and
 * the default layout unchanged (old checkpoints load).
 */
import { describe, expect, it } from 'vitest';
import { paramLayout, parseModelConfig, Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { Rng } from '../src/core/rng.ts';
import { allBackends, allBackendsByThreads } from './helpers/backends.ts';
import { gradientErrors, objective, randomBatch } from './helpers/model-objective.ts';

const BASE = { vocabSize: 11, contextLength: 8, nLayer: 2, nHead: 4, nEmbd: 8, initStd: 0.3 } satisfies ModelConfigInput;

/** Feature combinations; each turns on something the GPT-2 defaults do not have. */
const VARIANTS: { name: string; cfg: Partial<ModelConfigInput> }[] = [
  { name: 'llama: GQA 4/2, swiglu, rmsnorm, rope llama3, no biases, untied', cfg: { nKvHead: 2, mlp: 'swiglu', intermediateSize: 12, norm: 'rmsnorm', positions: 'rope', qkvBias: false, oBias: false, mlpBias: false, tiedEmbeddings: false, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 6 } } },
  { name: 'qwen2: GQA 4/2, swiglu, q/k/v biases only, rope linear, untied', cfg: { nKvHead: 2, mlp: 'swiglu', intermediateSize: 10, norm: 'rmsnorm', positions: 'rope', ropeBase: 1e6, qkvBias: true, oBias: false, mlpBias: false, tiedEmbeddings: false, ropeScaling: { type: 'linear', factor: 2 } } },
  { name: 'qwen3: q/k norms, headDim 6 ≠ 8/4, one KV head, tied', cfg: { nKvHead: 1, headDim: 6, mlp: 'swiglu', intermediateSize: 12, norm: 'rmsnorm', positions: 'rope', qkvBias: false, oBias: false, mlpBias: false, qkNorm: true, normEps: 1e-6 } },
  { name: 'swiglu with every bias, layernorm, learned positions, GQA', cfg: { nKvHead: 2, mlp: 'swiglu', intermediateSize: 6 } },
  { name: 'gelu, headDim 3 (odd, learned positions), untied, q/k norms', cfg: { headDim: 3, nKvHead: 2, tiedEmbeddings: false, qkNorm: true, mlpBias: false } },
];

/** Random non-trivial gains and biases, so a gradient that ignores one (e.g. a q-norm gain) is caught. */
function perturbVectors(m: Transformer, rng: Rng): void {
  for (const v of m.layout) {
    if (v.shape.length !== 1) continue;
    const view = m.view(m.params, v.name);
    for (let i = 0; i < view.length; i++) view[i] = view[i]! + 0.3 * rng.normal();
  }
}

describe.each(allBackendsByThreads([1, 2]).map((b) => [`${b.name}×${b.threads}`, b] as const))('open-weight features on %s', (_name, backend) => {
  it.each(VARIANTS)('$name: analytic gradients match central finite differences', ({ cfg }) => {
    const m = new Transformer({ ...BASE, ...cfg }, backend, 7);
    const rng = new Rng(11);
    perturbVectors(m, rng);
    const batch = randomBatch(rng, 2, 5, BASE.vocabSize, true);
    const N = batch.B * batch.T, temp = 0.8;
    const r = Float32Array.from({ length: N }, () => rng.normal());
    const s = Float32Array.from({ length: N }, () => rng.normal() * 0.5);
    objective(m, batch, temp, r, s);
    m.zeroGrad();
    m.backward(r, s);
    const grad = Float64Array.from(m.grads);
    // As test/model.test.ts: a spread of coordinates per tensor, norm-wise relative error.
    for (const { name, err, analyticNorm2 } of gradientErrors(m, grad, () => objective(m, batch, temp, r, s))) {
      expect(analyticNorm2, `${name}: the gradient is not all zero`).toBeGreaterThan(0);
      expect(err, `${name}: relative error ${err}`).toBeLessThan(1e-3);
    }
  });

  it.each(VARIANTS)('$name: prefill + batched decode give the full forward\'s logprobs', ({ cfg }) => {
    const m = new Transformer({ ...BASE, ...cfg }, backend, 3);
    perturbVectors(m, new Rng(2));
    const V = BASE.vocabSize, T = BASE.contextLength, rng = new Rng(5);
    const seqs = [3, 1, 2].map(() => Array.from({ length: T }, () => rng.int(V)));
    // Full forward: the logprob of every next token.
    const tokens = Int32Array.from(seqs.flat()), targets = Int32Array.from(seqs.flatMap((s) => s.map((_, t) => (t + 1 < T ? s[t + 1]! : -1))));
    const full = Float32Array.from(m.forward({ B: 3, T, tokens, targets }).logprobs);
    // Prompts of lengths 3, 1, 2, then decode to the end together.
    const cache = m.newKVCache(3), pos = [3, 1, 2];
    const lp = (logits: ArrayLike<number>, target: number) => {
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, logits[v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[v]! - mx);
      return logits[target]! - mx - Math.log(z);
    };
    let worst = 0;
    seqs.forEach((s, b) => { worst = Math.max(worst, Math.abs(lp(m.prefill(cache, b, s.slice(0, pos[b])), s[pos[b]!]!) - full[b * T + pos[b]! - 1]!)); });
    const step = new Int32Array(3);
    for (let k = 0; k < T - 4; k++) { // row 0 (prompt 3) scores positions 3..6: the last one with a next token
      seqs.forEach((s, b) => { step[b] = s[pos[b]!]!; });
      const logits = m.decode(cache, step, 3);
      seqs.forEach((s, b) => {
        const t = pos[b]!;
        worst = Math.max(worst, Math.abs(lp(logits.subarray(b * V, (b + 1) * V), s[t + 1]!) - full[b * T + t]!));
        pos[b]!++;
      });
    }
    expect(worst).toBeLessThan(2e-5);
  });
});

describe('model config: open-weight fields', () => {
  it('the defaults keep the GPT-2 layout exactly (old checkpoints load)', () => {
    const c = parseModelConfig({ vocabSize: 5, contextLength: 4, nLayer: 1, nHead: 2, nEmbd: 4 });
    expect(c).toMatchObject({ nKvHead: 2, headDim: 2, intermediateSize: 16, mlp: 'gelu', tiedEmbeddings: true, qkvBias: true, oBias: true, mlpBias: true, qkNorm: false, normEps: 1e-5, ropeScaling: null });
    expect(paramLayout(c).map((v) => [v.name, v.shape, v.offset])).toEqual([
      ['wte', [5, 4], 0], ['wpe', [4, 4], 20],
      ['h0.ln1.w', [4], 36], ['h0.ln1.b', [4], 40], ['h0.attn.qkv.w', [12, 4], 44], ['h0.attn.qkv.b', [12], 92],
      ['h0.attn.proj.w', [4, 4], 104], ['h0.attn.proj.b', [4], 120], ['h0.ln2.w', [4], 124], ['h0.ln2.b', [4], 128],
      ['h0.mlp.fc.w', [16, 4], 132], ['h0.mlp.fc.b', [16], 196], ['h0.mlp.proj.w', [4, 16], 212], ['h0.mlp.proj.b', [4], 276],
      ['lnf.w', [4], 280], ['lnf.b', [4], 284],
    ]);
    // Parsing a parsed config changes nothing (checkpoints store the parsed form).
    expect(parseModelConfig(c)).toEqual(c);
  });

  it('the new tensors and shapes: GQA qkv, q/k norms, fused [gate | up], lm_head, no disabled biases', () => {
    const c = parseModelConfig({
      vocabSize: 5, contextLength: 4, nLayer: 1, nHead: 4, nKvHead: 2, headDim: 2, nEmbd: 8, mlp: 'swiglu', intermediateSize: 6,
      norm: 'rmsnorm', positions: 'rope', oBias: false, mlpBias: false, qkNorm: true, tiedEmbeddings: false,
    });
    expect(paramLayout(c).map((v) => [v.name, v.shape, v.offset, v.decay])).toEqual([
      ['wte', [5, 8], 0, true], ['h0.ln1.w', [8], 40, false],
      ['h0.attn.qkv.w', [16, 8], 48, true], ['h0.attn.qkv.b', [16], 176, false], // (4 + 2·2)·2 rows: q | k | v
      ['h0.attn.qnorm.w', [2], 192, false], ['h0.attn.knorm.w', [2], 194, false],
      ['h0.attn.proj.w', [8, 8], 196, true], ['h0.ln2.w', [8], 260, false],
      ['h0.mlp.fc.w', [12, 8], 268, true], ['h0.mlp.proj.w', [8, 6], 364, true],
      ['lnf.w', [8], 412, false], ['lm_head.w', [5, 8], 420, true],
    ]);
    const m = new Transformer(c, allBackends()[0]!, 1);
    expect(m.numParams).toBe(460);
    expect(Array.from(m.view(m.params, 'h0.attn.qnorm.w'))).toEqual([1, 1]); // gains start at 1
    expect(m.newKVCache(3).k[0]!.length).toBe(3 * 4 * 2 * 2); // slots · contextLength · nKvHead·headDim
  });

  it('validation errors name the field', () => {
    const bad = (extra: Partial<ModelConfigInput>) => () => parseModelConfig({ ...BASE, ...extra });
    expect(bad({ nKvHead: 3 })).toThrow(/model\.nKvHead: nHead \(4\) must be divisible by nKvHead \(3\)/);
    expect(bad({ positions: 'rope', headDim: 5 })).toThrow(/model\.headDim: rotary positions need an even head size; headDim = 5/);
    expect(bad({ nHead: 8, positions: 'rope' })).toThrow(/model\.nHead: rotary positions need an even head size; nEmbd\/nHead = 1/);
    expect(bad({ ropeScaling: { type: 'linear', factor: 2 } })).toThrow(/model\.ropeScaling: applies to rotary positions only/);
    expect(bad({ positions: 'rope', ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 1, originalMaxPositions: 8 } })).toThrow(/model\.ropeScaling: llama3 scaling needs highFreqFactor \(1\) > lowFreqFactor \(4\)/);
    expect(bad({ mlp: 'relu' as never })).toThrow(/model\.mlp/);
    expect(bad({ nEmbd: 9 })).toThrow(/model\.nEmbd: nEmbd \(9\) must be divisible by nHead \(4\) \(or set headDim\)/);
    expect(() => parseModelConfig({ ...BASE, nEmbd: 9, headDim: 2 })).not.toThrow(); // headDim frees nEmbd from nHead
  });
});

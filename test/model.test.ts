import { describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { Rng } from '../src/core/rng.ts';
import { allBackends } from './helpers/backends.ts';
import { gradientErrors, objective, randomBatch } from './helpers/model-objective.ts';

const TINY: ModelConfigInput = { vocabSize: 11, contextLength: 8, nLayer: 2, nHead: 2, nEmbd: 8, initStd: 0.3 };

const variants: { name: string; cfg: Partial<ModelConfigInput>; mask: boolean; temp: number }[] = [
  { name: 'layernorm+learned', cfg: { norm: 'layernorm', positions: 'learned' }, mask: false, temp: 1 },
  { name: 'rmsnorm+rope, masked, T=0.7', cfg: { norm: 'rmsnorm', positions: 'rope' }, mask: true, temp: 0.7 },
];

describe.each(allBackends().map((b) => [b.name, b] as const))('whole-model gradient check on %s', (_name, backend) => {
  it.each(variants)('$name: analytic gradients match central finite differences', ({ cfg, mask, temp }) => {
    const m = new Transformer({ ...TINY, ...cfg }, backend, 7);
    const rng = new Rng(11);
    const batch = randomBatch(rng, 2, 5, TINY.vocabSize, mask);
    const N = batch.B * batch.T;
    const r = Float32Array.from({ length: N }, () => rng.normal());
    const s = Float32Array.from({ length: N }, () => rng.normal() * 0.5);
    objective(m, batch, temp, r, s);
    m.zeroGrad();
    m.backward(r, s);
    const grad = Float64Array.from(m.grads);
    // A spread of coordinates in every parameter tensor, norm-wise relative error per tensor.
    let worst = 0;
    for (const { name, err } of gradientErrors(m, grad, () => objective(m, batch, temp, r, s))) {
      worst = Math.max(worst, err);
      expect(err, `${name}: relative error ${err}`).toBeLessThan(1e-3);
    }
    expect(worst).toBeLessThan(1e-3);
  });
});

describe('forward input validation', () => {
  const m = new Transformer(TINY, allBackends()[0]!, 1);
  it('rejects token ids outside the vocabulary', () => {
    const tokens = Int32Array.from([1, 2, 99, 3]);
    expect(() => m.forward({ B: 1, T: 4, tokens, targets: new Int32Array(4) })).toThrow(/token id 99 at position 2 is outside the vocabulary \[0, 11\)/);
  });
  it('rejects wrong shapes', () => {
    expect(() => m.forward({ B: 2, T: 4, tokens: new Int32Array(4), targets: new Int32Array(8) })).toThrow(/tokens has length 4, expected B\*T = 8/);
    expect(() => m.forward({ B: 1, T: 9, tokens: new Int32Array(9), targets: new Int32Array(9) })).toThrow(/exceeds the model's contextLength 8/);
    expect(() => m.forward({ B: 1, T: 2, tokens: new Int32Array(2), targets: new Int32Array(2), masks: new Uint8Array(3) })).toThrow(/masks has length 3/);
  });
  it('rejects a bad config naming the field', () => {
    expect(() => new Transformer({ ...TINY, nEmbd: 9 }, allBackends()[0]!)).toThrow(/model\.nEmbd: nEmbd \(9\) must be divisible by nHead \(2\)/);
    expect(() => new Transformer({ ...TINY, nLayer: 0 }, allBackends()[0]!)).toThrow(/model\.nLayer/);
  });
  it('backward without forward is an error', () => {
    const fresh = new Transformer(TINY, allBackends()[0]!, 1);
    expect(() => fresh.backward(new Float32Array(1), new Float32Array(1))).toThrow(/call forward first/);
  });
});

describe.each(allBackends().map((b) => [b.name, b] as const))('non-finite weights on %s', (_name, backend) => {
  const batch = { B: 1, T: 4, tokens: Int32Array.from([1, 2, 3, 4]), targets: Int32Array.from([2, 3, 4, 5]) };
  it('forward names the parameter holding NaN or Infinity (instead of logprob −∞, "every token masked")', () => {
    const m = new Transformer(TINY, backend, 1);
    const fc = m.view(m.params, 'h1.mlp.fc.w'); // [4·8, 8]
    fc[8 * 3 + 1] = NaN;
    expect(m.nonFiniteParam()).toEqual({ name: 'h1.mlp.fc.w', index: 25, value: NaN });
    expect(() => m.forward(batch)).toThrow(/^forward: the model's weights are not finite: parameter 'h1\.mlp\.fc\.w' holds NaN at \[3, 1\]/);
    fc[8 * 3 + 1] = 0;
    m.view(m.params, 'lnf.w')[2] = -Infinity;
    expect(() => m.forward(batch)).toThrow(/parameter 'lnf\.w' holds -Infinity at \[2\]/);
  });
  it('finite weights whose activations overflow are reported as such', () => {
    const m = new Transformer(TINY, backend, 1);
    m.view(m.params, 'lnf.w').fill(3e38); // finite gains whose products overflow float32 before the head
    expect(m.nonFiniteParam()).toBeNull();
    expect(() => m.forward(batch)).toThrow(/although every weight is finite: the activations overflowed/);
  });
});

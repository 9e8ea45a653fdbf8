/**
 * sampleToken: the reported logprob is that of the distribution actually sampled from (tempered,
 * constrained, and renormalised over the top-k / top-p kept set), the returned mask is that set, and
 * non-finite logits are an error rather than a silent draw.
 */
import { describe, expect, it } from 'vitest';
import { sampleToken, samplingDistribution } from '../src/engine/sampling.ts';
import { Rng } from '../src/core/rng.ts';

const V = 8;
const LOGITS = Float32Array.from([0.5, 2.0, -1.0, 1.5, 0.0, 3.0, -2.0, 1.0]); // order: 5, 1, 3, 7, 0, 4, 2, 6

/** log softmax of logits/T over the tokens with keep[v] = 1. */
function logprobOver(keep: (v: number) => boolean, id: number, T: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) if (keep(v)) max = Math.max(max, LOGITS[v]! / T);
  let sum = 0;
  for (let v = 0; v < V; v++) if (keep(v)) sum += Math.exp(LOGITS[v]! / T - max);
  return LOGITS[id]! / T - max - Math.log(sum);
}

function ones(m: Uint8Array | null): number[] {
  return m ? [...m].flatMap((x, v) => (x ? [v] : [])) : [];
}

describe('sampleToken', () => {
  const scratch = new Float64Array(V);

  it('without truncation reports the full tempered logprob and returns the constraint mask unchanged', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 20; i++) {
      const t = sampleToken(LOGITS, V, { temperature: 0.7, topK: 0, topP: 1, mask: null }, rng, scratch);
      expect(t.mask).toBeNull();
      expect(t.logprob).toBeCloseTo(logprobOver(() => true, t.id, 0.7), 6);
    }
    const cm = Uint8Array.from([1, 0, 1, 0, 1, 0, 1, 1]);
    const t = sampleToken(LOGITS, V, { temperature: 1, topK: 0, topP: 1, mask: cm }, rng, scratch);
    expect(t.mask).toBe(cm);
    expect(t.logprob).toBeCloseTo(logprobOver((v) => cm[v] === 1, t.id, 1), 6);
  });

  it('top-k: draws among the k best, reports the logprob renormalised over them and returns them as the mask', () => {
    const rng = new Rng(2);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const t = sampleToken(LOGITS, V, { temperature: 1.3, topK: 3, topP: 1, mask: null }, rng, scratch);
      seen.add(t.id);
      expect(ones(t.mask)).toEqual([1, 3, 5]);
      expect(t.logprob).toBeCloseTo(logprobOver((v) => [1, 3, 5].includes(v), t.id, 1.3), 6);
      expect(t.logprob).toBeGreaterThan(logprobOver(() => true, t.id, 1.3) + 1e-3); // really not the untruncated value
    }
    expect([...seen].sort()).toEqual([1, 3, 5]);
  });

  it('top-p: keeps the smallest prefix whose mass reaches p, intersected with the constraint mask', () => {
    const rng = new Rng(3);
    const cm = Uint8Array.from([1, 1, 1, 1, 1, 0, 1, 1]); // forbids the best token (5)
    // Among allowed tokens the order is 1, 3, 7, 0, ...; with p = 0.6 the kept set is {1, 3}.
    const p = (v: number) => Math.exp(LOGITS[v]!);
    const allowedSum = [0, 1, 2, 3, 4, 6, 7].reduce((a, v) => a + p(v), 0);
    expect(p(1) / allowedSum).toBeLessThan(0.6);
    expect((p(1) + p(3)) / allowedSum).toBeGreaterThanOrEqual(0.6);
    for (let i = 0; i < 50; i++) {
      const t = sampleToken(LOGITS, V, { temperature: 1, topK: 0, topP: 0.6, mask: cm }, rng, scratch);
      expect(ones(t.mask)).toEqual([1, 3]);
      expect(t.logprob).toBeCloseTo(logprobOver((v) => v === 1 || v === 3, t.id, 1), 6);
    }
  });

  it('top-k larger than the allowed set keeps the constraint mask as is', () => {
    const cm = Uint8Array.from([0, 1, 0, 1, 0, 0, 0, 0]);
    const t = sampleToken(LOGITS, V, { temperature: 1, topK: 5, topP: 1, mask: cm }, new Rng(4), scratch);
    expect(t.mask).toBe(cm);
    expect(t.logprob).toBeCloseTo(logprobOver((v) => cm[v] === 1, t.id, 1), 6);
  });

  it.each([
    ['NaN', Number.NaN],
    ['+Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('a %s logit is an error naming the problem, not a silent draw', (_name, bad) => {
    const logits = Float32Array.from(LOGITS);
    logits[2] = bad;
    for (const topK of [0, 3]) {
      expect(() => sampleToken(logits, V, { temperature: 1, topK, topP: 1, mask: null }, new Rng(5), scratch)).toThrow(/non-finite logits \(NaN\/Inf\)/);
    }
  });

  it('a constraint that allows no token is an error', () => {
    expect(() => sampleToken(LOGITS, V, { temperature: 1, topK: 0, topP: 1, mask: new Uint8Array(V) }, new Rng(6), scratch)).toThrow(/allows no token/);
  });
});

describe('samplingDistribution', () => {
  it('is the distribution sampleToken draws from: the same kept set and exp(logprob) for every token it returns', () => {
    const scratch = new Float64Array(V);
    const rng = new Rng(7);
    for (const o of [{ temperature: 1, topK: 0, topP: 1 }, { temperature: 0.7, topK: 3, topP: 1 }, { temperature: 0.7, topK: 0, topP: 0.8 }, { temperature: 1.3, topK: 5, topP: 0.6 }, { temperature: 1, topK: 1, topP: 1 }]) {
      const p = samplingDistribution(LOGITS, o);
      expect(p.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 12);
      for (let i = 0; i < 200; i++) {
        const s = sampleToken(LOGITS, V, { ...o, mask: null }, rng, scratch);
        expect(Math.exp(s.logprob)).toBeCloseTo(p[s.id]!, 6);
        // The kept set is where the distribution is positive (null: nothing was cut).
        const kept = s.mask ? ones(s.mask) : [...Array(V).keys()];
        expect(kept).toEqual([...p].flatMap((x, v) => (x > 0 ? [v] : [])));
      }
    }
    // Hand values: top-k 2 at T = 1 keeps tokens 5 and 1 (logits 3 and 2).
    const two = samplingDistribution(LOGITS, { temperature: 1, topK: 2, topP: 1 });
    expect(two[5]).toBeCloseTo(1 / (1 + Math.exp(-1)), 12);
    expect(two[1]).toBeCloseTo(1 / (1 + Math.exp(1)), 12);
    // A tie at the cut goes to the lower index, as in sampleToken.
    expect([...samplingDistribution([1, 1, 0], { temperature: 1, topK: 1, topP: 1 })]).toEqual([1, 0, 0]);
  });

  it('refuses bad input', () => {
    expect(() => samplingDistribution([], { temperature: 1, topK: 0, topP: 1 })).toThrow(/no logits/);
    expect(() => samplingDistribution([0, NaN], { temperature: 1, topK: 0, topP: 1 })).toThrow(/non-finite/);
    expect(() => samplingDistribution([0, 1], { temperature: 0, topK: 0, topP: 1 })).toThrow(/temperature must be > 0/);
  });
});

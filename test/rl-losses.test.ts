import { describe, expect, it } from 'vitest';
import { AGGREGATIONS, LossConfigSchema, aggregationWeights, policyLoss, type LossConfigInput, type TokenBatch } from '../src/rl/index.ts';

const close = (got: ArrayLike<number>, want: number[], tol = 1e-6) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(got[i]!, `index ${i}`).toBeCloseTo(w, -Math.log10(tol)));
};

describe('PPO (hand-computed, 5 tokens, token-mean)', () => {
  // log-ratios lp − old and advantages chosen so each branch is exercised:
  // t0 unclipped (A>0, r=e^0.1), t1 clipped high (A>0, r=e^0.3>1.2), t2 clipped low (A<0, r=e^-0.5<0.8),
  // t3 dual clip (A<0, r=e^1.5 → −A·r=4.48 > 3), t4 unclipped pessimistic branch (A<0, r=e^0.5).
  const old = [-1, -1, -1, -2, -1];
  const d = [0.1, 0.3, -0.5, 1.5, 0.5];
  const batch: TokenBatch = { logprobs: old.map((o, i) => o + d[i]!), oldLogprobs: old, advantages: [1, 1, -1, -1, -1] };

  it('loss, gradient and clip metrics with dual clip 3', () => {
    const out = policyLoss(batch, { kind: 'ppo', dualClip: 3 });
    // (−e^0.1 − 1.2 + 0.8 + 3 + e^0.5)/5 = (−1.1051709181 − 1.2 + 0.8 + 3 + 1.6487212707)/5
    expect(out.loss).toBeCloseTo(0.62871007052, 9);
    close(out.dLogp, [-0.22103418362, 0, 0, 0, 0.32974425414]);
    close(out.dEnt, [0, 0, 0, 0, 0]);
    expect(out.metrics.clipFrac).toBeCloseTo(0.4, 12);
    expect(out.metrics.dualClipFrac).toBeCloseTo(0.2, 12);
    expect(out.metrics.approxKl).toBeCloseTo(-0.38, 12);
  });

  it('without dual clip the large-ratio negative-advantage token keeps its gradient', () => {
    const out = policyLoss(batch, { kind: 'ppo', dualClip: null });
    // t3 term becomes e^1.5 = 4.4816890703
    expect(out.loss).toBeCloseTo((-1.1051709181 - 1.2 + 0.8 + 4.4816890703 + 1.6487212707) / 5, 9);
    close(out.dLogp, [-0.22103418362, 0, 0, 4.4816890703 / 5, 0.32974425414]);
    expect(out.metrics.dualClipFrac).toBe(0);
  });

  it('clip-higher (epsHigh 0.28) unclips a ratio of e^0.2 = 1.2214 but not e^0.3', () => {
    const out = policyLoss({ logprobs: [0.2, 0.3], oldLogprobs: [0, 0], advantages: [1, 1] }, { epsHigh: 0.28 });
    expect(out.loss).toBeCloseTo((-1.2214027582 - 1.28) / 2, 9);
    close(out.dLogp, [-1.2214027582 / 2, 0]);
  });
});

describe('decoupled PPO (hand-computed, 3 tokens)', () => {
  // t0: w = e^0.1, u = e^0.1, A = 1 → unclipped, term −e^0.2.
  // t1: w = e^2 = 7.39 > 5 → capped.  u = e^-0.1.
  // t2: w = 1, u = e^0.5 > 1.2, A = 1 → clipped, term −1.2.
  const batch: TokenBatch = {
    logprobs: [-0.8, -1.1, -1.5],
    proxLogprobs: [-0.9, -1, -2],
    oldLogprobs: [-1, -3, -2],
    advantages: [1, 1, 1],
  };

  it("capMode 'mask': the capped token contributes 0 but still counts in the token-mean denominator", () => {
    const out = policyLoss(batch, { kind: 'decoupled_ppo', behavCap: 5, capMode: 'mask' });
    expect(out.loss).toBeCloseTo((-1.2214027582 + 0 - 1.2) / 3, 9);
    close(out.dLogp, [-1.2214027582 / 3, 0, 0]);
    expect(out.metrics.cappedFrac).toBeCloseTo(1 / 3, 12);
    expect(out.metrics.clipFrac).toBeCloseTo(1 / 3, 12);
    expect(out.metrics.behavWeightMean).toBeCloseTo((Math.exp(0.1) + Math.exp(2) + 1) / 3, 9);
  });

  it("capMode 'clamp': the capped token gets weight 5", () => {
    const out = policyLoss(batch, { kind: 'decoupled_ppo', behavCap: 5, capMode: 'clamp' });
    // t1: 5 · (−e^-0.1) = −4.5241870901
    expect(out.loss).toBeCloseTo((-1.2214027582 - 4.5241870901 - 1.2) / 3, 9);
    close(out.dLogp, [-1.2214027582 / 3, -4.5241870901 / 3, 0]);
  });

  it('the ratio is taken against prox, not the behaviour policy', () => {
    const ppo = policyLoss(batch, { kind: 'ppo' });
    const dec = policyLoss(batch, { kind: 'decoupled_ppo', behavCap: null });
    expect(dec.loss).not.toBeCloseTo(ppo.loss, 3);
    expect(dec.metrics.approxKl).toBeCloseTo(-(0.1 - 0.1 + 0.5) / 3, 12);
  });
});

describe('KL and entropy terms (hand-computed)', () => {
  const base = { logprobs: [-1, -2], oldLogprobs: [-1, -2], advantages: [0, 0], refLogprobs: [-1.5, -1] };

  it('k1: logp − ref', () => {
    const out = policyLoss(base, { klCoef: 0.1, klKind: 'k1' });
    expect(out.loss).toBeCloseTo((0.1 * (0.5 - 1)) / 2, 12);
    close(out.dLogp, [0.05, 0.05]);
    expect(out.metrics.kl).toBeCloseTo(-0.25, 12);
  });

  it('k3 (low_var_kl): e^x − x − 1 with x = ref − logp', () => {
    const out = policyLoss(base, { klCoef: 0.1, klKind: 'k3' });
    // token 0: x = −0.5 → 0.1065306597, grad 1 − e^-0.5 = 0.3934693403
    // token 1: x = 1 → 0.7182818285, grad 1 − e = −1.7182818285
    expect(out.loss).toBeCloseTo((0.1 * (0.1065306597 + 0.7182818285)) / 2, 9);
    close(out.dLogp, [(0.1 * 0.3934693403) / 2, (0.1 * -1.7182818285) / 2]);
  });

  it('k3 is clamped at 10 with zero gradient (verl)', () => {
    const out = policyLoss({ logprobs: [-20], oldLogprobs: [-20], advantages: [0], refLogprobs: [0] }, { klCoef: 1, klKind: 'k3' });
    expect(out.loss).toBe(10);
    expect(out.dLogp[0]).toBe(0);
  });

  it('entropy bonus: loss −= coef · mean entropy', () => {
    const out = policyLoss({ logprobs: [-1, -1, -1], oldLogprobs: [-1, -1, -1], advantages: [0, 0, 0], entropy: [1, 2, 3] }, { entropyCoef: 0.01 });
    expect(out.loss).toBeCloseTo(-0.02, 12);
    close(out.dEnt, [-0.01 / 3, -0.01 / 3, -0.01 / 3], 1e-9);
    close(out.dLogp, [0, 0, 0]);
    expect(out.metrics.entropy).toBeCloseTo(2, 12);
  });
});

describe('aggregation modes (hand-computed with reinforce, logp = −1 so each term equals A)', () => {
  // seq 0: tokens 0,1 (token 2 masked out); seq 1: tokens 3,4,5; seq 2: only a masked token.
  const batch: TokenBatch = {
    logprobs: [-1, -1, -1, -1, -1, -1, -1],
    oldLogprobs: [-1, -1, -1, -1, -1, -1, -1],
    advantages: [1, 2, 9, 3, 5, 7, 4],
    mask: [1, 1, 0, 1, 1, 1, 0],
    seqIds: [0, 0, 0, 1, 1, 1, 2],
  };
  const A = [1, 2, 9, 3, 5, 7, 4];
  const cases: [LossConfigInput, number, number[]][] = [
    [{ aggregation: 'token-mean' }, 18 / 5, [0.2, 0.2, 0, 0.2, 0.2, 0.2, 0]],
    [{ aggregation: 'seq-mean-token-sum' }, (3 + 15) / 2, [0.5, 0.5, 0, 0.5, 0.5, 0.5, 0]],
    [{ aggregation: 'seq-mean-token-mean' }, (1.5 + 5) / 2, [0.25, 0.25, 0, 1 / 6, 1 / 6, 1 / 6, 0]],
    [{ aggregation: 'seq-mean-token-sum-norm', normConstant: 10 }, (3 + 15) / 20, [0.05, 0.05, 0, 0.05, 0.05, 0.05, 0]],
  ];
  for (const [cfg, loss, c] of cases) {
    it(`${cfg.aggregation}`, () => {
      const out = policyLoss(batch, { kind: 'reinforce', ...cfg });
      expect(out.loss).toBeCloseTo(loss, 9);
      close(out.dLogp, c.map((ct, t) => -ct * A[t]!));
      expect(out.metrics.sequences).toBe(2);
      expect(out.metrics.tokens).toBe(5);
    });
  }
  it('aggregationWeights sums to 1 for the mean modes', () => {
    for (const mode of ['token-mean', 'seq-mean-token-mean'] as const) {
      const { weights } = aggregationWeights(batch.mask, batch.seqIds, 7, mode);
      expect(weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    }
  });
});

/** Deterministic uniform numbers for the random batches. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe('gradients match central finite differences (float64) for every kind and aggregation', () => {
  const n = 14;
  const rnd = lcg(12345);
  const u = (a: number, b: number) => a + (b - a) * rnd();
  const old = Array.from({ length: n }, () => u(-3, -0.2));
  const logprobs = old.map((o) => o + u(-1.5, 1.5)); // spans clipped, unclipped and dual-clip regions
  const prox = old.map((o) => o + u(-0.5, 2.2)); // some behaviour weights exceed 5
  const ref = old.map((o) => o + u(-1, 1));
  const entropy = Array.from({ length: n }, () => u(0, 3));
  const advantages = Array.from({ length: n }, () => u(-2, 2));
  const mask = Array.from({ length: n }, (_, t) => (t % 5 === 4 ? 0 : 1));
  const seqIds = Array.from({ length: n }, (_, t) => Math.floor(t / 4));
  const batch = { logprobs, oldLogprobs: old, proxLogprobs: prox, refLogprobs: ref, entropy, advantages, mask, seqIds };

  const configs: LossConfigInput[] = [];
  for (const kind of ['ppo', 'decoupled_ppo', 'reinforce'] as const) {
    for (const aggregation of AGGREGATIONS) {
      for (const klKind of ['k1', 'k2', 'k3'] as const) {
        configs.push({ kind, aggregation, normConstant: 7, klKind, klCoef: 0.3, entropyCoef: 0.05, dualClip: kind === 'ppo' ? 3 : 2, capMode: klKind === 'k2' ? 'clamp' : 'mask', epsHigh: 0.28 });
      }
    }
  }
  configs.push({ kind: 'ppo', dualClip: null, klCoef: 0, entropyCoef: 0 });

  it.each(configs.map((c) => [JSON.stringify(c), c] as const))('%s', (_name, cfg) => {
    const out = policyLoss(batch, cfg);
    const h = 1e-6;
    let nonzero = 0;
    for (const field of ['logprobs', 'entropy'] as const) {
      const grad = field === 'logprobs' ? out.dLogp : out.dEnt;
      for (let t = 0; t < n; t++) {
        const plus = batch[field].slice(), minus = batch[field].slice();
        plus[t] += h;
        minus[t] -= h;
        const fd = (policyLoss({ ...batch, [field]: plus }, cfg).loss - policyLoss({ ...batch, [field]: minus }, cfg).loss) / (2 * h);
        expect(Math.abs(grad[t]! - fd), `${field}[${t}] analytic ${grad[t]} vs fd ${fd}`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
        if (Math.abs(grad[t]!) > 1e-4) nonzero++;
      }
    }
    expect(nonzero).toBeGreaterThan(n / 2);
  });

  it('the random batch exercises clipping, dual clip and capping', () => {
    const ppo = policyLoss(batch, { kind: 'ppo', dualClip: 3 });
    expect(ppo.metrics.clipFrac).toBeGreaterThan(0);
    expect(ppo.metrics.dualClipFrac).toBeGreaterThan(0);
    const dec = policyLoss(batch, { kind: 'decoupled_ppo' });
    expect(dec.metrics.cappedFrac).toBeGreaterThan(0);
    expect(dec.metrics.cappedFrac).toBeLessThan(1);
  });
});

describe('validation and edge cases', () => {
  const ok = { logprobs: [-1], oldLogprobs: [-1], advantages: [1] };
  it('rejects bad configs with a named field', () => {
    expect(() => LossConfigSchema.parse({ dualClip: 0.5 })).toThrow(/dualClip/);
    expect(() => LossConfigSchema.parse({ aggregation: 'seq-mean-token-sum-norm' })).toThrow(/normConstant/);
    expect(() => LossConfigSchema.parse({ clip: 0.2 })).toThrow();
    expect(LossConfigSchema.parse({})).toMatchObject({ kind: 'ppo', epsLow: 0.2, epsHigh: 0.2, dualClip: 3, aggregation: 'token-mean', klKind: 'k3', klCoef: 0 });
  });
  it('names missing inputs', () => {
    expect(() => policyLoss(ok, { kind: 'decoupled_ppo' })).toThrow(/proxLogprobs/);
    expect(() => policyLoss(ok, { klCoef: 0.1 })).toThrow(/refLogprobs/);
    expect(() => policyLoss(ok, { entropyCoef: 0.1 })).toThrow(/entropy/);
    expect(() => policyLoss(ok, { aggregation: 'seq-mean-token-mean' })).toThrow(/seqIds/);
    expect(() => policyLoss({ ...ok, advantages: [1, 2] }, {})).toThrow(/advantages has length 2/);
    expect(() => policyLoss({ ...ok, advantages: [NaN] }, {})).toThrow(/advantages\[0\]/);
  });
  it('masked tokens may hold non-finite values; an all-masked batch has loss 0 and zero gradients', () => {
    const out = policyLoss({ logprobs: [-1, -Infinity], oldLogprobs: [-1, -Infinity], advantages: [1, NaN], mask: [1, 0] }, {});
    expect(out.loss).toBeCloseTo(-1, 12);
    const none = policyLoss({ ...ok, mask: [0] }, {});
    expect(none.loss).toBe(0);
    expect(Array.from(none.dLogp)).toEqual([0]);
  });
  it('a stale token with a huge log-ratio stays finite (log-ratio clamped at ±20)', () => {
    const out = policyLoss({ logprobs: [0], oldLogprobs: [-50], advantages: [1] }, { dualClip: null });
    expect(Number.isFinite(out.loss)).toBe(true);
    expect(out.loss).toBeCloseTo(-1.2, 12);
  });
});

/**
 * Round axis ticks (src/eval/ticks.ts): hand-computed tick sets for typical axes (rewards in [0, 1],
 * losses near 0, token rates in the thousands, step counts), labels without float noise, and
 * properties over random ranges: the ticks cover the range, are equally spaced by a 1/2/5 × 10^k
 * step, number at most maxTicks, and integer axes get integer ticks.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import './helpers/fast-check-seed.ts';
import { niceTicks } from '../src/eval/ticks.ts';
import { lineChartSvg } from '../src/eval/plot.ts';

describe('niceTicks: hand-computed axes', () => {
  it('rewards, losses, rates and step counts', () => {
    // [0, 1]: step 0.1 would give 11 ticks > 6, 0.2 gives 6.
    expect(niceTicks(0, 1)).toMatchObject({ values: [0, 0.2, 0.4, 0.6, 0.8, 1], labels: ['0', '0.2', '0.4', '0.6', '0.8', '1.0'], step: 0.2, lo: 0, hi: 1 });
    // [0.1, 0.7]: step 0.1 → 7 ticks (too many), 0.2 → 0, 0.2 … 0.8.
    expect(niceTicks(0.1, 0.7).values).toEqual([0, 0.2, 0.4, 0.6, 0.8]);
    // The float-noise case: 3 × 0.1 is 0.30000000000000004 when summed; here it is 0.3 exactly.
    const t = niceTicks(0, 0.5, { maxTicks: 6 });
    expect(t.values).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    expect(t.labels).toEqual(['0', '0.1', '0.2', '0.3', '0.4', '0.5']);
    expect(t.values[3]).toBe(0.3);
    // A loss just below 0: step 0.005 (0.002 would need 9 ticks).
    expect(niceTicks(-0.014, 0.001)).toMatchObject({ values: [-0.015, -0.01, -0.005, 0, 0.005], labels: ['-0.015', '-0.010', '-0.005', '0', '0.005'] });
    // Mixed signs: step 2.
    expect(niceTicks(-2.5, 5).values).toEqual([-4, -2, 0, 2, 4, 6]);
    // Token rates: thousands as k once the step is ≥ 1000.
    expect(niceTicks(0, 2892).labels).toEqual(['0', '1k', '2k', '3k']);
    expect(niceTicks(0, 12345).labels).toEqual(['0', '5k', '10k', '15k']);
    expect(niceTicks(0, 1e7).labels).toEqual(['0', '2M', '4M', '6M', '8M', '10M']);
    expect(niceTicks(0, 480).labels).toEqual(['0', '100', '200', '300', '400', '500']);
    // A narrow range keeps the decimals that tell the ticks apart.
    expect(niceTicks(0.28, 0.2826).labels).toEqual(['0.280', '0.281', '0.282', '0.283']);
  });

  it('integer axes (steps): whole-number steps, even for short runs', () => {
    expect(niceTicks(0, 199, { integer: true }).values).toEqual([0, 50, 100, 150, 200]);
    expect(niceTicks(0, 99, { integer: true, maxTicks: 7 }).values).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 7, { integer: true }).values).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(0, 3, { integer: true }).values).toEqual([0, 1, 2, 3]);
    // Without `integer` a 0..3 axis could be cut in halves; with it, never.
    expect(niceTicks(0, 2, { integer: true }).values).toEqual([0, 1, 2]);
    expect(niceTicks(0, 2, { maxTicks: 6 }).values).toEqual([0, 0.5, 1, 1.5, 2]);
  });

  it('degenerate ranges are widened around the value; bad input is an error', () => {
    expect(niceTicks(0, 0).values).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.3, 0.3).values).toEqual([0.2, 0.25, 0.3, 0.35, 0.4]);
    expect(niceTicks(5, 5, { integer: true }).values).toEqual([4, 5, 6]);
    expect(niceTicks(0, 0, { integer: true }).values).toEqual([0, 1]);
    expect(niceTicks(1, 0).values).toEqual(niceTicks(0, 1).values);
    expect(() => niceTicks(0, Number.NaN)).toThrow(/finite/);
    expect(() => niceTicks(0, 1, { maxTicks: 2 })).toThrow(/maxTicks/);
  });
});

describe('niceTicks: properties', () => {
  const finite = fc.double({ min: -1e9, max: 1e9, noNaN: true, noDefaultInfinity: true });
  it('cover the range, equal 1/2/5 × 10^k spacing, at most maxTicks, labels without noise', () => {
    fc.assert(fc.property(finite, finite, fc.integer({ min: 3, max: 12 }), fc.boolean(), (a, b, maxTicks, integer) => {
      const lo = Math.min(a, b), hi = Math.max(a, b);
      const t = niceTicks(lo, hi, { maxTicks, integer });
      expect(t.values.length).toBeLessThanOrEqual(maxTicks);
      expect(t.values.length).toBeGreaterThanOrEqual(2);
      expect(t.lo).toBeLessThanOrEqual(lo);
      expect(t.hi).toBeGreaterThanOrEqual(hi);
      const mantissa = t.step / 10 ** Math.floor(Math.log10(t.step) + 1e-9);
      expect([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9)).toBe(true);
      for (let i = 1; i < t.values.length; i++) expect(t.values[i]! - t.values[i - 1]!).toBeCloseTo(t.step, 6);
      if (integer) for (const v of t.values) expect(Number.isInteger(v)).toBe(true);
      // A label is the value with at most the step's decimals (never 0.30000000000000004) and reads back as it.
      const scale = { k: 1e3, M: 1e6, G: 1e9 } as Record<string, number>;
      t.labels.forEach((l, i) => {
        expect(l).toMatch(/^-?\d+(\.\d{1,6})?[kMG]?$|^-?\d(\.\d+)?e[+-]\d+$/);
        const back = /[kMG]$/.test(l) ? Number(l.slice(0, -1)) * scale[l.at(-1)!]! : Number(l);
        expect(Math.abs(back - t.values[i]!)).toBeLessThanOrEqual(t.step * 1e-6);
      });
    }));
  });

  it('few ticks are wasted: the next smaller nice step would need more than maxTicks', () => {
    // Bounds on a 1e-4 grid, so the check below counts ticks in exact integer arithmetic.
    fc.assert(fc.property(fc.integer({ min: -10_000_000, max: 10_000_000 }), fc.integer({ min: 10, max: 10_000_000 }), (i, j) => {
      const t = niceTicks(i / 1e4, (i + j) / 1e4, { maxTicks: 6 });
      const S = Math.round(t.step * 1e4);
      const m = S / 10 ** Math.floor(Math.log10(S) + 1e-9);
      const smaller = Math.round(m === 5 ? (S * 2) / 5 : S / 2); // 5 → 2, 2 → 1, 1 → 0.5 (in grid units)
      const count = Math.ceil((i + j) / smaller) - Math.floor(i / smaller) + 1;
      expect(count).toBeGreaterThan(6);
    }));
  });
});

describe('lineChartSvg keeps its signature and gets round ticks', () => {
  it('a reward-by-episode chart: y ticks 0 … 1 by 0.2, x ticks at the episode indices, error bars, reference line', () => {
    const svg = lineChartSvg('Reward by episode', 'episode index', 'mean reward', [
      { name: 'meta-rl', values: [0.36, 0.7, 0.99], errors: [0.03, 0.03, 0.01] },
      { name: 'random', values: [0.31, 0.33, 0.34] },
    ], [{ name: 'non-adaptive 1/3', y: 1 / 3 }]);
    expect(svg.startsWith('<svg')).toBe(true);
    const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    for (const label of ['0', '0.2', '0.4', '0.6', '0.8', '1.0', '1', '2', 'meta-rl', 'random', 'non-adaptive 1/3', 'episode index', 'mean reward']) expect(texts).toContain(label);
    // No label with float noise or more than two decimals (the old chart printed lo + (hi − lo)·t/4).
    expect(texts.filter((x) => /^-?\d+\.\d{3,}$/.test(x!))).toEqual([]);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg.match(/stroke-dasharray="5,4"/g)?.length).toBeGreaterThanOrEqual(1);
  });

  it('a NaN breaks the line instead of drawing NaN coordinates', () => {
    const svg = lineChartSvg('t', 'x', 'y', [{ name: 's', values: [1, 2, Number.NaN, 3, 4] }]);
    expect(svg).not.toMatch(/NaN/);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
  });
});

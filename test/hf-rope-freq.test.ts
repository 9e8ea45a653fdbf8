import { describe, expect, it } from 'vitest';
import { ropeInvFreq } from '../src/engine/rope-freq.ts';
import { tinyArch } from './helpers/tiny-models.ts';

/** |actual − expected| ≤ 1e-15 · |expected| for every element (float64 computation, a few ulps of slack). */
function expectClose(actual: Float64Array, expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i]! - expected[i]!), `element ${i}: ${actual[i]} vs ${expected[i]}`).toBeLessThanOrEqual(1e-15 * Math.abs(expected[i]!));
  }
}

const rope = { positions: 'rope' as const, headDim: 8, ropeTheta: 10000 };

describe('ropeInvFreq', () => {
  it('default: 1/θ^(2i/d); d = 8, θ = 10000 gives 10000^(-i/4) = 1, 0.1, 0.01, 0.001', () => {
    expectClose(ropeInvFreq({ ...rope, ropeScaling: null }), [1, 0.1, 0.01, 0.001]);
    // d = 6, θ = 500000: 500000^(-1/3) = 1/79.370052598…, 500000^(-2/3) = 1/6299.6052494…
    expectClose(ropeInvFreq({ ...rope, headDim: 6, ropeTheta: 500000, ropeScaling: null }), [1, 0.012599210498948734, 0.00015874010519682002]);
  });

  it('linear: every frequency divided by the factor', () => {
    expectClose(ropeInvFreq({ ...rope, ropeScaling: { type: 'linear', factor: 4 } }), [0.25, 0.025, 0.0025, 0.00025]);
  });

  it('llama3, d = 8, θ = 10000, factor 8, low 1, high 4, original 64: all three branches', () => {
    // Wavelengths 2π/f: 6.283, 62.83, 628.3, 6283. High-frequency bound 64/4 = 16, low-frequency bound 64/1 = 64.
    //   i = 0: 6.283 < 16            → kept: 1
    //   i = 1: 16 ≤ 62.83 ≤ 64       → smoothed: s = (64/(20π) − 1)/(4 − 1) = (3.2/π − 1)/3 = 0.0061972119…
    //                                   (1 − s)·0.1/8 + s·0.1 = 0.0125 + 0.0875·s = 0.013042256043820465
    //   i = 2, 3: > 64               → divided by 8: 0.00125, 0.000125
    const s = (3.2 / Math.PI - 1) / 3;
    expect(s).toBeCloseTo(0.0061972119, 10);
    expectClose(ropeInvFreq({ ...rope, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } }),
      [1, 0.013042256043820465, 0.00125, 0.000125]);
  });

  it("llama3 with the tiny Llama's settings (original 16): the first frequency is in the smoothed band", () => {
    // Bounds 16/4 = 4 and 16/1 = 16; wavelength 2π ≈ 6.283 lies between: s = (16/(2π) − 1)/3 = (8/π − 1)/3 = 0.5154930…,
    // (1 − s)·1/8 + s·1 = 0.125 + 0.875·s = 0.5760564010955116; the others exceed 16 and are divided by 8.
    expectClose(ropeInvFreq(tinyArch('llama')), [0.5760564010955116, 0.0125, 0.00125, 0.000125]);
  });

  it('the smoothed band joins both ends continuously (wavelength exactly at either bound)', () => {
    // θ chosen so that the wavelength of i = 1 (2π·θ^(1/4)) is exactly the high-frequency bound L/high: kept unchanged.
    const L = 64, hi = 4, lo = 1;
    const thetaAt = (wavelen: number) => Math.pow(wavelen / (2 * Math.PI), 4);
    const atHigh = ropeInvFreq({ ...rope, ropeTheta: thetaAt(L / hi), ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: L } });
    const f1 = 1 / Math.pow(thetaAt(L / hi), 0.25);
    expect(atHigh[1]! / f1).toBeCloseTo(1, 12);
    const atLow = ropeInvFreq({ ...rope, ropeTheta: thetaAt(L / lo), ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: L } });
    expect(atLow[1]! / (1 / Math.pow(thetaAt(L / lo), 0.25))).toBeCloseTo(1 / 8, 12);
  });

  it('refuses models without RoPE and odd head widths', () => {
    expect(() => ropeInvFreq(tinyArch('gpt2'))).toThrow('ropeInvFreq: the model uses learned positions, not RoPE');
    expect(() => ropeInvFreq({ ...rope, headDim: 7, ropeScaling: null })).toThrow('ropeInvFreq: headDim must be a positive even integer for RoPE, got 7');
  });
});

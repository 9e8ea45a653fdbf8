/**
 * Finite-difference gradient checking and error metrics for kernel tests.
 *
 * The intended use: write the forward pass as a float64 reference (plain loops over Float64Array),
 * form a scalar loss L = Σ r·forward(x) with fixed random r, and compare a backend's analytic
 * backward (float32, fed dout = r) against `centralDifference(L, x)`. Evaluating L in float64 keeps
 * the finite-difference error at O(eps²) instead of drowning it in float32 rounding.
 */

/** Deterministic uniform generator on [0, 1): the environments' mulberry32. */
export { mulberry32 } from '../../src/envs/rng.ts';

/** n floats uniform in [-scale, scale). */
export function randomF32(n: number, next: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

/** ∂f/∂x_i ≈ (f(x + eps·e_i) - f(x - eps·e_i)) / 2eps for every i, evaluated in float64. */
export function centralDifference(f: (x: Float64Array) => number, x: ArrayLike<number>, eps = 1e-3): Float64Array {
  const work = Float64Array.from(x);
  const grad = new Float64Array(work.length);
  for (let i = 0; i < work.length; i++) {
    const keep = work[i];
    work[i] = keep + eps;
    const up = f(work);
    work[i] = keep - eps;
    const down = f(work);
    work[i] = keep;
    grad[i] = (up - down) / (2 * eps);
  }
  return grad;
}

export interface ErrorReport {
  /** The worst error found. */
  error: number;
  /** Where it was (-1 when the arrays are empty). */
  index: number;
  got: number;
  want: number;
}

/**
 * max_i |a_i - b_i| / max(|a_i| + |b_i|, floor): relative where values are large, absolute (scaled by
 * 1/floor) near zero, so a gradient that is legitimately ~0 does not blow the metric up.
 * Equal non-finite values (e.g. both -Infinity) count as exact; any other non-finite value is Infinity.
 */
export function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-2): ErrorReport {
  if (got.length !== want.length) throw new Error(`maxRelError: lengths differ (${got.length} vs ${want.length})`);
  const report: ErrorReport = { error: 0, index: -1, got: NaN, want: NaN };
  for (let i = 0; i < got.length; i++) {
    const a = got[i], b = want[i];
    let e: number;
    if (Object.is(a, b)) e = 0;
    else if (!Number.isFinite(a) || !Number.isFinite(b)) e = Infinity;
    else e = Math.abs(a - b) / Math.max(Math.abs(a) + Math.abs(b), floor);
    if (e > report.error || report.index < 0) Object.assign(report, { error: e, index: i, got: a, want: b });
  }
  return report;
}

/**
 * max_i |a_i - b_i| / max(max_i |b_i|, floor): the error relative to the tensor's overall magnitude
 * (for comparing two implementations of the same kernel). Equal non-finite values count as exact.
 */
export function maxScaledDiff(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-6): ErrorReport {
  if (got.length !== want.length) throw new Error(`maxScaledDiff: lengths differ (${got.length} vs ${want.length})`);
  let magnitude = floor;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) magnitude = Math.max(magnitude, Math.abs(want[i]));
  const report: ErrorReport = { error: 0, index: -1, got: NaN, want: NaN };
  for (let i = 0; i < got.length; i++) {
    const a = got[i], b = want[i];
    const e = Object.is(a, b) ? 0 : Number.isFinite(a - b) ? Math.abs(a - b) / magnitude : Infinity;
    if (e > report.error || report.index < 0) Object.assign(report, { error: e, index: i, got: a, want: b });
  }
  return report;
}

/** Σ r_i·y_i in float64. */
export function weightedSum(r: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += r[i] * y[i];
  return s;
}

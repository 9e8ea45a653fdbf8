/**
 * The native addon's sgemm on every GEMM path this CPU offers (openblas when installed, avx512,
 * avx2, scalar), against a float64 reference: all four transpose combinations, odd and edge-tile
 * sizes, padded leading dimensions, alpha/beta, beta = 0 over NaN garbage, subarray views with a
 * byteOffset, and the argument checks. Skipped when the addon is not built.
 */
import { describe, expect, it } from 'vitest';
import { loadNativeBackend, nativeGemmPaths, nativeInfo, nativeLoadError, type GemmPath } from '../src/engine/native.ts';
import { mulberry32 } from '../src/envs/rng.ts';

const paths = nativeGemmPaths();
const built = paths.length > 0;

/** Deterministic uniform values in [-1, 1) (the environments' mulberry32). */
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() * 2 - 1;
}

interface Case { M: number; N: number; K: number; tA: boolean; tB: boolean; alpha: number; beta: number; pad: number; offset: number }

/**
 * Runs one sgemm on buffers laid out inside larger arrays (an `offset`-float prefix and `pad` extra
 * floats per row, filled with sentinels) and checks C against float64 math, plus that nothing
 * outside the M×N window changed.
 */
function checkCase(path: GemmPath, c: Case, seed: number, threads = 2): void {
  const be = loadNativeBackend({ gemm: path, threads })!;
  const next = rng(seed);
  const aRows = c.tA ? c.K : c.M, aCols = c.tA ? c.M : c.K;
  const bRows = c.tB ? c.N : c.K, bCols = c.tB ? c.K : c.N;
  const lda = aCols + c.pad, ldb = bCols + c.pad, ldc = c.N + c.pad;
  const view = (rows: number, ld: number, fill: () => number) => {
    const base = new Float32Array(c.offset + rows * ld + 3);
    for (let i = 0; i < base.length; i++) base[i] = fill();
    return { base, view: base.subarray(c.offset) };
  };
  const A = view(aRows, lda, next), B = view(bRows, ldb, next);
  const C = view(c.M, ldc, c.beta === 0 ? () => NaN : next);
  const before = C.base.slice();
  const a = (i: number, k: number) => (c.tA ? A.view[k * lda + i] : A.view[i * lda + k]);
  const b = (k: number, j: number) => (c.tB ? B.view[j * ldb + k] : B.view[k * ldb + j]);

  be.sgemm(c.tA, c.tB, c.M, c.N, c.K, c.alpha, A.view, lda, B.view, ldb, c.beta, C.view, ldc);

  let worst = 0;
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      let dot = 0, mag = 0;
      for (let k = 0; k < c.K; k++) {
        dot += a(i, k) * b(k, j);
        mag += Math.abs(a(i, k) * b(k, j));
      }
      const old = c.beta === 0 ? 0 : c.beta * before[c.offset + i * ldc + j];
      const ref = c.alpha * dot + old;
      // relative to the magnitude of what was summed (the conditioning of each entry)
      const scale = Math.abs(c.alpha) * mag + Math.abs(old) + 1e-30;
      const got = C.view[i * ldc + j];
      const err = Number.isFinite(got) ? Math.abs(got - ref) / scale : Infinity;
      worst = Math.max(worst, err);
    }
  }
  expect(worst, `${path} ${JSON.stringify(c)}`).toBeLessThan(1e-4);
  // Outside the window: the prefix before byteOffset, the ldc padding and the tail are untouched.
  for (let idx = 0; idx < C.base.length; idx++) {
    const rel = idx - c.offset;
    const inside = rel >= 0 && Math.floor(rel / ldc) < c.M && rel % ldc < c.N;
    if (!inside) expect(Object.is(C.base[idx], before[idx]), `C[${idx}] outside the window changed`).toBe(true);
  }
}

// Odd sizes and edge tiles for every kernel's MR×NR (14×32, 6×16, 4×8), K past one KC=256 slice,
// M past one MC block, tiny shapes below the threading threshold and large enough ones above it.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 33, 65], [33, 7, 129], [65, 129, 7], [129, 65, 33], [1, 129, 65], [200, 70, 300], [129, 129, 129],
];
const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe.skipIf(!built)('native sgemm', () => {
  it('reports its paths, name and threads', () => {
    expect(paths).toContain('scalar');
    const info = nativeInfo()!;
    if (info.avx512) expect(paths).toContain('avx512');
    if (info.avx2) expect(paths).toContain('avx2');
    for (const p of paths) {
      const be = loadNativeBackend({ gemm: p, threads: 1 })!;
      expect(be.name).toBe(`native/${p}`);
      expect(be.threads).toBe(1);
    }
    expect(loadNativeBackend({ gemm: paths[0] })!.threads).toBe(Math.min(2, info.cpus));
    expect(nativeLoadError()).toBeUndefined();
  });

  for (const path of paths) {
    it(`${path}: all transpose combinations, odd sizes, padded strides, alpha/beta, byteOffset views`, () => {
      let seed = 1;
      for (const [M, N, K] of SHAPES) {
        for (const [tA, tB] of TRANS) {
          seed++;
          const beta = seed % 3 === 0 ? 0 : seed % 3 === 1 ? 1 : -0.5;
          checkCase(path, { M, N, K, tA, tB, alpha: seed % 2 ? 1 : -1.7, beta, pad: seed % 4, offset: (seed * 7) % 13 }, seed);
        }
      }
    });

    it(`${path}: one thread gives the same results, beta = 0 overwrites NaN, K = 0 and alpha = 0 scale C`, () => {
      checkCase(path, { M: 65, N: 129, K: 300, tA: true, tB: false, alpha: 0.5, beta: 0, pad: 1, offset: 3 }, 99, 1);
      const be = loadNativeBackend({ gemm: path })!;
      const C = new Float32Array([1, 2, NaN, 4]);
      be.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0, C, 2);
      expect(Array.from(C)).toEqual([0, 0, 0, 0]);
      const D = new Float32Array([1, 2, 3, 4]);
      be.sgemm(false, false, 2, 2, 2, 0, new Float32Array(4).fill(NaN), 2, new Float32Array(4), 2, 2, D, 2);
      expect(Array.from(D)).toEqual([2, 4, 6, 8]);
    });
  }

  it('the weight-gradient shapes of the reference model agree across paths', () => {
    // [256×4096]ᵀ-style TN and NT products, as in the backward pass, compared between every path.
    const M = 256, N = 96, K = 1024;
    const next = rng(7);
    const A = Float32Array.from({ length: K * M }, next);
    const B = Float32Array.from({ length: K * N }, next);
    const results = paths.map((p) => {
      const C = new Float32Array(M * N);
      loadNativeBackend({ gemm: p })!.sgemm(true, false, M, N, K, 1, A, M, B, N, 0, C, N);
      return C;
    });
    for (const C of results.slice(1)) {
      for (let i = 0; i < C.length; i++) expect(Math.abs(C[i] - results[0][i])).toBeLessThan(1e-3);
    }
  });

  it('rejects bad arguments with errors that name them instead of touching memory', () => {
    const be = loadNativeBackend({ gemm: 'scalar' })!;
    const small = new Float32Array(3);
    expect(() => be.sgemm(false, false, 2, 2, 2, 1, small, 2, new Float32Array(4), 2, 0, new Float32Array(4), 2)).toThrow(/A has 3 elements/);
    expect(() => be.sgemm(false, false, 2, 2, 2, 1, new Float32Array(4), 1, new Float32Array(4), 2, 0, new Float32Array(4), 2)).toThrow(/lda/);
    expect(() => be.sgemm(false, false, 2, 2, 2, 1, new Float64Array(4) as unknown as Float32Array, 2, new Float32Array(4), 2, 0, new Float32Array(4), 2)).toThrow(/Float32Array/);
    expect(() => loadNativeBackend({ gemm: 'cuda' })).toThrow(/unknown GEMM path/);
    expect(() => loadNativeBackend({ threads: 0 })).toThrow(/positive integer/);
    if (!paths.includes('openblas')) expect(() => loadNativeBackend({ gemm: 'openblas' })).toThrow(/not available/);
  });
});

/**
 * The memory-linear (FlashAttention-style) attention kernels at sequence lengths the small-shape
 * conformance suite (test/backend.test.ts, T = 5) does not reach: T = 4,096, lengths that are not a
 * multiple of the native kernel's query tile (it splits T ≤ 128 in two halves and longer sequences
 * in tiles of 64 rows), and a single token.
 *
 * - Native (every GEMM path, one and two threads) agrees with the pure-JS backend on out, lse and
 *   the accumulated dqkv.
 * - The backward matches central finite differences of a float64 reference at T = 70 (two halves)
 *   and T = 150 (tiles of 64, 64 and 22 rows), on every backend.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/engine/backend.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { loadNativeBackend, nativeGemmPaths } from '../src/engine/native.ts';
import { maxRelError, maxScaledDiff, mulberry32, randomF32, type ErrorReport } from './helpers/gradcheck.ts';

const js = new JsBackend();
/** Every GEMM path on one thread, plus the default path on two (the pooled loop over heads). */
const natives: Backend[] = [
  ...nativeGemmPaths().map((gemm) => loadNativeBackend({ gemm, threads: 1 })),
  loadNativeBackend({ threads: 2 }),
].filter((b): b is NonNullable<typeof b> => b !== null);

function expectErr(report: ErrorReport, tol: number, what: string): void {
  expect(report.error, `${what}: worst at [${report.index}] got ${report.got}, want ${report.want}`).toBeLessThan(tol);
}

interface Shape { B: number; T: number; C: number; NH: number }

function inputs(s: Shape, seed: number) {
  const next = mulberry32(seed);
  const N = s.B * s.T;
  // |q|,|k| up to 2 with hs = 8: scores spread by ~1.3, so the softmax rows are far from uniform.
  return { qkv: randomF32(N * 3 * s.C, next, 2), dout: randomF32(N * s.C, next), dqkv0: randomF32(N * 3 * s.C, next) };
}

/** Forward (into NaN-filled buffers: every element must be written) and backward accumulated onto dqkv0. */
function run(be: Backend, s: Shape, x: ReturnType<typeof inputs>) {
  const { B, T, C, NH } = s;
  const out = new Float32Array(B * T * C).fill(NaN), lse = new Float32Array(B * NH * T).fill(NaN);
  be.attentionForward(out, lse, x.qkv, B, T, C, NH);
  const dqkv = x.dqkv0.slice();
  be.attentionBackward(dqkv, x.dout, x.qkv, lse, B, T, C, NH);
  return { out, lse, dqkv };
}

describe.skipIf(natives.length === 0)('native attention agrees with JS at long and odd lengths', () => {
  const shapes: Shape[] = [
    { B: 1, T: 4096, C: 16, NH: 2 },
    { B: 2, T: 1, C: 16, NH: 2 },
    { B: 2, T: 7, C: 16, NH: 2 },
    { B: 2, T: 33, C: 16, NH: 2 },
    { B: 2, T: 65, C: 16, NH: 2 },
    { B: 1, T: 129, C: 16, NH: 2 }, // first length past the two-halves split: tiles of 64, 64, 1
    { B: 2, T: 200, C: 24, NH: 3 }, // 64, 64, 64, 8; odd head count
  ];
  for (const s of shapes) {
    it(`B=${s.B} T=${s.T} C=${s.C} NH=${s.NH}: out, lse and dqkv (accumulated)`, () => {
      const x = inputs(s, 1000 + s.T);
      const want = run(js, s, x);
      for (const be of natives) {
        const got = run(be, s, x);
        const tag = `${be.name}×${be.threads}`;
        expectErr(maxScaledDiff(got.out, want.out), 1e-4, `${tag} out`);
        expectErr(maxScaledDiff(got.lse, want.lse), 1e-5, `${tag} lse`);
        expectErr(maxScaledDiff(got.dqkv, want.dqkv), 1e-4, `${tag} dqkv`);
      }
    }, 60_000);
  }
});

// ------------------------------------------------------------------ finite differences

/** Float64 causal attention: out [B,T,C] and lse [B,NH,T]. */
function refAttention(qkv: ArrayLike<number>, s: Shape) {
  const { B, T, C, NH } = s, hs = C / NH;
  const out = new Float64Array(B * T * C), lse = new Float64Array(B * NH * T), e = new Float64Array(T);
  const at = (b: number, t: number, part: number, h: number, i: number) => qkv[(b * T + t) * 3 * C + part * C + h * hs + i];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        let m = -Infinity;
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          for (let i = 0; i < hs; i++) dot += at(b, t, 0, h, i) * at(b, u, 1, h, i);
          e[u] = dot / Math.sqrt(hs);
          m = Math.max(m, e[u]);
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += (e[u] = Math.exp(e[u] - m));
        lse[(b * NH + h) * T + t] = m + Math.log(z);
        for (let u = 0; u <= t; u++) {
          for (let i = 0; i < hs; i++) out[(b * T + t) * C + h * hs + i] += (e[u] / z) * at(b, u, 2, h, i);
        }
      }
    }
  }
  return { out, lse };
}

describe.each([js, ...natives].map((be) => [`${be.name}×${be.threads}`, be] as const))('attention backward vs finite differences on %s', (_name, be) => {
  for (const s of [{ B: 2, T: 70, C: 16, NH: 2 }, { B: 1, T: 150, C: 16, NH: 2 }]) {
    it(`T=${s.T}: dq, dk, dv at first, middle and last positions of every part and head`, () => {
      const { B, T, C, NH } = s, N = B * T;
      const next = mulberry32(77 + T);
      const qkv = randomF32(N * 3 * C, next, 1.5), r = randomF32(N * C, next);
      const out = new Float32Array(N * C), lse = new Float32Array(B * NH * T);
      be.attentionForward(out, lse, qkv, B, T, C, NH);
      const ref = refAttention(qkv, s);
      expectErr(maxRelError(out, ref.out), 1e-4, 'out');
      expectErr(maxRelError(lse, ref.lse), 1e-5, 'lse');
      const dqkv = new Float32Array(N * 3 * C);
      be.attentionBackward(dqkv, r, qkv, lse, B, T, C, NH);

      // L = Σ r·out in float64; central differences on a spread of coordinates.
      const x = Float64Array.from(qkv);
      const L = () => {
        const o = refAttention(x, s).out;
        let acc = 0;
        for (let i = 0; i < o.length; i++) acc += r[i] * o[i];
        return acc;
      };
      const eps = 1e-3, got: number[] = [], want: number[] = [];
      for (let b = 0; b < B; b++) {
        for (const t of [0, 1, T >> 1, T - 2, T - 1]) {
          for (let part = 0; part < 3; part++) {
            for (const ch of [0, C / NH + 3]) { // head 0 channel 0, head 1 channel 3
              const idx = (b * T + t) * 3 * C + part * C + ch, keep = x[idx];
              x[idx] = keep + eps;
              const up = L();
              x[idx] = keep - eps;
              const down = L();
              x[idx] = keep;
              got.push(dqkv[idx]);
              want.push((up - down) / (2 * eps));
            }
          }
        }
      }
      expect(want.some((g) => Math.abs(g) > 1e-2)).toBe(true); // the checked gradients are not all ~0
      expectErr(maxRelError(got, want), 1e-3, 'dqkv');
    }, 60_000);
  }
});

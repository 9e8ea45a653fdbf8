/**
 * The open-weight-architecture kernels of the Backend contract (src/engine/backend.ts): grouped-query
 * attention (forward, backward, decode), RoPE from a frequency table on strided rows, SwiGLU and the
 * per-head RMSNorm of Qwen3 — on every compute path (JS, and every native GEMM path on one and two
 * threads).
 *
 * - Forwards against float64 references written here as plain loops; backwards against central
 *   finite differences of L = Σ r·forward(x) evaluated with those references.
 * - Semantics: causal masking, the head mapping (GQA = multi-head attention with each kv head
 *   repeated for its q heads), decode = the last row of a full forward, inverse RoPE undoes forward,
 *   in-place and strided operation, accumulation, overflow-free SwiGLU at large |gate|.
 * - The GPT-2-layout kernels (attention*, rope) equal the new ones with NKV = NH, hd = C/NH.
 * - Native agrees with JS at odd sizes (T = 1, 7, 130; NH/NKV = 4/1, 4/2, 6/3, 2/2; hd = 8, 12, 64),
 *   sizes that also reach the native kernels' threaded loops, and two-thread results repeat exactly.
 * - Bad arguments throw errors that name the problem, before any memory is touched.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/engine/backend.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { allBackendsByThreads } from './helpers/backends.ts';
import {
  centralDifference, maxRelError, maxScaledDiff, mulberry32, randomF32, weightedSum, type ErrorReport,
} from './helpers/gradcheck.ts';

const backends = allBackendsByThreads([1, 2]);
const natives = backends.filter((be) => be.name !== 'js');
const label = (be: Backend) => `${be.name}×${be.threads}`;

/** Backward vs finite differences, robust relative metric (as test/backend.test.ts). */
const GRAD_TOL = 1e-3;
/** Float32 forward vs float64 reference. */
const FWD_TOL = 1e-4;

function expectErr(report: ErrorReport, tol: number, what: string): void {
  expect(report.error, `${what}: worst at [${report.index}] got ${report.got}, want ${report.want}`).toBeLessThan(tol);
}

const nanFilled = (n: number) => new Float32Array(n).fill(NaN);

// ------------------------------------------------------------------ shapes and float64 references

interface Gqa { B: number; T: number; NH: number; NKV: number; hd: number }
const width = (s: Gqa) => (s.NH + 2 * s.NKV) * s.hd;
const gqaName = (s: Gqa) => `B=${s.B} T=${s.T} NH/NKV=${s.NH}/${s.NKV} hd=${s.hd}`;

/** Float64 grouped-query causal attention: out [B,T,NH·hd], lse [B,NH,T]. */
function refGqa(qkv: ArrayLike<number>, s: Gqa) {
  const { B, T, NH, NKV, hd } = s, W = width(s), group = NH / NKV;
  const out = new Float64Array(B * T * NH * hd), lse = new Float64Array(B * NH * T), e = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * W + h * hd;
        let m = -Infinity;
        for (let u = 0; u <= t; u++) {
          const k = (b * T + u) * W + (NH + kv) * hd;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qkv[q + i] * qkv[k + i];
          e[u] = dot / Math.sqrt(hd);
          m = Math.max(m, e[u]);
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += (e[u] = Math.exp(e[u] - m));
        lse[(b * NH + h) * T + t] = m + Math.log(z);
        for (let u = 0; u <= t; u++) {
          const v = (b * T + u) * W + (NH + NKV + kv) * hd;
          for (let i = 0; i < hd; i++) out[(b * T + t) * NH * hd + h * hd + i] += (e[u] / z) * qkv[v + i];
        }
      }
    }
  }
  return { out, lse };
}

/** The same rows with every kv head repeated for each of its q heads: a multi-head (NKV = NH) qkv. */
function expandKv(qkv: Float32Array, s: Gqa): Float32Array {
  const { B, T, NH, NKV, hd } = s, W = width(s), C = NH * hd, group = NH / NKV;
  const out = new Float32Array(B * T * 3 * C);
  for (let n = 0; n < B * T; n++) {
    out.set(qkv.subarray(n * W, n * W + C), n * 3 * C);
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / group);
      out.set(qkv.subarray(n * W + (NH + kv) * hd, n * W + (NH + kv + 1) * hd), n * 3 * C + C + h * hd);
      out.set(qkv.subarray(n * W + (NH + NKV + kv) * hd, n * W + (NH + NKV + kv + 1) * hd), n * 3 * C + 2 * C + h * hd);
    }
  }
  return out;
}

function refRopeFreqs(x: ArrayLike<number>, rowStride: number, pos0: Int32Array, B: number, T: number, nHeads: number, hd: number, invFreq: Float64Array, inverse: boolean): Float64Array {
  const out = Float64Array.from(x);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < nHeads; h++) {
        for (let i = 0; i < hd / 2; i++) {
          const angle = (inverse ? -1 : 1) * (pos0[b] + t) * invFreq[i];
          const o = (b * T + t) * rowStride + h * hd + 2 * i;
          const x0 = x[o], x1 = x[o + 1];
          out[o] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
          out[o + 1] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
        }
      }
    }
  }
  return out;
}

/** θ_i = base^(−2i/hd) with the lower half of the frequencies divided by 8 (a scaled table, llama3-like). */
function scaledInvFreq(hd: number, base = 10000): Float64Array {
  return Float64Array.from({ length: hd / 2 }, (_, i) => Math.pow(base, (-2 * i) / hd) / (i >= hd / 4 ? 8 : 1));
}

function refSwiglu(inp: ArrayLike<number>, N: number, I: number): Float64Array {
  const out = new Float64Array(N * I);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < I; i++) {
      const g = inp[n * 2 * I + i];
      out[n * I + i] = (g / (1 + Math.exp(-g))) * inp[n * 2 * I + I + i];
    }
  }
  return out;
}

/** The whole of x after the per-head RMSNorm (other columns unchanged), and its rstd [N, nHeads]. */
function refHeadRmsnorm(x: ArrayLike<number>, w: ArrayLike<number>, N: number, rowStride: number, nHeads: number, hd: number, eps: number) {
  const out = Float64Array.from(x), rstd = new Float64Array(N * nHeads);
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < nHeads; h++) {
      const o = n * rowStride + h * hd;
      let ms = 0;
      for (let i = 0; i < hd; i++) ms += x[o + i] ** 2 / hd;
      const r = 1 / Math.sqrt(ms + eps);
      for (let i = 0; i < hd; i++) out[o + i] = x[o + i] * r * w[i];
      rstd[n * nHeads + h] = r;
    }
  }
  return { out, rstd };
}

// ------------------------------------------------------------------ per backend

describe.each(backends.map((be) => [label(be), be] as const))('open-weight kernels on %s', (_name, be) => {
  describe('grouped-query attention', () => {
    const shapes: Gqa[] = [
      { B: 2, T: 5, NH: 4, NKV: 1, hd: 12 },
      { B: 2, T: 5, NH: 4, NKV: 2, hd: 8 },
      { B: 1, T: 6, NH: 6, NKV: 3, hd: 8 },
      { B: 2, T: 4, NH: 2, NKV: 2, hd: 8 },
    ];
    for (const s of shapes) {
      it(`${gqaName(s)}: forward matches the reference (out and lse overwritten)`, () => {
        const next = mulberry32(200 + s.NH * 10 + s.NKV);
        const qkv = randomF32(s.B * s.T * width(s), next, 1.5);
        const out = nanFilled(s.B * s.T * s.NH * s.hd), lse = nanFilled(s.B * s.NH * s.T);
        be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
        const ref = refGqa(qkv, s);
        expectErr(maxRelError(out, ref.out), FWD_TOL, 'out');
        expectErr(maxRelError(lse, ref.lse), FWD_TOL, 'lse');
      });

      it(`${gqaName(s)}: backward matches finite differences w.r.t. every q, k and v entry, accumulating`, () => {
        const next = mulberry32(300 + s.NH * 10 + s.NKV);
        const N = s.B * s.T, W = width(s);
        const qkv = randomF32(N * W, next, 1.5), r = randomF32(N * s.NH * s.hd, next), dqkv0 = randomF32(N * W, next);
        const out = new Float32Array(N * s.NH * s.hd), lse = new Float32Array(s.B * s.NH * s.T);
        be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
        const dqkv = dqkv0.slice();
        be.gqaAttentionBackward(dqkv, r, qkv, lse, s.B, s.T, s.NH, s.NKV, s.hd);
        const got = Float64Array.from(dqkv, (x, i) => x - dqkv0[i]);
        const fd = centralDifference((x) => weightedSum(r, refGqa(x, s).out), qkv);
        const parts = [['dq', 0, s.NH], ['dk', s.NH, s.NKV], ['dv', s.NH + s.NKV, s.NKV]] as const;
        for (const [name, first, heads] of parts) {
          const pick = (g: ArrayLike<number>) => Float64Array.from({ length: N * heads * s.hd }, (_, i) => g[Math.floor(i / (heads * s.hd)) * W + first * s.hd + (i % (heads * s.hd))]);
          expect(pick(fd).some((g) => Math.abs(g) > 1e-2), `${name} gradients are not all ~0`).toBe(true);
          expectErr(maxRelError(pick(got), pick(fd)), GRAD_TOL, name);
        }
      });
    }

    it('is causal: changing the keys and values of later positions leaves earlier rows unchanged', () => {
      const s: Gqa = { B: 2, T: 9, NH: 4, NKV: 2, hd: 8 }, W = width(s), OC = s.NH * s.hd;
      const next = mulberry32(401);
      const qkv = randomF32(s.B * s.T * W, next, 2);
      const out = new Float32Array(s.B * s.T * OC), lse = new Float32Array(s.B * s.NH * s.T);
      be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
      const cut = 4; // rows 0..cut keep their keys; k and v of positions > cut change
      const changed = qkv.slice();
      for (let b = 0; b < s.B; b++) {
        for (let t = cut + 1; t < s.T; t++) for (let c = s.NH * s.hd; c < W; c++) changed[(b * s.T + t) * W + c] = next() * 10 - 5;
      }
      const out2 = new Float32Array(out.length), lse2 = new Float32Array(lse.length);
      be.gqaAttentionForward(out2, lse2, changed, s.B, s.T, s.NH, s.NKV, s.hd);
      for (let b = 0; b < s.B; b++) {
        for (let t = 0; t < s.T; t++) {
          const row = (b * s.T + t) * OC;
          const same = Array.from(out2.subarray(row, row + OC)).every((x, i) => x === out[row + i]);
          expect(same, `b=${b} t=${t} ${t <= cut ? 'must not' : 'must'} see the change`).toBe(t <= cut);
        }
      }
    });

    it('equals multi-head attention with each kv head repeated for its q heads (forward, dq; dk/dv summed over the group)', () => {
      const s: Gqa = { B: 2, T: 6, NH: 6, NKV: 2, hd: 8 }, N = s.B * s.T, W = width(s), C = s.NH * s.hd, group = s.NH / s.NKV;
      const next = mulberry32(402);
      const qkv = randomF32(N * W, next, 1.5), dout = randomF32(N * C, next);
      const wide = expandKv(qkv, s);
      const out = new Float32Array(N * C), lse = new Float32Array(s.B * s.NH * s.T);
      const outM = new Float32Array(N * C), lseM = new Float32Array(s.B * s.NH * s.T);
      be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
      be.attentionForward(outM, lseM, wide, s.B, s.T, C, s.NH);
      expectErr(maxScaledDiff(out, outM), 1e-6, 'out');
      expectErr(maxScaledDiff(lse, lseM), 1e-6, 'lse');
      const dqkv = new Float32Array(N * W), dwide = new Float32Array(N * 3 * C);
      be.gqaAttentionBackward(dqkv, dout, qkv, lse, s.B, s.T, s.NH, s.NKV, s.hd);
      be.attentionBackward(dwide, dout, wide, lseM, s.B, s.T, C, s.NH);
      const want = new Float64Array(N * W);
      for (let n = 0; n < N; n++) {
        for (let c = 0; c < C; c++) want[n * W + c] = dwide[n * 3 * C + c];
        for (let h = 0; h < s.NH; h++) {
          const kv = Math.floor(h / group);
          for (let i = 0; i < s.hd; i++) {
            want[n * W + (s.NH + kv) * s.hd + i] += dwide[n * 3 * C + C + h * s.hd + i];
            want[n * W + (s.NH + s.NKV + kv) * s.hd + i] += dwide[n * 3 * C + 2 * C + h * s.hd + i];
          }
        }
      }
      expectErr(maxScaledDiff(dqkv, want), 1e-5, 'dqkv');
    });

    it('decode against a cache of the previous keys equals the last row of a full forward, for rows of different lengths', () => {
      for (const s of [{ B: 3, T: 7, NH: 4, NKV: 1, hd: 12 }, { B: 3, T: 7, NH: 6, NKV: 3, hd: 8 }, { B: 3, T: 7, NH: 2, NKV: 2, hd: 8 }]) {
        const W = width(s), OC = s.NH * s.hd, KVC = s.NKV * s.hd;
        const next = mulberry32(403 + s.NH);
        const qkv = randomF32(s.B * s.T * W, next, 1.5);
        const out = new Float32Array(s.B * s.T * OC), lse = new Float32Array(s.B * s.NH * s.T);
        be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
        const maxT = s.T + 2, lens = Int32Array.from([s.T, 1, 4]);
        // cache slots past lens[b] hold NaN: decode must never read them
        const kCache = nanFilled(s.B * maxT * KVC), vCache = nanFilled(s.B * maxT * KVC), q = new Float32Array(s.B * OC);
        for (let b = 0; b < s.B; b++) {
          for (let t = 0; t < lens[b]; t++) {
            const src = (b * s.T + t) * W;
            kCache.set(qkv.subarray(src + OC, src + OC + KVC), (b * maxT + t) * KVC);
            vCache.set(qkv.subarray(src + OC + KVC, src + W), (b * maxT + t) * KVC);
          }
          const last = (b * s.T + lens[b] - 1) * W;
          q.set(qkv.subarray(last, last + OC), b * OC);
        }
        const dec = nanFilled(s.B * OC);
        be.gqaAttentionDecode(dec, q, kCache, vCache, lens, s.B, s.NH, s.NKV, s.hd, maxT);
        for (let b = 0; b < s.B; b++) {
          const row = (b * s.T + lens[b] - 1) * OC;
          expectErr(maxRelError(dec.subarray(b * OC, (b + 1) * OC), out.subarray(row, row + OC)), FWD_TOL, `${gqaName(s)} decode row ${b}`);
        }
        // An empty row (lens 0) attends to nothing: zeros, not NaN.
        const empty = nanFilled(OC);
        be.gqaAttentionDecode(empty, q.subarray(0, OC), kCache, vCache, Int32Array.from([0]), 1, s.NH, s.NKV, s.hd, maxT);
        expect(Array.from(empty).every((x) => x === 0)).toBe(true);
      }
    });

    it('the GPT-2-layout attention kernels are the NKV = NH, hd = C/NH case (same results)', () => {
      const B = 2, T = 9, NH = 4, C = 32, N = B * T;
      const next = mulberry32(404);
      const qkv = randomF32(N * 3 * C, next, 1.5), dout = randomF32(N * C, next), d0 = randomF32(N * 3 * C, next);
      const a = { out: new Float32Array(N * C), lse: new Float32Array(B * NH * T), d: d0.slice() };
      const g = { out: new Float32Array(N * C), lse: new Float32Array(B * NH * T), d: d0.slice() };
      be.attentionForward(a.out, a.lse, qkv, B, T, C, NH);
      be.gqaAttentionForward(g.out, g.lse, qkv, B, T, NH, NH, C / NH);
      be.attentionBackward(a.d, dout, qkv, a.lse, B, T, C, NH);
      be.gqaAttentionBackward(g.d, dout, qkv, g.lse, B, T, NH, NH, C / NH);
      expect(a.out).toEqual(g.out);
      expect(a.lse).toEqual(g.lse);
      expect(a.d).toEqual(g.d);
      const maxT = 8, lens = Int32Array.from([8, 3]);
      const q = randomF32(B * C, next), kc = randomF32(B * maxT * C, next), vc = randomF32(B * maxT * C, next);
      const da = new Float32Array(B * C), dg = new Float32Array(B * C);
      be.attentionDecode(da, q, kc, vc, lens, B, C, NH, maxT);
      be.gqaAttentionDecode(dg, q, kc, vc, lens, B, NH, NH, C / NH, maxT);
      expect(da).toEqual(dg);
    });
  });

  describe('ropeFreqs', () => {
    // Rows of a qkv with NH = 4, NKV = 2, hd = 8: the q and k heads (6) rotate, the v heads do not.
    const B = 2, T = 5, hd = 8, nHeads = 6, rowStride = 8 * hd;
    const next = mulberry32(501);
    const x = randomF32(B * T * rowStride, next), pos0 = Int32Array.from([0, 1000]), invFreq = scaledInvFreq(hd);

    it('rotates pair (2i, 2i+1) of each of the first nHeads heads by pos·invFreq[i] and leaves the rest of the row alone', () => {
      const y = x.slice();
      be.ropeFreqs(y, rowStride, pos0, B, T, nHeads, hd, invFreq, false);
      expectErr(maxRelError(y, refRopeFreqs(x, rowStride, pos0, B, T, nHeads, hd, invFreq, false)), FWD_TOL, 'ropeFreqs');
      for (let n = 0; n < B * T; n++) {
        const rest = n * rowStride + nHeads * hd;
        expect(y.subarray(rest, (n + 1) * rowStride)).toEqual(x.subarray(rest, (n + 1) * rowStride));
      }
    });

    it('inverse undoes forward, and is the backward (finite differences)', () => {
      const y = x.slice();
      be.ropeFreqs(y, rowStride, pos0, B, T, nHeads, hd, invFreq, false);
      be.ropeFreqs(y, rowStride, pos0, B, T, nHeads, hd, invFreq, true);
      expectErr(maxRelError(y, x), 1e-5, 'inverse(forward(x))');
      const dy = randomF32(x.length, next), back = dy.slice();
      be.ropeFreqs(back, rowStride, pos0, B, T, nHeads, hd, invFreq, true);
      const fd = centralDifference((v) => weightedSum(dy, refRopeFreqs(v, rowStride, pos0, B, T, nHeads, hd, invFreq, false)), x);
      expectErr(maxRelError(back, fd), GRAD_TOL, 'ropeFreqs backward');
    });

    it('rope(qkv, …, C, NH, base) is ropeFreqs over the 2·NH q and k heads with θ_i = base^(−2i/hs)', () => {
      const C = 24, NH = 3, hs = C / NH;
      const qkv = randomF32(B * T * 3 * C, next), theta = Float64Array.from({ length: hs / 2 }, (_, i) => Math.pow(500, (-2 * i) / hs));
      for (const inverse of [false, true]) {
        const a = qkv.slice(), b = qkv.slice();
        be.rope(a, pos0, B, T, C, NH, 500, inverse);
        be.ropeFreqs(b, 3 * C, pos0, B, T, 2 * NH, hs, theta, inverse);
        // Bit-identical but for a possible last-ulp difference between V8's Math.pow and C's pow in θ.
        expectErr(maxScaledDiff(a, b), 1e-6, `inverse=${inverse}`);
      }
    });

    it('works on a subarray view (the rows start at its byteOffset)', () => {
      const base = randomF32(3 + B * T * rowStride, next), view = base.subarray(3);
      const want = refRopeFreqs(view, rowStride, pos0, B, T, nHeads, hd, invFreq, false);
      be.ropeFreqs(view, rowStride, pos0, B, T, nHeads, hd, invFreq, false);
      expectErr(maxRelError(view, want), FWD_TOL, 'subarray');
    });
  });

  describe('swiglu', () => {
    const N = 3, I = 7;
    const next = mulberry32(601);
    const inp = randomF32(N * 2 * I, next, 4), r = randomF32(N * I, next);

    it('forward: silu(gate)·up, overwriting out', () => {
      const out = nanFilled(N * I);
      be.swigluForward(out, inp, N, I);
      expectErr(maxRelError(out, refSwiglu(inp, N, I)), FWD_TOL, 'swiglu');
    });

    it('backward matches finite differences w.r.t. gate and up, accumulating', () => {
      const d0 = randomF32(N * 2 * I, next), dinp = d0.slice();
      be.swigluBackward(dinp, inp, r, N, I);
      const got = Float64Array.from(dinp, (x, i) => x - d0[i]);
      expectErr(maxRelError(got, centralDifference((v) => weightedSum(r, refSwiglu(v, N, I)), inp)), GRAD_TOL, 'dswiglu');
    });

    it('stays finite and exact at large |gate| (σ saturates without overflow)', () => {
      const gates = [-1e4, -200, -90, -30, 30, 90, 200, 1e4];
      const n = gates.length, x = new Float32Array(2 * n);
      x.set(gates, 0);
      x.fill(1.5, n);
      const out = new Float32Array(n), dx = new Float32Array(2 * n), dout = new Float32Array(n).fill(1);
      be.swigluForward(out, x, 1, n);
      be.swigluBackward(dx, x, dout, 1, n);
      for (let i = 0; i < n; i++) {
        const g = gates[i], what = `gate ${g}`;
        expect(Number.isFinite(out[i]) && Number.isFinite(dx[i]) && Number.isFinite(dx[n + i]), what).toBe(true);
        if (g > 0) {
          expect(out[i], what).toBeCloseTo(1.5 * g, 3); // silu(g) = g
          expect(dx[i], what).toBeCloseTo(1.5, 5); // d/dg = up
          expect(dx[n + i], what).toBeCloseTo(g, 3); // d/dup = silu(g)
        } else {
          expect(Math.abs(out[i]), what).toBeLessThan(1e-10); // silu(g) ≈ 0
          expect(Math.abs(dx[i]), what).toBeLessThan(1e-9);
          expect(Math.abs(dx[n + i]), what).toBeLessThan(1e-10);
        }
      }
    });
  });

  describe('headRmsnorm', () => {
    // x holds rows of [q 3 heads | k 2 heads | v]: normalise the k heads through a subarray view.
    const N = 4, hd = 8, rowStride = 7 * hd, kOff = 3 * hd, nHeads = 2, eps = 1e-6;
    const next = mulberry32(701);
    const x = randomF32(N * rowStride, next, 2), w = randomF32(hd, next), r = randomF32(N * rowStride, next);

    it('forward normalises each head in place with the shared weight, saving the input heads and rstd', () => {
      const y = x.slice(), saved = nanFilled(N * nHeads * hd), rstd = nanFilled(N * nHeads);
      be.headRmsnormForward(y.subarray(kOff), saved, rstd, w, N, rowStride, nHeads, hd, eps);
      const ref = refHeadRmsnorm(x.subarray(kOff), w, N, rowStride, nHeads, hd, eps);
      expectErr(maxRelError(y.subarray(kOff), ref.out.subarray(0, y.length - kOff)), FWD_TOL, 'x');
      expect(y.subarray(0, kOff)).toEqual(x.subarray(0, kOff)); // the first q heads are untouched
      expectErr(maxRelError(rstd, ref.rstd), FWD_TOL, 'rstd');
      for (let n = 0; n < N; n++) {
        const src = n * rowStride + kOff;
        expect(saved.subarray(n * nHeads * hd, (n + 1) * nHeads * hd)).toEqual(x.subarray(src, src + nHeads * hd));
      }
    });

    it('backward (in place) matches finite differences w.r.t. x and the weight; dweight accumulates', () => {
      const y = x.slice(), saved = new Float32Array(N * nHeads * hd), rstd = new Float32Array(N * nHeads);
      be.headRmsnormForward(y.subarray(kOff), saved, rstd, w, N, rowStride, nHeads, hd, eps);
      const dx = r.slice(), dw0 = randomF32(hd, next), dw = dw0.slice();
      be.headRmsnormBackward(dx.subarray(kOff), dw, saved, w, rstd, N, rowStride, nHeads, hd);
      /** Σ r·(the whole buffer after the forward): the k heads normalised, every other column as it was. */
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>) => {
        const all = Float64Array.from(xx);
        all.set(refHeadRmsnorm(all.subarray(kOff), ww, N, rowStride, nHeads, hd, eps).out, kOff);
        return weightedSum(r, all);
      };
      // Columns outside the heads are the identity: their gradient is r, left as it was.
      expectErr(maxRelError(dx, centralDifference((v) => L(v, w), x)), GRAD_TOL, 'dx');
      const gotW = Float64Array.from(dw, (v, i) => v - dw0[i]);
      expectErr(maxRelError(gotW, centralDifference((v) => L(x, v), w)), GRAD_TOL, 'dweight');
    });
  });
});

// ------------------------------------------------------------------ native vs JS, odd sizes

describe.skipIf(natives.length === 0)('native agrees with JS at odd sizes', () => {
  const js = new JsBackend();
  const heads: [number, number][] = [[4, 1], [4, 2], [6, 3], [2, 2]];
  const cases: Gqa[] = [];
  for (const T of [1, 7, 130]) for (const [NH, NKV] of heads) for (const hd of [8, 12, 64]) cases.push({ B: T === 130 ? 1 : 2, T, NH, NKV, hd });

  /** Forward, backward accumulated onto random dqkv, and decode of the last row against the same rows. */
  function runAttention(be: Backend, s: Gqa) {
    const next = mulberry32(800 + s.T * 100 + s.NH * 10 + s.NKV + s.hd * 1000);
    const N = s.B * s.T, W = width(s), OC = s.NH * s.hd, KVC = s.NKV * s.hd;
    const qkv = randomF32(N * W, next, 2), dout = randomF32(N * OC, next), dqkv = randomF32(N * W, next);
    const out = nanFilled(N * OC), lse = nanFilled(s.B * s.NH * s.T);
    be.gqaAttentionForward(out, lse, qkv, s.B, s.T, s.NH, s.NKV, s.hd);
    be.gqaAttentionBackward(dqkv, dout, qkv, lse, s.B, s.T, s.NH, s.NKV, s.hd);
    const maxT = s.T, lens = Int32Array.from({ length: s.B }, (_, b) => s.T - b);
    const q = randomF32(s.B * OC, next), kc = randomF32(s.B * maxT * KVC, next), vc = randomF32(s.B * maxT * KVC, next);
    const dec = nanFilled(s.B * OC);
    be.gqaAttentionDecode(dec, q, kc, vc, lens, s.B, s.NH, s.NKV, s.hd, maxT);
    return { out, lse, dqkv, dec };
  }

  for (const s of cases) {
    it(`${gqaName(s)}: attention out, lse, dqkv (accumulated) and decode`, () => {
      const want = runAttention(js, s);
      for (const be of natives) {
        const got = runAttention(be, s), tag = label(be);
        expectErr(maxScaledDiff(got.out, want.out), 1e-5, `${tag} out`);
        expectErr(maxScaledDiff(got.lse, want.lse), 1e-5, `${tag} lse`);
        expectErr(maxScaledDiff(got.dqkv, want.dqkv), 1e-5, `${tag} dqkv`);
        expectErr(maxScaledDiff(got.dec, want.dec), 1e-5, `${tag} decode`);
      }
    }, 60_000);
  }

  // Big enough (≥ 32k floats) that the native elementwise loops use both threads.
  it('ropeFreqs, swiglu and headRmsnorm at T = 130 and a decode-sized row', () => {
    const run = (be: Backend) => {
      const next = mulberry32(901);
      const B = 2, T = 130, NH = 4, NKV = 2, hd = 64, W = (NH + 2 * NKV) * hd;
      const x = randomF32(B * T * W, next, 2);
      be.ropeFreqs(x, W, Int32Array.from([5, 70000]), B, T, NH + NKV, hd, scaledInvFreq(hd, 1e6), false);
      const rot = x.slice();
      const N = B * T, w = randomF32(hd, next), saved = new Float32Array(N * NH * hd), rstd = new Float32Array(N * NH);
      be.headRmsnormForward(x, saved, rstd, w, N, W, NH, hd, 1e-6);
      const normed = x.slice(), dx = randomF32(N * W, next), dw = randomF32(hd, next);
      be.headRmsnormBackward(dx, dw, saved, w, rstd, N, W, NH, hd);
      const I = 1111, rows = 17, inp = randomF32(rows * 2 * I, next, 6), g = randomF32(rows * I, next);
      const out = new Float32Array(rows * I), dinp = randomF32(rows * 2 * I, next);
      be.swigluForward(out, inp, rows, I);
      be.swigluBackward(dinp, inp, g, rows, I);
      const one = new Float32Array(4864);
      be.swigluForward(one, randomF32(2 * 4864, next, 6), 1, 4864);
      return [rot, normed, rstd, dx, dw, out, dinp, one];
    };
    const want = run(js);
    for (const be of natives) run(be).forEach((got, k) => expectErr(maxScaledDiff(got, want[k]), 1e-5, `${label(be)} output ${k}`));
  }, 60_000);

  it('forward and decode give the same bits on one and two threads (each head\'s arithmetic is independent of the split)', () => {
    for (const s of [{ B: 1, T: 130, NH: 4, NKV: 1, hd: 64 }, { B: 1, T: 130, NH: 6, NKV: 3, hd: 64 }, { B: 2, T: 7, NH: 4, NKV: 2, hd: 12 }]) {
      for (const gemm of new Set(natives.map((b) => b.name))) {
        const [one, two] = [1, 2].map((t) => natives.find((b) => b.name === gemm && b.threads === t));
        if (!one || !two) continue;
        const a = runAttention(one, s), b = runAttention(two, s);
        expect(b.out, `${gemm} ${gqaName(s)} out`).toEqual(a.out);
        expect(b.lse, `${gemm} ${gqaName(s)} lse`).toEqual(a.lse);
        expect(b.dec, `${gemm} ${gqaName(s)} decode`).toEqual(a.dec);
      }
    }
  }, 60_000);

  it('two-thread results repeat bit for bit (per-block partial sums, grouped dK/dV)', () => {
    for (const be of natives.filter((b) => b.threads > 1)) {
      const s: Gqa = { B: 1, T: 130, NH: 4, NKV: 1, hd: 64 }; // one kv group for two threads: its q heads are split
      const first = runAttention(be, s);
      for (let rep = 0; rep < 3; rep++) {
        const again = runAttention(be, s);
        expect(again.dqkv).toEqual(first.dqkv);
        expect(again.out).toEqual(first.out);
      }
      const next = mulberry32(902);
      const N = 300, hd = 64, nHeads = 4, x = randomF32(N * nHeads * hd, next), w = randomF32(hd, next), dy = randomF32(N * nHeads * hd, next);
      const dws = [0, 1, 2].map(() => {
        const y = x.slice(), saved = new Float32Array(N * nHeads * hd), rstd = new Float32Array(N * nHeads), d = dy.slice(), dw = new Float32Array(hd);
        be.headRmsnormForward(y, saved, rstd, w, N, nHeads * hd, nHeads, hd, 1e-6);
        be.headRmsnormBackward(d, dw, saved, w, rstd, N, nHeads * hd, nHeads, hd);
        return dw;
      });
      expect(dws[1]).toEqual(dws[0]);
      expect(dws[2]).toEqual(dws[0]);
    }
  }, 60_000);
});

// ------------------------------------------------------------------ argument errors

describe.each(backends.map((be) => [label(be), be] as const))('argument errors on %s', (_name, be) => {
  const f = (n: number) => new Float32Array(n);

  it('grouped-query attention: NH must be a multiple of NKV; buffers must fit the shape; lens within the cache', () => {
    expect(() => be.gqaAttentionForward(f(2 * 6 * 8), f(2 * 6), f(2 * 12 * 8), 1, 2, 6, 4, 8)).toThrow(/multiple of NKV/);
    expect(() => be.gqaAttentionBackward(f(2 * 12 * 8), f(2 * 6 * 8), f(2 * 12 * 8), f(2 * 6), 1, 2, 6, 4, 8)).toThrow(/multiple of NKV/);
    expect(() => be.gqaAttentionDecode(f(6 * 8), f(6 * 8), f(4 * 8), f(4 * 8), Int32Array.from([1]), 1, 6, 0, 8, 1)).toThrow(/multiple of NKV/);
    // NH = 4, NKV = 2, hd = 8: qkv rows are 64 wide; give one float too few.
    expect(() => be.gqaAttentionForward(f(3 * 32), f(4 * 3), f(3 * 64 - 1), 1, 3, 4, 2, 8)).toThrow(/qkv has 191 elements/);
    expect(() => be.gqaAttentionForward(f(3 * 32 - 1), f(4 * 3), f(3 * 64), 1, 3, 4, 2, 8)).toThrow(/out has 95 elements/);
    expect(() => be.gqaAttentionBackward(f(3 * 64), f(3 * 32), f(3 * 64), f(4 * 3 - 1), 1, 3, 4, 2, 8)).toThrow(/lse has 11 elements/);
    expect(() => be.gqaAttentionDecode(f(32), f(32), f(3 * 16 - 1), f(3 * 16), Int32Array.from([2]), 1, 4, 2, 8, 3)).toThrow(/kCache has 47 elements/);
    expect(() => be.gqaAttentionDecode(f(32), f(32), f(3 * 16), f(3 * 16), Int32Array.from([4]), 1, 4, 2, 8, 3)).toThrow(/lens\[0\] = 4 is outside \[0, maxT ?= ?3\]/);
  });

  it('ropeFreqs: even head size, a long enough frequency table, rowStride ≥ nHeads·hd, x long enough', () => {
    const pos0 = Int32Array.from([0]);
    expect(() => be.ropeFreqs(f(2 * 21), 21, pos0, 1, 2, 3, 7, new Float64Array(4), false)).toThrow(/even/);
    expect(() => be.ropeFreqs(f(2 * 24), 24, pos0, 1, 2, 3, 8, new Float64Array(3), false)).toThrow(/invFreq has 3 elements/);
    expect(() => be.ropeFreqs(f(2 * 24), 20, pos0, 1, 2, 3, 8, new Float64Array(4), false)).toThrow(/rowStride/);
    expect(() => be.ropeFreqs(f(24 + 23), 24, pos0, 1, 2, 3, 8, new Float64Array(4), false)).toThrow(/x has 47 elements/);
  });

  it('swiglu and headRmsnorm: buffers must fit the shape', () => {
    expect(() => be.swigluForward(f(6), f(11), 2, 3)).toThrow(/inp has 11 elements/);
    expect(() => be.swigluBackward(f(12), f(12), f(5), 2, 3)).toThrow(/dout has 5 elements/);
    expect(() => be.headRmsnormForward(f(2 * 20), f(2 * 16), f(2 * 2), f(8), 2, 15, 2, 8, 1e-6)).toThrow(/rowStride/);
    expect(() => be.headRmsnormForward(f(20 + 15), f(2 * 16), f(2 * 2), f(8), 2, 20, 2, 8, 1e-6)).toThrow(/x has 35 elements/);
    expect(() => be.headRmsnormBackward(f(2 * 20), f(7), f(2 * 16), f(8), f(2 * 2), 2, 20, 2, 8)).toThrow(/dweight has 7 elements/);
  });
});

describe.skipIf(natives.length === 0)('native argument types', () => {
  it('ropeFreqs wants a Float64Array frequency table', () => {
    const be = natives[0];
    expect(() => be.ropeFreqs(new Float32Array(16), 8, Int32Array.from([0]), 1, 2, 1, 8, new Float32Array(4) as unknown as Float64Array, false)).toThrow(/invFreq must be a Float64Array/);
  });
});

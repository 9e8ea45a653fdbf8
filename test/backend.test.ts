/**
 * Conformance suite for the compute-backend contract (src/engine/backend.ts), run against every
 * backend available here: the pure-JS backend always, plus one native backend per GEMM path when the
 * addon is built.
 *
 * Forward kernels are checked against float64 references written below as plain loops; backward
 * kernels against central finite differences of L = Σ r·forward(x) evaluated with those float64
 * references (so the finite differences are accurate to O(eps²), not float32 rounding). Then the
 * contract's semantics: overwrite vs accumulate, skipped and masked rows, aliasing, scratch inputs,
 * and native-vs-JS agreement on identical inputs.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/engine/backend.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import {
  centralDifference, maxRelError, maxScaledDiff, mulberry32, randomF32, weightedSum, type ErrorReport,
} from './helpers/gradcheck.ts';

// ------------------------------------------------------------------ backends under test

async function nativeBackends(): Promise<Backend[]> {
  const mod = await import('../src/engine/native.ts').catch(() => null);
  if (!mod) return [];
  const out: Backend[] = [];
  for (const gemm of mod.nativeGemmPaths()) {
    const be = mod.loadNativeBackend({ gemm });
    if (be) out.push(be);
  }
  return out;
}

const natives = await nativeBackends();
const backends: Backend[] = [new JsBackend(), ...natives];

// ------------------------------------------------------------------ sizes and tolerances

const B = 2, T = 5, C = 16, NH = 2, V = 11, N = B * T, HS = C / NH;
/** Backward vs finite differences, robust relative metric. */
const GRAD_TOL = 1e-3;
/** Float32 forward vs float64 reference, robust relative metric. */
const FWD_TOL = 1e-4;

function expectErr(report: ErrorReport, tol: number, what: string): void {
  expect(report.error, `${what}: worst at [${report.index}] got ${report.got}, want ${report.want}`).toBeLessThan(tol);
}

const f64 = (x: ArrayLike<number>) => Float64Array.from(x);
const nanFilled = (n: number) => new Float32Array(n).fill(NaN);

// ------------------------------------------------------------------ float64 references

function refGemm(tA: boolean, tB: boolean, M: number, Nc: number, K: number, alpha: number, A: ArrayLike<number>, lda: number,
  Bm: ArrayLike<number>, ldb: number, beta: number, Cm: ArrayLike<number>, ldc: number): { c: Float64Array; scale: Float64Array } {
  const c = new Float64Array(M * Nc), scale = new Float64Array(M * Nc);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < Nc; j++) {
      let dot = 0, mag = 0;
      for (let k = 0; k < K; k++) {
        const p = (tA ? A[k * lda + i] : A[i * lda + k]) * (tB ? Bm[j * ldb + k] : Bm[k * ldb + j]);
        dot += p;
        mag += Math.abs(p);
      }
      const old = beta === 0 ? 0 : beta * Cm[i * ldc + j];
      c[i * Nc + j] = alpha * dot + old;
      scale[i * Nc + j] = Math.abs(alpha) * mag + Math.abs(old) + 1e-30;
    }
  }
  return { c, scale };
}

function refEmbed(tokens: Int32Array, wte: ArrayLike<number>, wpe: ArrayLike<number> | null): Float64Array {
  const out = new Float64Array(N * C);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) out[n * C + c] = wte[tokens[n] * C + c] + (wpe ? wpe[(n % T) * C + c] : 0);
  return out;
}

function refLayernorm(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, eps: number) {
  const out = new Float64Array(N * C), mean = new Float64Array(N), rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let mu = 0;
    for (let c = 0; c < C; c++) mu += x[n * C + c] / C;
    let variance = 0;
    for (let c = 0; c < C; c++) variance += (x[n * C + c] - mu) ** 2 / C;
    const r = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[n * C + c] = (x[n * C + c] - mu) * r * w[c] + b[c];
    mean[n] = mu;
    rstd[n] = r;
  }
  return { out, mean, rstd };
}

function refRmsnorm(x: ArrayLike<number>, w: ArrayLike<number>, eps: number) {
  const out = new Float64Array(N * C), rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ms = 0;
    for (let c = 0; c < C; c++) ms += x[n * C + c] ** 2 / C;
    const r = 1 / Math.sqrt(ms + eps);
    for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
    rstd[n] = r;
  }
  return { out, rstd };
}

function refGelu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
}

function refRope(qkv: ArrayLike<number>, pos0: Int32Array, base: number, inverse: boolean): Float64Array {
  const out = Float64Array.from(qkv);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = pos0[b] + t;
      for (const part of [0, C]) {
        for (let h = 0; h < NH; h++) {
          for (let i = 0; i < HS / 2; i++) {
            const angle = (inverse ? -1 : 1) * pos * base ** (-2 * i / HS);
            const o = (b * T + t) * 3 * C + part + h * HS + 2 * i;
            const x0 = qkv[o], x1 = qkv[o + 1];
            out[o] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
            out[o + 1] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
          }
        }
      }
    }
  }
  return out;
}

function refAttention(qkv: ArrayLike<number>) {
  const out = new Float64Array(N * C), lse = new Float64Array(B * NH * T);
  const at = (b: number, t: number, part: number, h: number, i: number) => qkv[(b * T + t) * 3 * C + part * C + h * HS + i];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          for (let i = 0; i < HS; i++) dot += at(b, t, 0, h, i) * at(b, u, 1, h, i);
          s.push(dot / Math.sqrt(HS));
        }
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, x) => a + x, 0);
        lse[(b * NH + h) * T + t] = m + Math.log(z);
        for (let u = 0; u <= t; u++) {
          const p = e[u] / z;
          for (let i = 0; i < HS; i++) out[(b * T + t) * C + h * HS + i] += p * at(b, u, 2, h, i);
        }
      }
    }
  }
  return { out, lse };
}

/** Tempered masked log-softmax: logprob of the target and entropy per row (skipped rows give 0, 0). */
function refLogSoftmax(logits: ArrayLike<number>, targets: Int32Array, mask: Uint8Array | null, invTemp: number) {
  const rows = targets.length;
  const logp = new Float64Array(rows), ent = new Float64Array(rows);
  for (let n = 0; n < rows; n++) {
    if (targets[n] < 0) continue;
    const allowed = (v: number) => !mask || mask[n * V + v] !== 0;
    let m = -Infinity;
    for (let v = 0; v < V; v++) if (allowed(v)) m = Math.max(m, logits[n * V + v] * invTemp);
    if (m === -Infinity) {
      logp[n] = -Infinity;
      continue;
    }
    let s = 0;
    for (let v = 0; v < V; v++) if (allowed(v)) s += Math.exp(logits[n * V + v] * invTemp - m);
    const lse = m + Math.log(s);
    let h = 0;
    for (let v = 0; v < V; v++) {
      if (!allowed(v)) continue;
      const lp = logits[n * V + v] * invTemp - lse;
      h -= Math.exp(lp) * lp;
    }
    logp[n] = allowed(targets[n]) ? logits[n * V + targets[n]] * invTemp - lse : -Infinity;
    ent[n] = h;
  }
  return { logp, ent };
}

// ------------------------------------------------------------------ shared inputs

function attentionInputs(seed: number) {
  const next = mulberry32(seed);
  return { qkv: randomF32(N * 3 * C, next, 1.5), r: randomF32(N * C, next) };
}

/** Logits with a mask: row 1 forbids its target, row 2 is skipped (target -1), row 3 allows nothing. */
function softmaxInputs(seed: number, withMask: boolean) {
  const next = mulberry32(seed);
  const logits = randomF32(N * V, next, 3);
  const targets = Int32Array.from({ length: N }, () => Math.floor(next() * V));
  targets[2] = -1;
  let mask: Uint8Array | null = null;
  if (withMask) {
    mask = Uint8Array.from({ length: N * V }, () => (next() < 0.7 ? 1 : 0));
    for (let n = 0; n < N; n++) mask[n * V + targets[n]] = 1;
    mask[1 * V + targets[1]] = 0;
    mask.fill(0, 3 * V, 4 * V);
  }
  return { logits, targets, mask, dlogp: randomF32(N, next), dent: randomF32(N, next) };
}

// ------------------------------------------------------------------ the suite

describe.each(backends.map((be) => [be.name, be] as const))('backend %s', (_name, be) => {
  describe('sgemm', () => {
    // odd sizes; K past one JS K-slice (256); M past one JS row block (128); M ≤ 4 (streamed path)
    const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [7, 9, 2], [2, 13, 300], [4, 3, 9], [133, 6, 260], [9, 70, 33]];
    const combos: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
    for (const [M, Nc, K] of shapes) {
      for (const [tA, tB] of combos) {
        for (const [alpha, beta] of [[1, 0], [0.75, -0.5]] as const) {
          it(`${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} ${M}×${Nc}×${K} alpha=${alpha} beta=${beta}`, () => {
            const next = mulberry32(M * 1000 + Nc * 10 + K);
            const pad = 3;
            const lda = (tA ? M : K) + pad, ldb = (tB ? K : Nc) + pad, ldc = Nc + pad;
            const A = randomF32((tA ? K : M) * lda, next), Bm = randomF32((tB ? Nc : K) * ldb, next);
            // beta = 0 over NaN garbage must still give finite results
            const Cm = beta === 0 ? nanFilled(M * ldc) : randomF32(M * ldc, next);
            for (let i = 0; i < M; i++) Cm.fill(777, i * ldc + Nc, (i + 1) * ldc); // padding sentinels
            const { c, scale } = refGemm(tA, tB, M, Nc, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
            be.sgemm(tA, tB, M, Nc, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
            let worst = 0;
            for (let i = 0; i < M; i++) {
              for (let j = 0; j < Nc; j++) {
                const got = Cm[i * ldc + j];
                worst = Math.max(worst, Number.isFinite(got) ? Math.abs(got - c[i * Nc + j]) / scale[i * Nc + j] : Infinity);
              }
              for (let j = Nc; j < ldc; j++) expect(Cm[i * ldc + j], 'ldc padding must stay untouched').toBe(777);
            }
            expect(worst).toBeLessThan(1e-5);
          });
        }
      }
    }

    it('works on subarray views and handles K = 0 as C = beta·C', () => {
      const next = mulberry32(5);
      const baseA = randomF32(7 + 3 * 4, next), baseB = randomF32(5 + 4 * 2, next), baseC = randomF32(11 + 3 * 2, next);
      const A = baseA.subarray(7), Bm = baseB.subarray(5), Cm = baseC.subarray(11);
      const want = refGemm(false, false, 3, 2, 4, 1, A, 4, Bm, 2, 1, Cm, 2).c;
      be.sgemm(false, false, 3, 2, 4, 1, A, 4, Bm, 2, 1, Cm, 2);
      expectErr(maxRelError(Cm, want), 1e-5, 'subarray sgemm');
      const c0 = Float32Array.from([1, 2, NaN, 4]);
      be.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 0, c0, 2);
      expect(Array.from(c0)).toEqual([0, 0, 0, 0]);
      const c1 = Float32Array.from([1, 2, 3, 4]);
      be.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 1, new Float32Array(0), 2, 2, c1, 2);
      expect(Array.from(c1)).toEqual([2, 4, 6, 8]);
    });
  });

  describe('embedding', () => {
    const next = mulberry32(11);
    const tokens = Int32Array.from({ length: N }, () => Math.floor(next() * V));
    tokens[3] = tokens[0]; // a repeated token must accumulate both rows
    const wte = randomF32(V * C, next), wpe = randomF32(T * C, next), dout = randomF32(N * C, next);

    it('forward with and without positions (overwrites out)', () => {
      for (const pos of [wpe, null]) {
        const out = nanFilled(N * C);
        be.embedForward(out, tokens, wte, pos, B, T, C);
        expectErr(maxRelError(out, refEmbed(tokens, wte, pos)), FWD_TOL, `embedForward wpe=${pos !== null}`);
      }
    });

    it('backward = gradient of Σ dout·embed (finite differences), accumulating', () => {
      const loss = (w: Float64Array, p: Float64Array) => weightedSum(dout, refEmbed(tokens, w, p));
      const dwte = new Float32Array(V * C), dwpe = new Float32Array(T * C);
      be.embedBackward(dwte, dwpe, dout, tokens, B, T, C);
      expectErr(maxRelError(dwte, centralDifference((w) => loss(w, f64(wpe)), wte)), GRAD_TOL, 'dwte');
      expectErr(maxRelError(dwpe, centralDifference((p) => loss(f64(wte), p), wpe)), GRAD_TOL, 'dwpe');
      const onlyWte = new Float32Array(V * C);
      be.embedBackward(onlyWte, null, dout, tokens, B, T, C);
      expectErr(maxRelError(onlyWte, dwte), 1e-6, 'dwte without dwpe');
    });
  });

  describe('layernorm', () => {
    const next = mulberry32(21);
    const x = randomF32(N * C, next, 2), w = randomF32(C, next), b = randomF32(C, next), r = randomF32(N * C, next);
    const eps = 1e-5;

    it('forward matches the float64 reference (out, mean, rstd)', () => {
      const out = nanFilled(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      be.layernormForward(out, mean, rstd, x, w, b, N, C, eps);
      const ref = refLayernorm(x, w, b, eps);
      expectErr(maxRelError(out, ref.out), FWD_TOL, 'out');
      expectErr(maxRelError(mean, ref.mean), FWD_TOL, 'mean');
      expectErr(maxRelError(rstd, ref.rstd), FWD_TOL, 'rstd');
    });

    it('backward matches finite differences for dinp, dweight, dbias', () => {
      const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      be.layernormForward(out, mean, rstd, x, w, b, N, C, eps);
      const dinp = new Float32Array(N * C), dw = new Float32Array(C), db = new Float32Array(C);
      be.layernormBackward(dinp, dw, db, r, x, w, mean, rstd, N, C);
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => weightedSum(r, refLayernorm(xx, ww, bb, eps).out);
      expectErr(maxRelError(dinp, centralDifference((v) => L(v, w, b), x)), GRAD_TOL, 'dinp');
      expectErr(maxRelError(dw, centralDifference((v) => L(x, v, b), w)), GRAD_TOL, 'dweight');
      expectErr(maxRelError(db, centralDifference((v) => L(x, w, v), b)), GRAD_TOL, 'dbias');
    });
  });

  describe('rmsnorm', () => {
    const next = mulberry32(31);
    const x = randomF32(N * C, next, 2), w = randomF32(C, next), r = randomF32(N * C, next);
    const eps = 1e-5;

    it('forward matches the float64 reference', () => {
      const out = nanFilled(N * C), rstd = new Float32Array(N);
      be.rmsnormForward(out, rstd, x, w, N, C, eps);
      const ref = refRmsnorm(x, w, eps);
      expectErr(maxRelError(out, ref.out), FWD_TOL, 'out');
      expectErr(maxRelError(rstd, ref.rstd), FWD_TOL, 'rstd');
    });

    it('backward matches finite differences for dinp and dweight', () => {
      const out = new Float32Array(N * C), rstd = new Float32Array(N);
      be.rmsnormForward(out, rstd, x, w, N, C, eps);
      const dinp = new Float32Array(N * C), dw = new Float32Array(C);
      be.rmsnormBackward(dinp, dw, r, x, w, rstd, N, C);
      expectErr(maxRelError(dinp, centralDifference((v) => weightedSum(r, refRmsnorm(v, w, eps).out), x)), GRAD_TOL, 'dinp');
      expectErr(maxRelError(dw, centralDifference((v) => weightedSum(r, refRmsnorm(x, v, eps).out), w)), GRAD_TOL, 'dweight');
    });
  });

  describe('gelu', () => {
    const next = mulberry32(41);
    const x = randomF32(37, next, 4), r = randomF32(37, next);

    it('forward is the tanh approximation', () => {
      const out = nanFilled(37);
      be.geluForward(out, x, 37);
      expectErr(maxRelError(out, refGelu(x)), FWD_TOL, 'gelu');
    });

    it('backward matches finite differences', () => {
      const dinp = new Float32Array(37);
      be.geluBackward(dinp, x, r, 37);
      expectErr(maxRelError(dinp, centralDifference((v) => weightedSum(r, refGelu(v)), x)), GRAD_TOL, 'dgelu');
    });
  });

  describe('rope', () => {
    const next = mulberry32(51);
    const qkv = randomF32(N * 3 * C, next), pos0 = Int32Array.from([0, 37]), base = 10000;

    it('forward rotates q and k pairs by pos·θ_i and leaves v alone', () => {
      const y = qkv.slice();
      be.rope(y, pos0, B, T, C, NH, base, false);
      expectErr(maxRelError(y, refRope(qkv, pos0, base, false)), FWD_TOL, 'rope');
      for (let n = 0; n < N; n++) {
        const v = n * 3 * C + 2 * C;
        expect(Array.from(y.subarray(v, v + C))).toEqual(Array.from(qkv.subarray(v, v + C)));
      }
    });

    it('inverse undoes forward', () => {
      const y = qkv.slice();
      be.rope(y, pos0, B, T, C, NH, base, false);
      be.rope(y, pos0, B, T, C, NH, base, true);
      expectErr(maxRelError(y, qkv), 1e-4, 'inverse(forward(x))');
    });

    it('inverse is the backward: ⟨dy, R·dx⟩ = ⟨Rᵀ·dy, dx⟩ and it matches finite differences', () => {
      const dx = qkv, dy = randomF32(N * 3 * C, next);
      const Rdx = dx.slice();
      be.rope(Rdx, pos0, B, T, C, NH, base, false);
      const RTdy = dy.slice();
      be.rope(RTdy, pos0, B, T, C, NH, base, true);
      const lhs = weightedSum(dy, Rdx), rhs = weightedSum(RTdy, dx);
      expect(Math.abs(lhs - rhs) / (Math.abs(lhs) + Math.abs(rhs))).toBeLessThan(1e-5);
      const fd = centralDifference((v) => weightedSum(dy, refRope(v, pos0, base, false)), qkv);
      expectErr(maxRelError(RTdy, fd), GRAD_TOL, 'rope backward');
    });
  });

  describe('attention', () => {
    it('forward matches the reference; lse is each row\'s log-sum-exp of its causal scores', () => {
      const { qkv } = attentionInputs(61);
      const out = nanFilled(N * C), lse = nanFilled(B * NH * T);
      be.attentionForward(out, lse, qkv, B, T, C, NH);
      const ref = refAttention(qkv);
      expectErr(maxRelError(out, ref.out), FWD_TOL, 'out');
      expectErr(maxRelError(lse, ref.lse), FWD_TOL, 'lse');
    });

    it('backward matches finite differences w.r.t. q, k and v', () => {
      const { qkv, r } = attentionInputs(62);
      const out = new Float32Array(N * C), lse = new Float32Array(B * NH * T);
      be.attentionForward(out, lse, qkv, B, T, C, NH);
      const dqkv = new Float32Array(N * 3 * C);
      be.attentionBackward(dqkv, r, qkv, lse, B, T, C, NH);
      const fd = centralDifference((v) => weightedSum(r, refAttention(v).out), qkv);
      for (const [part, name] of [[0, 'dq'], [1, 'dk'], [2, 'dv']] as const) {
        const pick = (g: ArrayLike<number>) => Float64Array.from({ length: N * C }, (_, i) => g[Math.floor(i / C) * 3 * C + part * C + (i % C)]);
        expectErr(maxRelError(pick(dqkv), pick(fd)), GRAD_TOL, name);
      }
    });

    it('decode agrees with the last row of forward for rows of different lengths', () => {
      const { qkv } = attentionInputs(63);
      const out = new Float32Array(N * C), lse = new Float32Array(B * NH * T);
      be.attentionForward(out, lse, qkv, B, T, C, NH);
      const maxT = T + 2, lens = Int32Array.from([T, 3]);
      // cache slots past lens[b] hold NaN: decode must never read them
      const kCache = nanFilled(B * maxT * C), vCache = nanFilled(B * maxT * C), q = new Float32Array(B * C);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < lens[b]; t++) {
          const src = (b * T + t) * 3 * C;
          kCache.set(qkv.subarray(src + C, src + 2 * C), (b * maxT + t) * C);
          vCache.set(qkv.subarray(src + 2 * C, src + 3 * C), (b * maxT + t) * C);
        }
        const last = (b * T + lens[b] - 1) * 3 * C;
        q.set(qkv.subarray(last, last + C), b * C);
      }
      const dec = nanFilled(B * C);
      be.attentionDecode(dec, q, kCache, vCache, lens, B, C, NH, maxT);
      for (let b = 0; b < B; b++) {
        const row = (b * T + lens[b] - 1) * C;
        expectErr(maxRelError(dec.subarray(b * C, (b + 1) * C), out.subarray(row, row + C)), FWD_TOL, `decode row ${b}`);
      }
    });
  });

  describe('logSoftmax', () => {
    for (const [withMask, invTemp] of [[false, 1], [false, 1 / 0.7], [true, 1], [true, 1 / 1.3]] as const) {
      const label = `mask=${withMask} invTemp=${invTemp.toFixed(3)}`;

      it(`forward: logprob of the target and entropy (${label})`, () => {
        const { logits, targets, mask } = softmaxInputs(71, withMask);
        const logp = nanFilled(N), ent = nanFilled(N);
        be.logSoftmaxForward(logp, ent, logits, targets, mask, N, V, invTemp);
        const ref = refLogSoftmax(logits, targets, mask, invTemp);
        expectErr(maxRelError(logp, ref.logp), FWD_TOL, 'logprobs');
        expectErr(maxRelError(ent, ref.ent), FWD_TOL, 'entropy');
        expect(logp[2]).toBe(0); // target -1: skipped
        expect(ent[2]).toBe(0);
        if (withMask) {
          expect(logp[1]).toBe(-Infinity); // forbidden target
          expect(Number.isFinite(ent[1]) && ent[1] > 0).toBe(true);
          expect(logp[3]).toBe(-Infinity); // nothing allowed
          expect(ent[3]).toBe(0);
        }
      });

      it(`backward matches finite differences of Σ dlogp·logp + dent·entropy (${label})`, () => {
        const { logits, targets, mask, dlogp, dent } = softmaxInputs(72, withMask);
        const dlogits = nanFilled(N * V); // overwritten, so NaN on entry must not leak
        be.logSoftmaxBackward(dlogits, logits, targets, mask, dlogp, dent, N, V, invTemp);
        // A -∞ logprob (forbidden target) is a constant: it contributes no gradient.
        const L = (x: Float64Array) => {
          const { logp, ent } = refLogSoftmax(x, targets, mask, invTemp);
          let s = 0;
          for (let n = 0; n < N; n++) s += (Number.isFinite(logp[n]) ? dlogp[n] * logp[n] : 0) + dent[n] * ent[n];
          return s;
        };
        expectErr(maxRelError(dlogits, centralDifference(L, logits)), GRAD_TOL, 'dlogits');
        for (let v = 0; v < V; v++) expect(Math.abs(dlogits[2 * V + v])).toBe(0); // skipped row (±0 both fine)
        if (mask) for (let i = 0; i < N * V; i++) if (mask[i] === 0) expect(Math.abs(dlogits[i])).toBe(0);
      });

      it(`backward may alias logits (${label})`, () => {
        const { logits, targets, mask, dlogp, dent } = softmaxInputs(73, withMask);
        const separate = new Float32Array(N * V);
        be.logSoftmaxBackward(separate, logits, targets, mask, dlogp, dent, N, V, invTemp);
        const inPlace = logits.slice();
        be.logSoftmaxBackward(inPlace, inPlace, targets, mask, dlogp, dent, N, V, invTemp);
        expectErr(maxRelError(inPlace, separate), 1e-6, 'aliased dlogits');
      });
    }
  });

  describe('elementwise and optimizer', () => {
    const next = mulberry32(81);

    it('add (aliasing out = a), addBias, scale, sumSquares', () => {
      const a = randomF32(13, next), b = randomF32(13, next);
      const want = Float64Array.from(a, (x, i) => x + b[i]);
      const out = a.slice();
      be.add(out, out, b, 13);
      expectErr(maxRelError(out, want), 1e-6, 'add');
      const m = randomF32(3 * 5, next), bias = randomF32(5, next);
      const wantBias = Float64Array.from(m, (x, i) => x + bias[i % 5]);
      be.addBias(m, bias, 3, 5);
      expectErr(maxRelError(m, wantBias), 1e-6, 'addBias');
      const s = randomF32(9, next), wantScaled = Float64Array.from(s, (x) => x * -0.3);
      be.scale(s, -0.3, 9);
      expectErr(maxRelError(s, wantScaled), 1e-6, 'scale');
      const x = randomF32(1001, next);
      expect(be.sumSquares(x, 1000)).toBeCloseTo(weightedSum(x.subarray(0, 1000), x.subarray(0, 1000)), 4);
    });

    it('biasBackward = gradient of Σ dout·addBias(bias) (finite differences)', () => {
      const dout = randomF32(4 * 7, next), bias = randomF32(7, next);
      const db = new Float32Array(7);
      be.biasBackward(db, dout, 4, 7);
      const L = (bb: Float64Array) => {
        let s = 0;
        for (let i = 0; i < 28; i++) s += dout[i] * bb[i % 7];
        return s;
      };
      expectErr(maxRelError(db, centralDifference(L, bias)), GRAD_TOL, 'dbias');
    });

    it('adamw: two steps match the PyTorch formula (decoupled decay, bias correction)', () => {
      const n = 9, lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
      const p = randomF32(n, next), m = new Float32Array(n), v = new Float32Array(n);
      const grads = [randomF32(n, next), randomF32(n, next)];
      grads[1][0] = 0; // decay-only coordinate in step 2 still moves by the Adam momentum and decay
      const rp = f64(p), rm = new Float64Array(n), rv = new Float64Array(n);
      for (let t = 1; t <= 2; t++) {
        const g = grads[t - 1], before = p.slice(), refBefore = rp.slice();
        be.adamw(p, g, m, v, n, lr, b1, b2, eps, wd, t);
        for (let i = 0; i < n; i++) {
          rm[i] = b1 * rm[i] + (1 - b1) * g[i];
          rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i];
          rp[i] *= 1 - lr * wd; // PyTorch: decay first, on the old parameter
          rp[i] -= (lr / (1 - b1 ** t)) * rm[i] / (Math.sqrt(rv[i]) / Math.sqrt(1 - b2 ** t) + eps);
        }
        // compare the updates (not the parameters, whose float32 rounding would hide a wrong step)
        const step = Float64Array.from(p, (x, i) => x - before[i]), refStep = Float64Array.from(rp, (x, i) => x - refBefore[i]);
        expectErr(maxRelError(step, refStep, 1e-6), 1e-3, `adamw step ${t}`);
        expectErr(maxRelError(m, rm), 1e-5, `m after step ${t}`);
        expectErr(maxRelError(v, rv, 1e-9), 1e-5, `v after step ${t}`);
        rp.set(p); // continue both from the same float32 parameters
      }
    });
  });

  describe('accumulate semantics: a second backward call adds the same gradient again', () => {
    const next = mulberry32(91);
    /** Runs `call` twice on buffers prefilled with random values; each call must add the same nonzero delta. */
    function expectAccumulates(what: string, grads: Float32Array[], call: () => void): void {
      for (const g of grads) g.set(randomF32(g.length, next));
      const g0 = grads.map((g) => g.slice());
      call();
      const g1 = grads.map((g) => g.slice());
      call();
      grads.forEach((g, k) => {
        const d1 = Float64Array.from(g1[k], (x, i) => x - g0[k][i]);
        const d2 = Float64Array.from(g, (x, i) => x - g1[k][i]);
        expect(d1.some((x) => x !== 0), `${what}[${k}] got no gradient`).toBe(true);
        expectErr(maxRelError(d2, d1), 1e-4, `${what}[${k}] second call`);
      });
    }

    it('embed, layernorm, rmsnorm, gelu, attention, bias', () => {
      const tokens = Int32Array.from({ length: N }, (_, i) => i % V);
      const dout = randomF32(N * C, next), x = randomF32(N * C, next), w = randomF32(C, next), b = randomF32(C, next);
      const dwte = new Float32Array(V * C), dwpe = new Float32Array(T * C);
      expectAccumulates('embedBackward', [dwte, dwpe], () => be.embedBackward(dwte, dwpe, dout, tokens, B, T, C));

      const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      be.layernormForward(out, mean, rstd, x, w, b, N, C, 1e-5);
      const dinp = new Float32Array(N * C), dw = new Float32Array(C), db = new Float32Array(C);
      expectAccumulates('layernormBackward', [dinp, dw, db], () => be.layernormBackward(dinp, dw, db, dout, x, w, mean, rstd, N, C));

      be.rmsnormForward(out, rstd, x, w, N, C, 1e-5);
      expectAccumulates('rmsnormBackward', [dinp, dw], () => be.rmsnormBackward(dinp, dw, dout, x, w, rstd, N, C));

      expectAccumulates('geluBackward', [dinp], () => be.geluBackward(dinp, x, dout, N * C));

      const { qkv } = attentionInputs(92);
      const lse = new Float32Array(B * NH * T);
      be.attentionForward(out, lse, qkv, B, T, C, NH);
      const dqkv = new Float32Array(N * 3 * C);
      expectAccumulates('attentionBackward', [dqkv], () => be.attentionBackward(dqkv, dout, qkv, lse, B, T, C, NH));

      const dbias = new Float32Array(C);
      expectAccumulates('biasBackward', [dbias], () => be.biasBackward(dbias, dout, N, C));
    });
  });
});

// ------------------------------------------------------------------ native vs JS on identical inputs

/** Each entry runs one kernel on inputs built from a fixed seed and returns every buffer it wrote. */
const KERNEL_RUNS: Record<string, (be: Backend) => ArrayLike<number>[]> = {
  sgemm: (be) => {
    const out: Float32Array[] = [];
    for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
      const next = mulberry32(101);
      const M = 67, Nc = 45, K = 300;
      const A = randomF32(M * K, next), Bm = randomF32(K * Nc, next), Cm = randomF32(M * Nc, next);
      be.sgemm(tA, tB, M, Nc, K, 0.5, A, tA ? M : K, Bm, tB ? K : Nc, 0.25, Cm, Nc);
      out.push(Cm);
    }
    return out;
  },
  embed: (be) => {
    const next = mulberry32(102);
    const tokens = Int32Array.from({ length: N }, () => Math.floor(next() * V));
    const wte = randomF32(V * C, next), wpe = randomF32(T * C, next), dout = randomF32(N * C, next);
    const out = new Float32Array(N * C), dwte = randomF32(V * C, next), dwpe = randomF32(T * C, next);
    be.embedForward(out, tokens, wte, wpe, B, T, C);
    be.embedBackward(dwte, dwpe, dout, tokens, B, T, C);
    return [out, dwte, dwpe];
  },
  layernorm: (be) => {
    const next = mulberry32(103);
    const x = randomF32(N * C, next, 3), w = randomF32(C, next), b = randomF32(C, next), dout = randomF32(N * C, next);
    const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
    be.layernormForward(out, mean, rstd, x, w, b, N, C, 1e-5);
    const dinp = randomF32(N * C, next), dw = randomF32(C, next), db = randomF32(C, next);
    be.layernormBackward(dinp, dw, db, dout, x, w, mean, rstd, N, C);
    return [out, mean, rstd, dinp, dw, db];
  },
  rmsnorm: (be) => {
    const next = mulberry32(104);
    const x = randomF32(N * C, next, 3), w = randomF32(C, next), dout = randomF32(N * C, next);
    const out = new Float32Array(N * C), rstd = new Float32Array(N);
    be.rmsnormForward(out, rstd, x, w, N, C, 1e-6);
    const dinp = randomF32(N * C, next), dw = randomF32(C, next);
    be.rmsnormBackward(dinp, dw, dout, x, w, rstd, N, C);
    return [out, rstd, dinp, dw];
  },
  gelu: (be) => {
    const next = mulberry32(105);
    const x = randomF32(101, next, 5), dout = randomF32(101, next);
    const out = new Float32Array(101), dinp = randomF32(101, next);
    be.geluForward(out, x, 101);
    be.geluBackward(dinp, x, dout, 101);
    return [out, dinp];
  },
  rope: (be) => {
    const next = mulberry32(106);
    const qkv = randomF32(N * 3 * C, next), pos0 = Int32Array.from([3, 1000]);
    const fwd = qkv.slice(), inv = qkv.slice();
    be.rope(fwd, pos0, B, T, C, NH, 10000, false);
    be.rope(inv, pos0, B, T, C, NH, 500, true);
    return [fwd, inv];
  },
  attention: (be) => {
    const next = mulberry32(107);
    const qkv = randomF32(N * 3 * C, next, 2), dout = randomF32(N * C, next);
    const out = new Float32Array(N * C), lse = new Float32Array(B * NH * T);
    be.attentionForward(out, lse, qkv, B, T, C, NH);
    const dqkv = randomF32(N * 3 * C, next);
    be.attentionBackward(dqkv, dout, qkv, lse, B, T, C, NH);
    const maxT = 6, lens = Int32Array.from([6, 2]);
    const q = randomF32(B * C, next), kc = randomF32(B * maxT * C, next), vc = randomF32(B * maxT * C, next);
    const dec = new Float32Array(B * C);
    be.attentionDecode(dec, q, kc, vc, lens, B, C, NH, maxT);
    return [out, lse, dqkv, dec];
  },
  logSoftmax: (be) => {
    const out: ArrayLike<number>[] = [];
    for (const withMask of [false, true]) {
      const { logits, targets, mask, dlogp, dent } = softmaxInputs(108, withMask);
      const logp = new Float32Array(N), ent = new Float32Array(N), dlogits = new Float32Array(N * V);
      be.logSoftmaxForward(logp, ent, logits, targets, mask, N, V, 1 / 0.8);
      be.logSoftmaxBackward(dlogits, logits, targets, mask, dlogp, dent, N, V, 1 / 0.8);
      out.push(logp, ent, dlogits);
    }
    return out;
  },
  elementwise: (be) => {
    const next = mulberry32(109);
    const a = randomF32(50, next), b = randomF32(50, next), out = new Float32Array(50);
    be.add(out, a, b, 50);
    const m = randomF32(5 * 10, next), bias = randomF32(10, next), db = randomF32(10, next);
    be.addBias(m, bias, 5, 10);
    be.biasBackward(db, m, 5, 10);
    const s = randomF32(50, next);
    be.scale(s, 1.7, 50);
    return [out, m, db, s, [be.sumSquares(s, 50)]];
  },
  adamw: (be) => {
    const next = mulberry32(110);
    const p = randomF32(40, next), m = new Float32Array(40), v = new Float32Array(40);
    for (let t = 1; t <= 3; t++) be.adamw(p, randomF32(40, next), m, v, 40, 1e-2, 0.9, 0.95, 1e-8, 0.05, t);
    return [p, m, v];
  },
};

describe.skipIf(natives.length === 0)('native agrees with JS on identical inputs', () => {
  const js = new JsBackend();
  for (const native of natives) {
    for (const [kernel, run] of Object.entries(KERNEL_RUNS)) {
      it(`${native.name}: ${kernel}`, () => {
        const want = run(js), got = run(native);
        want.forEach((w, k) => expectErr(maxScaledDiff(got[k], w), 1e-4, `${kernel} output ${k}`));
      });
    }
  }
});

describe('JsBackend argument checks', () => {
  const js = new JsBackend();
  it('sgemm names a buffer that is too small or a bad leading dimension', () => {
    expect(() => js.sgemm(false, false, 2, 2, 2, 1, new Float32Array(3), 2, new Float32Array(4), 2, 0, new Float32Array(4), 2)).toThrow(/A has 3 floats/i);
    expect(() => js.sgemm(false, false, 2, 2, 3, 1, new Float32Array(6), 2, new Float32Array(6), 2, 0, new Float32Array(4), 2)).toThrow(/lda = 2/);
  });
  it('embedding and log-softmax reject out-of-vocabulary ids', () => {
    const out = new Float32Array(2 * 4);
    expect(() => js.embedForward(out, Int32Array.from([0, 5]), new Float32Array(3 * 4), null, 1, 2, 4)).toThrow(/tokens\[1\] = 5/);
    expect(() => js.logSoftmaxForward(new Float32Array(1), new Float32Array(1), new Float32Array(3), Int32Array.from([3]), null, 1, 3, 1)).toThrow(/targets\[0\] = 3/);
  });
  it('rope rejects an odd head size', () => {
    expect(() => js.rope(new Float32Array(9), Int32Array.from([0]), 1, 1, 3, 1, 10000, false)).toThrow(/even/);
  });
});

// ------------------------------------------------------------------ non-finite logits

describe.each(backends.map((be) => [be.name, be] as const))('non-finite logits on %s', (_name, be) => {
  it('a row with a NaN or infinite allowed logit gives NaN logprob and entropy, not the "every token masked" −∞ and 0', () => {
    const W = 5;
    const logits = Float32Array.from([
      NaN, NaN, NaN, NaN, NaN, // row 0: all NaN (what NaN weights give)
      0.1, NaN, 0.3, 0.2, 0.0, // row 1: one NaN
      0.1, NaN, 0.3, 0.2, 0.0, // row 2: the NaN is masked out: a normal row
      Infinity, 0, 0, 0, 0, //    row 3: an infinite logit
      0, 0, 0, 0, 0, //           row 4: every token masked: −∞ and 0 as before
    ]);
    const mask = new Uint8Array(5 * W).fill(1);
    mask[2 * W + 1] = 0;
    mask.fill(0, 4 * W, 5 * W);
    const targets = Int32Array.from([0, 2, 2, 1, 0]);
    const logp = new Float32Array(5), ent = new Float32Array(5);
    be.logSoftmaxForward(logp, ent, logits, targets, mask, 5, W, 1);
    for (const row of [0, 1, 3]) {
      expect(logp[row], `row ${row} logprob`).toBeNaN();
      expect(ent[row], `row ${row} entropy`).toBeNaN();
    }
    expect(Number.isFinite(logp[2]) && Number.isFinite(ent[2])).toBe(true);
    expect([logp[4], ent[4]]).toEqual([-Infinity, 0]);
    // Without a mask too (the unmasked kernel loop).
    be.logSoftmaxForward(logp, ent, logits.subarray(0, 2 * W), targets, null, 2, W, 1);
    expect([logp[0], ent[0], logp[1], ent[1]].every((x) => Number.isNaN(x))).toBe(true);
  });
});

// ------------------------------------------------------------------ AdamW: one update on every path

describe.skipIf(natives.length === 0)('AdamW: native and JS paths give the same update (≤ 1e-7 relative)', () => {
  const js = new JsBackend();
  const settings = [
    { b1: 0.9, b2: 0.999, lr: 1e-3, eps: 1e-8, wd: 0.01 },
    { b1: 0.9, b2: 0.95, lr: 3e-4, eps: 1e-6, wd: 0.1 },
    { b1: 0.5, b2: 0.9999, lr: 1e-2, eps: 1e-8, wd: 0 },
  ];
  for (const native of natives) {
    it(`${native.name}: parameters, moments and each step's update over 4 steps`, () => {
      for (const o of settings) {
        const next = mulberry32(111);
        const n = 4099; // not a multiple of the SIMD width or of the per-thread span
        const p0 = randomF32(n, next), grads = Array.from({ length: 4 }, () => randomF32(n, next, 1e-2));
        const state = () => ({ p: p0.slice(), m: new Float32Array(n), v: new Float32Array(n) });
        const a = state(), b = state();
        for (let t = 1; t <= 4; t++) {
          const beforeA = a.p.slice(), beforeB = b.p.slice();
          js.adamw(a.p, grads[t - 1], a.m, a.v, n, o.lr, o.b1, o.b2, o.eps, o.wd, t);
          native.adamw(b.p, grads[t - 1], b.m, b.v, n, o.lr, o.b1, o.b2, o.eps, o.wd, t);
          const worst = (x: ArrayLike<number>, y: ArrayLike<number>) => {
            let w = 0;
            for (let i = 0; i < n; i++) w = Math.max(w, x[i] === y[i] ? 0 : Math.abs(x[i] - y[i]) / Math.abs(y[i]));
            return w;
          };
          const what = `β₁=${o.b1} β₂=${o.b2} step ${t}`;
          expect(worst(b.m, a.m), `m, ${what}`).toBeLessThanOrEqual(1e-7);
          expect(worst(b.v, a.v), `v, ${what}`).toBeLessThanOrEqual(1e-7);
          const du = Float64Array.from(b.p, (x, i) => x - beforeB[i]), dj = Float64Array.from(a.p, (x, i) => x - beforeA[i]);
          expect(worst(du, dj), `update, ${what}`).toBeLessThanOrEqual(1e-7);
        }
      }
    });
  }
});

// ------------------------------------------------------------------ which compute paths ran

/** CI must test the native kernels: there a missing addon fails instead of skipping them. */
const REQUIRE_NATIVE = ['AGENTRL_REQUIRE_NATIVE', 'CI'].some((k) => {
  const v = process.env[k];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
});

describe('compute paths', () => {
  it(`lists every compute path as tested or skipped, with the reason${REQUIRE_NATIVE ? ' (native addon required: CI)' : ''}`, async () => {
    const mod = await import('../src/engine/native.ts');
    const info = mod.nativeInfo();
    const items = ['js ✓'];
    if (!info) {
      items.push(`native skipped (${mod.nativeLoadError()})`);
    } else {
      const why: Record<string, string> = {
        openblas: info.openblasError || 'libopenblas not loadable',
        avx512: 'this CPU lacks AVX-512',
        avx2: 'this CPU lacks AVX2',
        scalar: 'not offered by the addon',
      };
      for (const p of mod.GEMM_PATHS) items.push(info.paths.includes(p) ? `native/${p} ✓` : `native/${p} skipped (${why[p]})`);
    }
    console.log(`compute paths: ${items.join(', ')}`);
    expect(backends.map((b) => b.name)).toEqual(['js', ...(info?.paths ?? []).map((p) => `native/${p}`)]);
    if (REQUIRE_NATIVE) expect(info, `the native addon must load in CI: ${mod.nativeLoadError()}`).not.toBeNull();
  });
});

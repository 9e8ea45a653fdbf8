/**
 * The pure-TypeScript compute backend: always available, single-threaded, written for V8.
 *
 * Every kernel follows the contract in ./backend.ts. Performance notes:
 * - sgemm reduces all four transpose cases to "rows of op(A) · rows of op(B)ᵀ" (dot products over a
 *   contiguous k), packing a transposed operand into reusable scratch one K-slice at a time, and
 *   computes 4×4 register tiles of C whose 16 accumulators are float64 locals. Small-M products with
 *   an untransposed B (decode-sized) stream B's rows instead (i-k-j), which needs no packing.
 * - Scratch buffers belong to the instance and only grow: hot loops never allocate.
 * - Float64 is used where it buys accuracy (sumSquares, norm statistics, softmax sums, GEMM tiles);
 *   elsewhere JS arithmetic is float64 anyway and values are rounded once when stored.
 */
import type { Backend } from './backend.ts';

/** K-slice of one packed panel: 4 rows × KC floats of each operand stay in L1. */
const KC = 256;
/** Rows of op(A) per block: MC × KC floats (128 KiB) stay in L2 while B's panels stream past. */
const MC = 128;
/** Below this many rows of C, an untransposed B is streamed row by row instead of packed. */
const STREAM_ROWS = 4;

const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

export class JsBackend implements Backend {
  readonly name = 'js';
  readonly threads = 1;

  private packA: Float32Array = new Float32Array(0);
  private packB: Float32Array = new Float32Array(0);
  private scores: Float64Array = new Float64Array(0);
  private ropeCos: Float64Array = new Float64Array(0);
  private ropeSin: Float64Array = new Float64Array(0);
  private invFreqCache: { base: number; hs: number; invFreq: Float64Array } | null = null;

  // ---------------------------------------------------------------- GEMM

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number,
    beta: number, C: Float32Array, ldc: number,
  ): void {
    checkGemmArgs(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
    if (M === 0 || N === 0) return;
    scaleMatrix(C, M, N, ldc, beta);
    if (alpha === 0 || K === 0) return;

    if (!transB && M <= STREAM_ROWS) {
      streamRowsGemm(transA, M, N, K, alpha, A, lda, B, ldb, C, ldc);
      return;
    }
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kc = Math.min(KC, K - k0);
      // op(B)ᵀ rows (N × kc, contiguous in k): B itself when transposed, else a packed copy.
      let bSrc = B, bOff = k0, bStride = ldb;
      if (!transB) {
        bSrc = this.packB = grow(this.packB, N * kc);
        packTransposed(bSrc, B, k0 * ldb, ldb, kc, N);
        bOff = 0;
        bStride = kc;
      }
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = Math.min(MC, M - i0);
        let aSrc = A, aOff = i0 * lda + k0, aStride = lda;
        if (transA) {
          aSrc = this.packA = grow(this.packA, mc * kc);
          packTransposed(aSrc, A, k0 * lda + i0, lda, kc, mc);
          aOff = 0;
          aStride = kc;
        }
        dotTiles(mc, N, kc, alpha, aSrc, aOff, aStride, bSrc, bOff, bStride, C, i0 * ldc, ldc);
      }
    }
  }

  // ---------------------------------------------------------------- embeddings

  embedForward(out: Float32Array, tokens: Int32Array, wte: Float32Array, wpe: Float32Array | null, B: number, T: number, C: number): void {
    const vocab = Math.floor(wte.length / C);
    for (let n = 0; n < B * T; n++) {
      const tok = checkToken(tokens[n], n, vocab);
      const o = n * C, w = tok * C;
      if (wpe) {
        const p = (n % T) * C;
        for (let c = 0; c < C; c++) out[o + c] = wte[w + c] + wpe[p + c];
      } else {
        for (let c = 0; c < C; c++) out[o + c] = wte[w + c];
      }
    }
  }

  embedBackward(dwte: Float32Array, dwpe: Float32Array | null, dout: Float32Array, tokens: Int32Array, B: number, T: number, C: number): void {
    const vocab = Math.floor(dwte.length / C);
    for (let n = 0; n < B * T; n++) {
      const tok = checkToken(tokens[n], n, vocab);
      const d = n * C, w = tok * C;
      for (let c = 0; c < C; c++) dwte[w + c] += dout[d + c];
      if (dwpe) {
        const p = (n % T) * C;
        for (let c = 0; c < C; c++) dwpe[p + c] += dout[d + c];
      }
    }
  }

  // ---------------------------------------------------------------- normalisation

  layernormForward(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number, eps: number): void {
    for (let n = 0; n < N; n++) {
      const x = n * C;
      let sum = 0;
      for (let c = 0; c < C; c++) sum += inp[x + c];
      const mu = sum / C;
      let sq = 0;
      for (let c = 0; c < C; c++) {
        const d = inp[x + c] - mu;
        sq += d * d;
      }
      const r = 1 / Math.sqrt(sq / C + eps);
      for (let c = 0; c < C; c++) out[x + c] = (inp[x + c] - mu) * r * weight[c] + bias[c];
      mean[n] = mu;
      rstd[n] = r;
    }
  }

  layernormBackward(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void {
    for (let n = 0; n < N; n++) {
      const x = n * C, mu = mean[n], r = rstd[n];
      // dx = r·(g - mean(g) - x̂·mean(g·x̂)) with g = w·dout, x̂ = (x-μ)·r
      let gMean = 0, gxMean = 0;
      for (let c = 0; c < C; c++) {
        const g = weight[c] * dout[x + c];
        gMean += g;
        gxMean += g * (inp[x + c] - mu) * r;
      }
      gMean /= C;
      gxMean /= C;
      for (let c = 0; c < C; c++) {
        const dy = dout[x + c];
        const xhat = (inp[x + c] - mu) * r;
        dbias[c] += dy;
        dweight[c] += xhat * dy;
        dinp[x + c] += r * (weight[c] * dy - gMean - xhat * gxMean);
      }
    }
  }

  rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, N: number, C: number, eps: number): void {
    for (let n = 0; n < N; n++) {
      const x = n * C;
      let sq = 0;
      for (let c = 0; c < C; c++) sq += inp[x + c] * inp[x + c];
      const r = 1 / Math.sqrt(sq / C + eps);
      for (let c = 0; c < C; c++) out[x + c] = inp[x + c] * r * weight[c];
      rstd[n] = r;
    }
  }

  rmsnormBackward(dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, C: number): void {
    for (let n = 0; n < N; n++) {
      const x = n * C, r = rstd[n];
      // ∂r/∂x_j = -r³·x_j/C, so dx_j = r·w_j·dy_j - (r³/C)·x_j·Σ_i w_i·dy_i·x_i
      let gx = 0;
      for (let c = 0; c < C; c++) gx += weight[c] * dout[x + c] * inp[x + c];
      const k = (r * r * r * gx) / C;
      for (let c = 0; c < C; c++) {
        const dy = dout[x + c];
        dweight[c] += inp[x + c] * r * dy;
        dinp[x + c] += r * weight[c] * dy - k * inp[x + c];
      }
    }
  }

  // ---------------------------------------------------------------- GELU

  geluForward(out: Float32Array, inp: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const x = inp[i];
      out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x)));
    }
  }

  geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const x = inp[i];
      const th = Math.tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
      const du = GELU_SCALE * (1 + 3 * GELU_CUBIC * x * x);
      dinp[i] += (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du) * dout[i];
    }
  }

  // ---------------------------------------------------------------- RoPE and attention (GPT-2 layout)
  // The GPT-2-layout kernels are the grouped-query ones with NKV = NH and hd = C/NH (one implementation).

  rope(qkv: Float32Array, pos0: Int32Array, B: number, T: number, C: number, NH: number, base: number, inverse: boolean): void {
    const hs = C / NH;
    if (!Number.isInteger(hs) || hs % 2 !== 0) {
      throw new RangeError(`rope: head size C/NH = ${C}/${NH} must be an even integer (RoPE rotates channel pairs)`);
    }
    // q and k heads are contiguous: 2·NH heads of width hs at the start of each 3C-wide row.
    this.ropeFreqs(qkv, 3 * C, pos0, B, T, 2 * NH, hs, this.ropeInvFreq(base, hs), inverse);
  }

  /** θ_i = base^(−2i/hs), i < hs/2, cached for the last (base, hs) asked for. */
  private ropeInvFreq(base: number, hs: number): Float64Array {
    const cached = this.invFreqCache;
    if (cached && cached.base === base && cached.hs === hs) return cached.invFreq;
    const invFreq = Float64Array.from({ length: hs / 2 }, (_, i) => Math.pow(base, (-2 * i) / hs));
    this.invFreqCache = { base, hs, invFreq };
    return invFreq;
  }

  attentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void {
    this.gqaAttentionForward(out, lse, qkv, B, T, NH, NH, headSize('attentionForward', C, NH));
  }

  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void {
    this.gqaAttentionBackward(dqkv, dout, qkv, lse, B, T, NH, NH, headSize('attentionBackward', C, NH));
  }

  attentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, C: number, NH: number, maxT: number): void {
    this.gqaAttentionDecode(out, q, kCache, vCache, lens, B, NH, NH, headSize('attentionDecode', C, NH), maxT);
  }

  // ---------------------------------------------------------------- open-weight architectures

  gqaAttentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void {
    const s = gqaShape('gqaAttentionForward', NH, NKV, hd);
    needLength('gqaAttentionForward', 'qkv', qkv, B * T * s.QKV);
    needLength('gqaAttentionForward', 'out', out, B * T * s.OC);
    needLength('gqaAttentionForward', 'lse', lse, B * NH * T);
    const { QKV, OC, kOff, vOff, group } = s, scale = 1 / Math.sqrt(hd);
    // One row's scores at a time: scratch of T, never T×T.
    const scores = this.scores = growF64(this.scores, T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < NH; h++) {
          const q = (b * T + t) * QKV + h * hd, kv = Math.floor(h / group) * hd;
          let max = -Infinity;
          for (let t2 = 0; t2 <= t; t2++) {
            const k = (b * T + t2) * QKV + kOff + kv;
            let dot = 0;
            for (let i = 0; i < hd; i++) dot += qkv[q + i] * qkv[k + i];
            dot *= scale;
            scores[t2] = dot;
            if (dot > max) max = dot;
          }
          let sum = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const e = Math.exp(scores[t2] - max);
            scores[t2] = e;
            sum += e;
          }
          lse[(b * NH + h) * T + t] = max + Math.log(sum);
          const inv = 1 / sum;
          const o = (b * T + t) * OC + h * hd;
          for (let i = 0; i < hd; i++) out[o + i] = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const v = (b * T + t2) * QKV + vOff + kv, p = scores[t2] * inv;
            for (let i = 0; i < hd; i++) out[o + i] += p * qkv[v + i];
          }
        }
      }
    }
  }

  gqaAttentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void {
    const s = gqaShape('gqaAttentionBackward', NH, NKV, hd);
    needLength('gqaAttentionBackward', 'qkv', qkv, B * T * s.QKV);
    needLength('gqaAttentionBackward', 'dqkv', dqkv, B * T * s.QKV);
    needLength('gqaAttentionBackward', 'dout', dout, B * T * s.OC);
    needLength('gqaAttentionBackward', 'lse', lse, B * NH * T);
    const { QKV, OC, kOff, vOff, group } = s, scale = 1 / Math.sqrt(hd);
    // One row's probabilities and dL/dp at a time: scratch of 2T, never T×T.
    const scratch = this.scores = growF64(this.scores, 2 * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < NH; h++) {
          const q = (b * T + t) * QKV + h * hd, kv = Math.floor(h / group) * hd;
          const o = (b * T + t) * OC + h * hd;
          const rowLse = lse[(b * NH + h) * T + t];
          // p = exp(q·k·scale − lse) recomputed; dp = dout·v; dv += p·dout; D = Σ p·dp.
          let D = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const k = (b * T + t2) * QKV + kOff + kv, v = (b * T + t2) * QKV + vOff + kv;
            let sc = 0, dp = 0;
            for (let i = 0; i < hd; i++) {
              sc += qkv[q + i] * qkv[k + i];
              dp += dout[o + i] * qkv[v + i];
            }
            const p = Math.exp(sc * scale - rowLse);
            for (let i = 0; i < hd; i++) dqkv[v + i] += p * dout[o + i];
            scratch[t2] = p;
            scratch[T + t2] = dp;
            D += p * dp;
          }
          // softmax backward: dscore = p·(dp − D); scores = scale·q·k
          for (let t2 = 0; t2 <= t; t2++) {
            const k = (b * T + t2) * QKV + kOff + kv;
            const ds = scratch[t2] * (scratch[T + t2] - D) * scale;
            for (let i = 0; i < hd; i++) {
              dqkv[q + i] += ds * qkv[k + i];
              dqkv[k + i] += ds * qkv[q + i];
            }
          }
        }
      }
    }
  }

  gqaAttentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, NH: number, NKV: number, hd: number, maxT: number): void {
    const { OC, group } = gqaShape('gqaAttentionDecode', NH, NKV, hd);
    const KVC = NKV * hd, scale = 1 / Math.sqrt(hd);
    needLength('gqaAttentionDecode', 'q', q, B * OC);
    needLength('gqaAttentionDecode', 'out', out, B * OC);
    needLength('gqaAttentionDecode', 'kCache', kCache, B * maxT * KVC);
    needLength('gqaAttentionDecode', 'vCache', vCache, B * maxT * KVC);
    needLength('gqaAttentionDecode', 'lens', lens, B);
    const scores = this.scores = growF64(this.scores, maxT);
    for (let b = 0; b < B; b++) {
      const len = lens[b];
      if (!(len >= 0 && len <= maxT)) throw new RangeError(`gqaAttentionDecode: lens[${b}] = ${len} is outside [0, maxT = ${maxT}]`);
      for (let h = 0; h < NH; h++) {
        const qo = b * OC + h * hd, o = qo, kv = Math.floor(h / group) * hd;
        for (let i = 0; i < hd; i++) out[o + i] = 0;
        if (len === 0) continue; // nothing to attend to: an empty sum
        let max = -Infinity;
        for (let t = 0; t < len; t++) {
          const k = (b * maxT + t) * KVC + kv;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[qo + i] * kCache[k + i];
          dot *= scale;
          scores[t] = dot;
          if (dot > max) max = dot;
        }
        let sum = 0;
        for (let t = 0; t < len; t++) {
          const e = Math.exp(scores[t] - max);
          scores[t] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let t = 0; t < len; t++) {
          const v = (b * maxT + t) * KVC + kv, p = scores[t] * inv;
          for (let i = 0; i < hd; i++) out[o + i] += p * vCache[v + i];
        }
      }
    }
  }

  ropeFreqs(x: Float32Array, rowStride: number, pos0: Int32Array, B: number, T: number, nHeads: number, hd: number, invFreq: Float64Array, inverse: boolean): void {
    if (!Number.isInteger(hd) || hd <= 0 || hd % 2 !== 0) {
      throw new RangeError(`ropeFreqs: head size hd = ${hd} must be a positive even integer (RoPE rotates channel pairs)`);
    }
    const half = hd / 2;
    needLength('ropeFreqs', 'invFreq', invFreq, half);
    if (rowStride < nHeads * hd) throw new RangeError(`ropeFreqs: rowStride = ${rowStride} is smaller than nHeads·hd = ${nHeads * hd}`);
    needLength('ropeFreqs', 'pos0', pos0, B);
    if (B * T > 0) needLength('ropeFreqs', 'x', x, (B * T - 1) * rowStride + nHeads * hd);
    const cos = this.ropeCos = growF64(this.ropeCos, half);
    const sin = this.ropeSin = growF64(this.ropeSin, half);
    const sign = inverse ? -1 : 1;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const pos = pos0[b] + t;
        // Angles in float64 so long positions keep their precision; shared by every head of the row.
        for (let i = 0; i < half; i++) {
          const angle = pos * invFreq[i];
          cos[i] = Math.cos(angle);
          sin[i] = sign * Math.sin(angle);
        }
        const row = (b * T + t) * rowStride;
        for (let h = 0; h < nHeads; h++) {
          const o = row + h * hd;
          for (let i = 0; i < half; i++) {
            const x0 = x[o + 2 * i], x1 = x[o + 2 * i + 1];
            x[o + 2 * i] = x0 * cos[i] - x1 * sin[i];
            x[o + 2 * i + 1] = x0 * sin[i] + x1 * cos[i];
          }
        }
      }
    }
  }

  swigluForward(out: Float32Array, inp: Float32Array, N: number, I: number): void {
    needLength('swigluForward', 'inp', inp, N * 2 * I);
    needLength('swigluForward', 'out', out, N * I);
    for (let n = 0; n < N; n++) {
      const g0 = n * 2 * I, u0 = g0 + I, o = n * I;
      for (let i = 0; i < I; i++) {
        const g = inp[g0 + i];
        out[o + i] = g * sigmoid(g) * inp[u0 + i];
      }
    }
  }

  swigluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number, I: number): void {
    needLength('swigluBackward', 'inp', inp, N * 2 * I);
    needLength('swigluBackward', 'dinp', dinp, N * 2 * I);
    needLength('swigluBackward', 'dout', dout, N * I);
    for (let n = 0; n < N; n++) {
      const g0 = n * 2 * I, u0 = g0 + I, o = n * I;
      for (let i = 0; i < I; i++) {
        const g = inp[g0 + i], s = sigmoid(g), d = dout[o + i];
        // silu'(g) = σ + g·σ·(1 − σ): written so that σ = 0 or 1 (|g| large) gives no 0·∞.
        dinp[g0 + i] += d * inp[u0 + i] * (s + g * s * (1 - s));
        dinp[u0 + i] += d * g * s;
      }
    }
  }

  headRmsnormForward(x: Float32Array, saved: Float32Array, rstd: Float32Array, weight: Float32Array, N: number, rowStride: number, nHeads: number, hd: number, eps: number): void {
    checkHeadRows('headRmsnormForward', x, 'x', N, rowStride, nHeads, hd);
    needLength('headRmsnormForward', 'saved', saved, N * nHeads * hd);
    needLength('headRmsnormForward', 'rstd', rstd, N * nHeads);
    needLength('headRmsnormForward', 'weight', weight, hd);
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < nHeads; h++) {
        const o = n * rowStride + h * hd, s = (n * nHeads + h) * hd;
        let sq = 0;
        for (let i = 0; i < hd; i++) {
          const v = x[o + i];
          saved[s + i] = v;
          sq += v * v;
        }
        const r = 1 / Math.sqrt(sq / hd + eps);
        for (let i = 0; i < hd; i++) x[o + i] = x[o + i] * r * weight[i];
        rstd[n * nHeads + h] = r;
      }
    }
  }

  headRmsnormBackward(dx: Float32Array, dweight: Float32Array, saved: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, rowStride: number, nHeads: number, hd: number): void {
    checkHeadRows('headRmsnormBackward', dx, 'dx', N, rowStride, nHeads, hd);
    needLength('headRmsnormBackward', 'saved', saved, N * nHeads * hd);
    needLength('headRmsnormBackward', 'rstd', rstd, N * nHeads);
    needLength('headRmsnormBackward', 'weight', weight, hd);
    needLength('headRmsnormBackward', 'dweight', dweight, hd);
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < nHeads; h++) {
        const o = n * rowStride + h * hd, s = (n * nHeads + h) * hd, r = rstd[n * nHeads + h];
        // As rmsnormBackward: dx = r·w·dy − (r³/hd)·x·Σ w·dy·x; every dy is read before dx is written.
        let gx = 0;
        for (let i = 0; i < hd; i++) gx += weight[i] * dx[o + i] * saved[s + i];
        const k = (r * r * r * gx) / hd;
        for (let i = 0; i < hd; i++) {
          const dy = dx[o + i], xi = saved[s + i];
          dweight[i] += xi * r * dy;
          dx[o + i] = r * weight[i] * dy - k * xi;
        }
      }
    }
  }

  // ---------------------------------------------------------------- log-softmax

  logSoftmaxForward(logprobs: Float32Array, entropy: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, N: number, V: number, invTemp: number): void {
    for (let n = 0; n < N; n++) {
      const target = targets[n];
      if (target < 0) {
        logprobs[n] = 0;
        entropy[n] = 0;
        continue;
      }
      if (target >= V) throw new RangeError(`logSoftmaxForward: targets[${n}] = ${target} is outside the vocabulary [0, ${V})`);
      const x = n * V;
      const max = rowMax(logits, mask, x, V, invTemp);
      if (max === -Infinity) { // every token masked: no distribution, the target is forbidden
        logprobs[n] = -Infinity;
        entropy[n] = 0;
        continue;
      }
      // S = Σ e^(z-m), W = Σ e^(z-m)·(z-m): lse = m + log S, entropy = log S - W/S
      const [S, W] = expSums(logits, mask, x, V, invTemp, max);
      const logS = Math.log(S);
      logprobs[n] = mask && mask[x + target] === 0 ? -Infinity : logits[x + target] * invTemp - max - logS;
      entropy[n] = logS - W / S;
    }
  }

  logSoftmaxBackward(dlogits: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, dlogp: Float32Array, dent: Float32Array, N: number, V: number, invTemp: number): void {
    for (let n = 0; n < N; n++) {
      const target = targets[n], x = n * V;
      const max = target < 0 ? -Infinity : rowMax(logits, mask, x, V, invTemp);
      if (max === -Infinity) { // skipped row, or nothing allowed
        for (let v = 0; v < V; v++) dlogits[x + v] = 0;
        continue;
      }
      if (target >= V) throw new RangeError(`logSoftmaxBackward: targets[${n}] = ${target} is outside the vocabulary [0, ${V})`);
      // All statistics are read before any element of the row is written (dlogits may alias logits).
      const [S, W] = expSums(logits, mask, x, V, invTemp, max);
      const invS = 1 / S, meanD = W / S;
      // A forbidden target has logprob -∞, a constant: its term contributes no gradient.
      const targetAllowed = !mask || mask[x + target] !== 0;
      const gl = targetAllowed ? dlogp[n] : 0, ge = dent[n];
      // ∂logp/∂z_v = [v=target] - p_v;  ∂H/∂z_v = -p_v·(z_v - E_p[z])
      for (let v = 0; v < V; v++) {
        if (mask && mask[x + v] === 0) {
          dlogits[x + v] = 0;
          continue;
        }
        const d = logits[x + v] * invTemp - max;
        const p = Math.exp(d) * invS;
        dlogits[x + v] = invTemp * (-gl * p - ge * p * (d - meanD));
      }
      if (targetAllowed) dlogits[x + target] += invTemp * gl;
    }
  }

  // ---------------------------------------------------------------- elementwise

  add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
  }

  addBias(out: Float32Array, bias: Float32Array, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) out[o + c] += bias[c];
    }
  }

  biasBackward(dbias: Float32Array, dout: Float32Array, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) dbias[c] += dout[o + c];
    }
  }

  sumSquares(x: Float32Array, n: number): number {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * x[i];
    return s;
  }

  scale(x: Float32Array, s: number, n: number): void {
    for (let i = 0; i < n; i++) x[i] *= s;
  }

  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, t: number): void {
    if (!(t >= 1)) throw new RangeError(`adamw: step t must be ≥ 1 (bias correction divides by 1-β^t), got ${t}`);
    const bc1 = 1 - Math.pow(beta1, t), bc2 = 1 - Math.pow(beta2, t);
    for (let i = 0; i < n; i++) {
      const g = grad[i];
      const mi = beta1 * m[i] + (1 - beta1) * g;
      const vi = beta2 * v[i] + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const p = param[i];
      param[i] = p - lr * (mi / bc1 / (Math.sqrt(vi / bc2) + eps) + wd * p);
    }
  }
}

// ------------------------------------------------------------------ helpers (pure functions)

/** Logistic σ(x) = 1/(1 + e^(−x)): e^(−x) overflows to ∞ for very negative x, giving exactly 0. */
function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Widths of the grouped-query layout, after checking the head counts (see Backend). */
function gqaShape(fn: string, NH: number, NKV: number, hd: number) {
  if (!Number.isInteger(NH) || !Number.isInteger(NKV) || NH < 1 || NKV < 1 || NH % NKV !== 0) {
    throw new RangeError(`${fn}: NH = ${NH} query heads must be a positive multiple of NKV = ${NKV} key/value heads`);
  }
  if (!Number.isInteger(hd) || hd < 1) throw new RangeError(`${fn}: head size hd must be a positive integer, got ${hd}`);
  return { QKV: (NH + 2 * NKV) * hd, OC: NH * hd, kOff: NH * hd, vOff: (NH + NKV) * hd, group: NH / NKV };
}

function headSize(fn: string, C: number, NH: number): number {
  if (!Number.isInteger(NH) || NH < 1 || C % NH !== 0) throw new RangeError(`${fn}: C = ${C} must be a positive multiple of NH = ${NH}`);
  return C / NH;
}

/** Throws when `buf` is shorter than the shape arguments say (instead of reading undefined as NaN). */
function needLength(fn: string, name: string, buf: ArrayLike<number>, need: number): void {
  if (buf.length < need) throw new RangeError(`${fn}: ${name} has ${buf.length} elements but the shape needs ${need} (check the shape arguments and the buffer size)`);
}

/** Rows of nHeads heads of width hd, rowStride apart: the strided tensors of headRmsnorm. */
function checkHeadRows(fn: string, x: ArrayLike<number>, name: string, N: number, rowStride: number, nHeads: number, hd: number): void {
  if (rowStride < nHeads * hd) throw new RangeError(`${fn}: rowStride = ${rowStride} is smaller than nHeads·hd = ${nHeads * hd}`);
  if (N > 0) needLength(fn, name, x, (N - 1) * rowStride + nHeads * hd);
}

function checkToken(tok: number, n: number, vocab: number): number {
  if (!(tok >= 0 && tok < vocab)) throw new RangeError(`embedding: tokens[${n}] = ${tok} is outside the vocabulary [0, ${vocab})`);
  return tok;
}

/**
 * max over allowed v of logits[x+v]·invTemp (-∞ when the mask forbids every token); NaN when an
 * allowed logit is NaN, so that the row's logprob and entropy come out NaN (non-finite weights or
 * activations) instead of looking like a row with every token masked.
 */
/** S = Σ e^(z−m) and W = Σ e^(z−m)·(z−m) over the allowed entries of row x (z = logit·invTemp). */
function expSums(logits: Float32Array, mask: Uint8Array | null, x: number, V: number, invTemp: number, max: number): [number, number] {
  let S = 0, W = 0;
  for (let v = 0; v < V; v++) {
    if (mask && mask[x + v] === 0) continue;
    const d = logits[x + v]! * invTemp - max;
    const e = Math.exp(d);
    S += e;
    W += e * d;
  }
  return [S, W];
}

function rowMax(logits: Float32Array, mask: Uint8Array | null, x: number, V: number, invTemp: number): number {
  let max = -Infinity;
  for (let v = 0; v < V; v++) {
    if (mask && mask[x + v] === 0) continue;
    const z = logits[x + v] * invTemp;
    if (z > max) max = z;
    else if (z !== z) return NaN;
  }
  return max;
}

function grow(buf: Float32Array, n: number): Float32Array {
  return buf.length >= n ? buf : new Float32Array(Math.max(n, buf.length * 2));
}

function growF64(buf: Float64Array, n: number): Float64Array {
  return buf.length >= n ? buf : new Float64Array(Math.max(n, buf.length * 2));
}

function checkGemmArgs(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
): void {
  for (const [name, value] of [['M', M], ['N', N], ['K', K]] as const) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`sgemm: ${name} must be a non-negative integer, got ${value}`);
  }
  const check = (name: string, buf: Float32Array, rows: number, cols: number, ld: number) => {
    if (rows === 0 || cols === 0) return;
    const ldName = `ld${name.toLowerCase()}`;
    if (ld < cols) throw new RangeError(`sgemm: ${ldName} = ${ld} is smaller than the stored row width ${cols} of ${name}`);
    const need = (rows - 1) * ld + cols;
    if (buf.length < need) throw new RangeError(`sgemm: ${name} has ${buf.length} floats but its ${rows}×${cols} matrix with ${ldName} = ${ld} needs ${need}`);
  };
  check('A', A, transA ? K : M, transA ? M : K, lda);
  check('B', B, transB ? N : K, transB ? K : N, ldb);
  check('C', C, M, N, ldc);
}

/** C = beta·C over the M×N window; beta = 0 writes zeros whatever C held (NaN included). */
function scaleMatrix(C: Float32Array, M: number, N: number, ldc: number, beta: number): void {
  if (beta === 1) return;
  for (let i = 0; i < M; i++) {
    const row = i * ldc;
    if (beta === 0) C.fill(0, row, row + N);
    else for (let j = 0; j < N; j++) C[row + j] *= beta;
  }
}

/** dst[j*rows + k] = src[off + k*ld + j]: a rows×cols block stored row-major, written transposed. */
function packTransposed(dst: Float32Array, src: Float32Array, off: number, ld: number, rows: number, cols: number): void {
  for (let k = 0; k < rows; k++) {
    const s = off + k * ld;
    for (let j = 0; j < cols; j++) dst[j * rows + k] = src[s + j];
  }
}

/**
 * C[i, :] += alpha·Σ_k op(A)[i,k]·B[k, :] for an untransposed B, one row of B at a time (i-k-j):
 * for the few-row products of decoding, where packing B would cost as much as the product.
 */
function streamRowsGemm(
  transA: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
): void {
  for (let i = 0; i < M; i++) {
    const c = i * ldc;
    for (let k = 0; k < K; k++) {
      const a = alpha * (transA ? A[k * lda + i] : A[i * lda + k]);
      if (a === 0) continue;
      const b = k * ldb;
      for (let j = 0; j < N; j++) C[c + j] += a * B[b + j];
    }
  }
}

/**
 * C[i,j] += alpha·Σ_k A[aOff + i·as + k]·B[bOff + j·bs + k] for i < M, j < N, k < K: rows of A
 * against rows of B. 4×4 tiles of C with float64 accumulators; the B tile (4 rows × K) stays in L1
 * while the M rows of A (an L2-sized block) pass it.
 */
function dotTiles(
  M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, as: number,
  B: Float32Array, bOff: number, bs: number,
  C: Float32Array, cOff: number, ldc: number,
): void {
  const M4 = M - (M % 4), N4 = N - (N % 4);
  for (let j = 0; j < N4; j += 4) {
    const b0 = bOff + j * bs, b1 = b0 + bs, b2 = b1 + bs, b3 = b2 + bs;
    for (let i = 0; i < M4; i += 4) {
      const a0 = aOff + i * as, a1 = a0 + as, a2 = a1 + as, a3 = a2 + as;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
      let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
      let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = A[a0 + k], x1 = A[a1 + k], x2 = A[a2 + k], x3 = A[a3 + k];
        const y0 = B[b0 + k], y1 = B[b1 + k], y2 = B[b2 + k], y3 = B[b3 + k];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
      }
      let c = cOff + i * ldc + j;
      C[c] += alpha * c00; C[c + 1] += alpha * c01; C[c + 2] += alpha * c02; C[c + 3] += alpha * c03;
      c += ldc;
      C[c] += alpha * c10; C[c + 1] += alpha * c11; C[c + 2] += alpha * c12; C[c + 3] += alpha * c13;
      c += ldc;
      C[c] += alpha * c20; C[c + 1] += alpha * c21; C[c + 2] += alpha * c22; C[c + 3] += alpha * c23;
      c += ldc;
      C[c] += alpha * c30; C[c + 1] += alpha * c31; C[c + 2] += alpha * c32; C[c + 3] += alpha * c33;
    }
    // leftover rows of this column strip: 1×4 tiles
    for (let i = M4; i < M; i++) {
      const a0 = aOff + i * as;
      let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
      for (let k = 0; k < K; k++) {
        const x = A[a0 + k];
        c0 += x * B[b0 + k]; c1 += x * B[b1 + k]; c2 += x * B[b2 + k]; c3 += x * B[b3 + k];
      }
      const c = cOff + i * ldc + j;
      C[c] += alpha * c0; C[c + 1] += alpha * c1; C[c + 2] += alpha * c2; C[c + 3] += alpha * c3;
    }
  }
  // leftover columns: plain dot products
  for (let j = N4; j < N; j++) {
    const b0 = bOff + j * bs;
    for (let i = 0; i < M; i++) {
      const a0 = aOff + i * as;
      let dot = 0;
      for (let k = 0; k < K; k++) dot += A[a0 + k] * B[b0 + k];
      C[cOff + i * ldc + j] += alpha * dot;
    }
  }
}

/**
 * The compute backend contract: the hot kernels of the built-in transformer, llm.c style.
 *
 * Two implementations exist: `native` (C++ addon in native/, OpenBLAS when present or a built-in
 * SIMD GEMM chosen at run time by CPU features, a helping thread pool over the available cores) and `js` (pure TypeScript,
 * always available). The model in src/engine/model.ts is written once against this interface.
 *
 * Conventions (all kernels):
 * - Every tensor is a row-major Float32Array (or a `subarray` view of one); shapes are in comments.
 * - Kernels never allocate their outputs; callers pass preallocated buffers.
 * - "Backward" kernels ACCUMULATE (+=) into parameter gradients and into input gradients, so callers
 *   zero gradient buffers once per step. Exceptions are stated.
 * - `qkv` rows are [q(C) | k(C) | v(C)], heads interleaved inside C: head h uses channels
 *   [h*hs, (h+1)*hs) with hs = C/NH (the llm.c / GPT-2 layout).
 */
export interface Backend {
  /** e.g. 'native/openblas', 'native/avx512', 'native/avx2', 'native/scalar', 'js'. */
  readonly name: string;
  /** Number of threads kernels use. */
  readonly threads: number;

  /**
   * C = alpha·op(A)·op(B) + beta·C, row-major, op(X) = X or Xᵀ (cblas_sgemm semantics with
   * CblasRowMajor). op(A) is M×K, op(B) is K×N, C is M×N. lda/ldb/ldc are row strides of the stored
   * matrices (A stored M×K when !transA, K×M when transA). beta = 0 must ignore C's old contents.
   */
  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number,
    beta: number, C: Float32Array, ldc: number,
  ): void;

  /** out[n,:] = wte[tokens[n],:] + (wpe ? wpe[n % T,:] : 0). out [B*T, C]. Overwrites out. */
  embedForward(out: Float32Array, tokens: Int32Array, wte: Float32Array, wpe: Float32Array | null, B: number, T: number, C: number): void;
  /** dwte[tokens[n]] += dout[n]; dwpe[n % T] += dout[n] (if dwpe). */
  embedBackward(dwte: Float32Array, dwpe: Float32Array | null, dout: Float32Array, tokens: Int32Array, B: number, T: number, C: number): void;

  /** LayerNorm over rows: out = (x-mean)*rstd*w + b. Saves mean[N], rstd[N]. Overwrites out. */
  layernormForward(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number, eps: number): void;
  /** Accumulates dinp, dweight, dbias. */
  layernormBackward(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void;
  /** RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x²)+eps). Saves rstd[N]. Overwrites out. */
  rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, N: number, C: number, eps: number): void;
  /** Accumulates dinp, dweight. */
  rmsnormBackward(dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, C: number): void;

  /** GELU, tanh approximation (GPT-2). Overwrites out. */
  geluForward(out: Float32Array, inp: Float32Array, n: number): void;
  /** dinp += gelu'(inp) * dout. */
  geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void;

  /**
   * Rotary position embedding applied IN PLACE to the q and k parts of qkv [B,T,3C]; token t of row b
   * has position pos0[b] + t. Pairs are (2i, 2i+1) inside each head, θ_i = base^(-2i/hs).
   * `inverse` rotates by -θ: that is the backward pass (applied in place to dqkv).
   */
  rope(qkv: Float32Array, pos0: Int32Array, B: number, T: number, C: number, NH: number, base: number, inverse: boolean): void;

  /**
   * Causal multi-head self-attention. qkv [B,T,3C] → out [B,T,C] (overwritten). Scale 1/sqrt(hs).
   * Saves only lse [B,NH,T] (overwritten): row t's log-sum-exp of its scaled scores,
   * lse = log Σ_{u≤t} exp(q_t·k_u/sqrt(hs)), so the probabilities are exp(score − lse). Memory and
   * scratch are linear in T (FlashAttention-style: no T×T buffer is ever materialised).
   */
  attentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void;
  /**
   * Accumulates dqkv [B,T,3C] from dout [B,T,C]. `lse` [B,NH,T] is what attentionForward saved for
   * this qkv: the probabilities p = exp(score − lse) are recomputed row by row (with scratch linear
   * in T), then dp_u = dout_t·v_u, ds_u = p_u·(dp_u − Σ_w p_w·dp_w), dq_t += ds·k/sqrt(hs),
   * dk_u += ds_u·q_t/sqrt(hs), dv_u += p_u·dout_t.
   */
  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void;
  /**
   * One new query per row against a KV cache. q [B,C]; kCache, vCache [B,maxT,C]; row b attends to
   * cache positions [0, lens[b]) (the new token's own k/v already written at lens[b]-1).
   * out [B,C] overwritten. Scale 1/sqrt(hs).
   */
  attentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, C: number, NH: number, maxT: number): void;

  // ---- Open-weight architectures (Llama / Qwen2 / Qwen3): grouped-query attention, SwiGLU, q/k norms,
  // scaled RoPE. Layout for these: qkv rows are [q (NH·hd) | k (NKV·hd) | v (NKV·hd)], width
  // QKV = (NH + 2·NKV)·hd; q head h reads kv head ⌊h / (NH/NKV)⌋; scale 1/sqrt(hd). With NKV = NH and
  // hd = C/NH this is exactly the layout above, so the GPT-2-style model can use these kernels too.

  /** Grouped-query causal attention: qkv [B,T,QKV] → out [B,T,NH·hd] (overwritten), lse [B,NH,T] (overwritten). */
  gqaAttentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void;
  /** Accumulates dqkv [B,T,QKV] (q, k and v parts; a kv head gathers the gradients of all its q heads). */
  gqaAttentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void;
  /**
   * One query per row against a KV cache: q [B,NH·hd]; kCache, vCache [B,maxT,NKV·hd]; row b attends to
   * cache positions [0, lens[b]), 0 ≤ lens[b] ≤ maxT (else a RangeError; lens[b] = 0 gives zeros).
   * out [B,NH·hd] overwritten.
   */
  gqaAttentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, NH: number, NKV: number, hd: number, maxT: number): void;
  /**
   * Rotary positions IN PLACE on the first `nHeads` heads (width hd) of every row of x [B,T,rowStride]
   * (the q and k heads of a qkv row: nHeads = NH + NKV). Token t of row b has position pos0[b] + t;
   * pair (2i, 2i+1) of each head rotates by pos·invFreq[i] (invFreq has hd/2 entries, float64 so
   * scaled frequencies such as llama3's are exact). `inverse` rotates by the negative angle: the backward.
   */
  ropeFreqs(x: Float32Array, rowStride: number, pos0: Int32Array, B: number, T: number, nHeads: number, hd: number, invFreq: Float64Array, inverse: boolean): void;
  /** SwiGLU: inp [N, 2I] rows [gate | up] → out [N, I] = silu(gate)·up. Overwrites out. */
  swigluForward(out: Float32Array, inp: Float32Array, N: number, I: number): void;
  /** dinp [N, 2I] += ∂/∂[gate | up] of Σ dout·silu(gate)·up. */
  swigluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number, I: number): void;
  /**
   * Per-head RMSNorm IN PLACE on `nHeads` heads of width hd at the start of every row of x
   * [N, rowStride] (pass a subarray to start at the k heads), one gain vector weight [hd] for all of
   * them (Qwen3's q_norm / k_norm): x ← x·rstd·weight, rstd = 1/sqrt(mean over the head of x² + eps).
   * Saves the input heads in saved [N, nHeads·hd] and rstd [N, nHeads] (row n, head j at index n·nHeads + j).
   */
  headRmsnormForward(x: Float32Array, saved: Float32Array, rstd: Float32Array, weight: Float32Array, N: number, rowStride: number, nHeads: number, hd: number, eps: number): void;
  /**
   * Backward of headRmsnormForward, IN PLACE: on entry dx holds the gradient w.r.t. the normalised
   * heads, on exit w.r.t. the input heads (other columns of the rows untouched). Accumulates dweight [hd].
   */
  headRmsnormBackward(dx: Float32Array, dweight: Float32Array, saved: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, rowStride: number, nHeads: number, hd: number): void;

  /**
   * Fused tempered, masked log-softmax + gather + entropy, for N rows of V logits.
   * z = logits[n]*invTemp, with z[v] = -inf where mask && mask[n*V+v] == 0.
   * logprobs[n] = log_softmax(z)[targets[n]], entropy[n] = -Σ p log p over allowed tokens.
   * Rows with targets[n] < 0 are skipped (logprobs[n] = 0, entropy[n] = 0).
   * A target that the mask forbids gives logprobs[n] = -Infinity (the caller reports it).
   * Overwrites logprobs and entropy.
   */
  logSoftmaxForward(logprobs: Float32Array, entropy: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, N: number, V: number, invTemp: number): void;
  /**
   * dlogits = ∂(Σ dlogp[n]·logprobs[n] + dent[n]·entropy[n]) / ∂logits. OVERWRITES dlogits
   * (may alias logits: the kernel must then read each row before writing it). Rows with
   * targets[n] < 0 get zero gradient. Masked entries get zero gradient.
   */
  logSoftmaxBackward(dlogits: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, dlogp: Float32Array, dent: Float32Array, N: number, V: number, invTemp: number): void;

  /** out = a + b (elementwise, n). out may alias a or b. */
  add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  /** out[r, :] += bias for r in [0,rows) (cols = bias.length). */
  addBias(out: Float32Array, bias: Float32Array, rows: number, cols: number): void;
  /** dbias += column sums of dout [rows, cols]. */
  biasBackward(dbias: Float32Array, dout: Float32Array, rows: number, cols: number): void;

  /** Σ x² over x[0,n) (double accumulation). */
  sumSquares(x: Float32Array, n: number): number;
  /** x *= s over x[0,n). */
  scale(x: Float32Array, s: number, n: number): void;
  /**
   * AdamW (decoupled weight decay, PyTorch semantics), step t ≥ 1:
   * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; mhat = m/(1-b1^t); vhat = v/(1-b2^t);
   * p -= lr * (mhat/(sqrt(vhat)+eps) + wd*p).
   */
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, t: number): void;
}

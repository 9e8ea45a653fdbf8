// Causal multi-head self-attention (training forward/backward) and single-query decoding against a
// KV cache.
//
// Training attention is FlashAttention-style and memory-linear in T: the forward keeps only each
// row's log-sum-exp (lse) besides its output, and the backward recomputes the probabilities from q,
// k and lse, one tile of query rows at a time. A tile of rows [r0, r1) sees keys [0, r1) (causal
// work-skipping: no products above the tile's diagonal block) and holds every key of its rows, so
// the softmax-backward term D = Σⱼ Pⱼ·dPⱼ is summed from the tile itself (it equals dO·O, without
// reading O) and one thread's scratch is (2·tile + 2·hs) × T floats, never T × T. Per tile the work
// is a few small matrix products, run through the serial packed GEMM (sgemm_serial) — at T = 128,
// hs = 64 that is ~10× faster than dot-product loops — and the (batch, head) pairs are spread over
// the threads, so every pair's dK/dV accumulation stays on one thread (no atomics).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "parallel.h"
#include "simd.h"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace agentrl {
namespace detail {

// Softmax of row[0, valid) in place; row[valid, n) = 0 (the causal mask). Returns the row's
// log-sum-exp, max + log Σ e^(x − max), from which the backward recomputes the probabilities.
AGENTRL_SIMD_CLONES float causal_softmax_row(float* __restrict row, long valid, long n) {
  float mx = row[0];
#pragma omp simd reduction(max : mx)
  for (long j = 0; j < valid; ++j) mx = row[j] > mx ? row[j] : mx;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (long j = 0; j < valid; ++j) {
    const float e = fast_exp(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (long j = 0; j < valid; ++j) row[j] *= inv;
  for (long j = valid; j < n; ++j) row[j] = 0.0f;
  return mx + std::log(sum);
}

// One query row of the backward, in place: on entry p holds scale·q·kⱼ and d holds dPⱼ = dO·vⱼ; on
// exit p holds the probabilities Pⱼ = e^(sⱼ − lse) and d holds dSⱼ = scale·Pⱼ·(dPⱼ − D) with
// D = Σⱼ Pⱼ·dPⱼ (= dO·O). Entries [valid, n) (above the diagonal) become 0 in both.
AGENTRL_SIMD_CLONES void flash_backward_row(float* __restrict p, float* __restrict d, long valid, long n,
                                            float lse, float scale) {
  float D = 0.0f;
#pragma omp simd reduction(+ : D)
  for (long j = 0; j < valid; ++j) {
    const float pj = fast_exp(p[j] - lse);
    p[j] = pj;
    D += pj * d[j];
  }
#pragma omp simd
  for (long j = 0; j < valid; ++j) d[j] = scale * p[j] * (d[j] - D);
  for (long j = valid; j < n; ++j) {
    p[j] = 0.0f;
    d[j] = 0.0f;
  }
}

AGENTRL_SIMD_CLONES float dot_span(const float* __restrict a, const float* __restrict b, long n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (long i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

AGENTRL_SIMD_CLONES void axpy_span(float* __restrict y, float a, const float* __restrict x, long n) {
  for (long i = 0; i < n; ++i) y[i] += a * x[i];
}

// y[t·ldy + i] += x[i·ldx + t] for t < rows, i < cols: 4×4 blocks transposed in SSE registers
// (baseline on x86-64), so both sides are read in short contiguous runs instead of one float per
// cache line.
void add_transposed(float* __restrict y, long ldy, const float* __restrict x, long ldx, long rows, long cols) {
  long t = 0;
#if defined(__SSE2__)
  const long cols4 = cols / 4 * 4;
  for (; t + 4 <= rows; t += 4) {
    for (long i = 0; i < cols4; i += 4) {
      __m128 r0 = _mm_loadu_ps(x + (i + 0) * ldx + t);
      __m128 r1 = _mm_loadu_ps(x + (i + 1) * ldx + t);
      __m128 r2 = _mm_loadu_ps(x + (i + 2) * ldx + t);
      __m128 r3 = _mm_loadu_ps(x + (i + 3) * ldx + t);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j now holds x[i..i+3, t + j]
      float* y0 = y + t * ldy + i;
      _mm_storeu_ps(y0, _mm_add_ps(_mm_loadu_ps(y0), r0));
      _mm_storeu_ps(y0 + ldy, _mm_add_ps(_mm_loadu_ps(y0 + ldy), r1));
      _mm_storeu_ps(y0 + 2 * ldy, _mm_add_ps(_mm_loadu_ps(y0 + 2 * ldy), r2));
      _mm_storeu_ps(y0 + 3 * ldy, _mm_add_ps(_mm_loadu_ps(y0 + 3 * ldy), r3));
    }
    for (long tt = t; tt < t + 4; ++tt) {
      for (long i = cols4; i < cols; ++i) y[tt * ldy + i] += x[i * ldx + tt];
    }
  }
#endif
  for (; t < rows; ++t) {
    for (long i = 0; i < cols; ++i) y[t * ldy + i] += x[i * ldx + t];
  }
}

// Query rows per tile. Up to T = 2·kMaxTile the rows are split in two halves (rows [0, T/2) need
// keys [0, T/2) only: a quarter of the T×T products skipped); beyond, tiles of kMaxTile rows skip
// ever more of the upper triangle while each GEMM stays large enough to run at full speed.
constexpr long kMaxTile = 64;
inline long tile_rows(long T) { return T <= 2 * kMaxTile ? std::max(1L, (T + 1) / 2) : kMaxTile; }

// body(bh, scratch) for every (batch, head) pair bh in [0, pairs), pairs handed out one at a time
// (they are even, but another process may deschedule one of our threads); `scratch` is the calling
// thread's own `floats`-float buffer. Allocated up front, on the calling thread, so a failed
// allocation throws here rather than inside the parallel region.
template <class Fn>
void for_each_pair(int nt, long pairs, long floats, Fn&& body) {
  const int threads = static_cast<int>(std::max(1L, std::min<long>(nt, pairs)));
  std::unique_ptr<float[]> scratch(new float[static_cast<size_t>(threads) * floats]);
  if (threads == 1) {
    for (long bh = 0; bh < pairs; ++bh) body(bh, scratch.get());
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    ScopedFlushDenormals flush;
    float* mine = scratch.get() + static_cast<size_t>(omp_get_thread_num()) * floats;
#pragma omp for schedule(dynamic, 1)
    for (long bh = 0; bh < pairs; ++bh) body(bh, mine);
  }
}

}  // namespace detail

void attention_forward(int nt, float* out, float* lse, const float* qkv, long B, long T, long C, long NH) {
  const long hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const long tile = detail::tile_rows(T);
  detail::for_each_pair(nt, B * NH, tile * T, [&](long bh, float* s) {
    const long b = bh / NH, h = bh % NH;
    const float* q = qkv + b * T * C3 + h * hs;
    const float* k = q + C;
    const float* v = q + 2 * C;
    float* o = out + b * T * C + h * hs;
    float* l = lse + bh * T;
    for (long r0 = 0; r0 < T; r0 += tile) {
      // Rows [r0, r1) against keys [0, r1); K and V rows are strided by 3C: the GEMM's packing absorbs it.
      const long r1 = std::min(T, r0 + tile), rows = r1 - r0, keys = r1;
      sgemm_serial(false, true, rows, keys, hs, scale, q + r0 * C3, C3, k, C3, 0.0f, s, keys);  // scale·Q Kᵀ
      for (long i = 0; i < rows; ++i) l[r0 + i] = detail::causal_softmax_row(s + i * keys, r0 + i + 1, keys);
      sgemm_serial(false, false, rows, hs, keys, 1.0f, s, keys, v, C3, 0.0f, o + r0 * C, C);  // P V
    }
  });
}

void attention_backward(int nt, float* dqkv, const float* dout, const float* qkv, const float* lse, long B,
                        long T, long C, long NH) {
  const long hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const long tile = detail::tile_rows(T);
  // Per-thread scratch: p and d (tile × T each) for one tile's probabilities and score gradients, and
  // dVᵀ, dKᵀ (hs × T each) accumulated over the tiles. Offsets are padded by 16 floats so that p[j] and
  // d[j] never sit a multiple of 4 KiB apart (the row pass's loads would alias its stores in the L1).
  const long span = tile * T + 16, tspan = hs * T + 16;
  // Each (b, h) writes only its own head's channels of dqkv: no two pairs touch the same floats.
  detail::for_each_pair(nt, B * NH, 2 * span + 2 * tspan, [&](long bh, float* scratch) {
    const long b = bh / NH, h = bh % NH;
    const float* q = qkv + b * T * C3 + h * hs;
    const float* k = q + C;
    const float* v = q + 2 * C;
    float* dq = dqkv + b * T * C3 + h * hs;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    const float* dO = dout + b * T * C + h * hs;
    const float* l = lse + bh * T;
    float* p = scratch;               // rows × keys: scale·QKᵀ, then P
    float* d = p + span;              // rows × keys: dP, then dS
    float* vt = d + span;             // hs × T: dVᵀ of this pair
    float* kt = vt + tspan;           // hs × T: dKᵀ of this pair
    // Last tile first: it sees every key, so its products initialise dVᵀ and dKᵀ (beta = 0).
    const long lastR0 = (T - 1) / tile * tile;
    for (long r0 = lastR0; r0 >= 0; r0 -= tile) {
      const long r1 = std::min(T, r0 + tile), rows = r1 - r0, keys = r1;
      const float beta = r0 == lastR0 ? 0.0f : 1.0f;
      sgemm_serial(false, true, rows, keys, hs, scale, q + r0 * C3, C3, k, C3, 0.0f, p, keys);  // scale·Q Kᵀ
      sgemm_serial(false, true, rows, keys, hs, 1.0f, dO + r0 * C, C, v, C3, 0.0f, d, keys);    // dP = dO Vᵀ
      for (long i = 0; i < rows; ++i) {
        const long t = r0 + i;
        detail::flash_backward_row(p + i * keys, d + i * keys, t + 1, keys, l[t], scale);
      }
      // dQ += dS K; dVᵀ += dOᵀ P and dKᵀ += Qᵀ dS (the 1/sqrt(hs) is folded into dS). Transposed, the
      // tile's P and dS are the GEMMs' B operand, which packs with plain row copies.
      sgemm_serial(false, false, rows, hs, keys, 1.0f, d, keys, k, C3, 1.0f, dq + r0 * C3, C3);
      sgemm_serial(true, false, hs, keys, rows, 1.0f, dO + r0 * C, C, p, keys, beta, vt, T);
      sgemm_serial(true, false, hs, keys, rows, 1.0f, q + r0 * C3, C3, d, keys, beta, kt, T);
    }
    detail::add_transposed(dv, C3, vt, T, T, hs);
    detail::add_transposed(dk, C3, kt, T, T, hs);
  });
}

void attention_decode(int nt, float* out, const float* q, const float* kCache, const float* vCache,
                      const int32_t* lens, long B, long C, long NH, long maxT) {
  const long hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const long pairs = B * NH;
  long work = 0;
  for (long b = 0; b < B; ++b) work += static_cast<long>(lens[b]) * C * 2;
#pragma omp parallel num_threads(threads_for(work, nt))
  {
    ScopedFlushDenormals flush;
    std::vector<float> scores(static_cast<size_t>(maxT > 0 ? maxT : 1));
#pragma omp for schedule(static)
    for (long bh = 0; bh < pairs; ++bh) {
      const long b = bh / NH, h = bh % NH;
      const long len = lens[b];
      const float* qh = q + b * C + h * hs;
      float* o = out + b * C + h * hs;
      for (long i = 0; i < hs; ++i) o[i] = 0.0f;
      if (len <= 0) continue;  // nothing to attend to: a zero output, as an empty sum
      const float* kb = kCache + b * maxT * C + h * hs;
      const float* vb = vCache + b * maxT * C + h * hs;
      for (long t = 0; t < len; ++t) scores[t] = scale * detail::dot_span(qh, kb + t * C, hs);
      detail::causal_softmax_row(scores.data(), len, len);
      for (long t = 0; t < len; ++t) detail::axpy_span(o, scores[t], vb + t * C, hs);
    }
  }
}

}  // namespace agentrl

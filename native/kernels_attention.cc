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
// the threads, so every pair's dK/dV accumulation stays on one thread (no atomics). Grouped-query
// attention (several q heads per kv head) generalises this; multi-head attention is its NKV = NH case.

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
  parallel_for_slots(threads, pairs, [&](long bh, int slot) { body(bh, scratch.get() + static_cast<size_t>(slot) * floats); });
}

// One query head against `len` cached key/value rows (stride ld): o = softmax(scale·K q)ᵀ V.
void decode_head(float* o, const float* qh, const float* kb, const float* vb, long ld, long len, long hd,
                 float scale, float* scores) {
  for (long i = 0; i < hd; ++i) o[i] = 0.0f;
  if (len <= 0) return;  // nothing to attend to: a zero output, as an empty sum
  for (long t = 0; t < len; ++t) scores[t] = scale * dot_span(qh, kb + t * ld, hd);
  causal_softmax_row(scores, len, len);
  for (long t = 0; t < len; ++t) axpy_span(o, scores[t], vb + t * ld, hd);
}

}  // namespace detail

// Grouped-query attention: the q heads h of a group share kv head h / group. Row strides: QKV in qkv
// and dqkv, OC = NH·hd in out and dout. With NKV = NH it is plain multi-head attention (below).
void gqa_attention_forward(int nt, float* out, float* lse, const float* qkv, long B, long T, long NH, long NKV,
                           long hd) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const long QKV = (NH + 2 * NKV) * hd, OC = NH * hd, group = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const long tile = detail::tile_rows(T);
  detail::for_each_pair(nt, B * NH, tile * T, [&](long bh, float* s) {
    const long b = bh / NH, h = bh % NH;
    const float* q = qkv + b * T * QKV + h * hd;
    const float* k = qkv + b * T * QKV + (NH + h / group) * hd;
    const float* v = k + NKV * hd;
    float* o = out + b * T * OC + h * hd;
    float* l = lse + bh * T;
    for (long r0 = 0; r0 < T; r0 += tile) {
      // Rows [r0, r1) against keys [0, r1); K and V rows are strided by QKV: the GEMM's packing absorbs it.
      const long r1 = std::min(T, r0 + tile), rows = r1 - r0, keys = r1;
      sgemm_serial(false, true, rows, keys, hd, scale, q + r0 * QKV, QKV, k, QKV, 0.0f, s, keys);  // scale·Q Kᵀ
      for (long i = 0; i < rows; ++i) l[r0 + i] = detail::causal_softmax_row(s + i * keys, r0 + i + 1, keys);
      sgemm_serial(false, false, rows, hd, keys, 1.0f, s, keys, v, QKV, 0.0f, o + r0 * OC, OC);  // P V
    }
  });
}

// Every q head of a group adds to its kv head's dK and dV, so work items are (batch, kv head, chunk of
// the group's q heads): with one chunk per group (enough groups for the threads) an item accumulates
// its group's dKᵀ/dVᵀ in the thread's scratch and adds them to dqkv itself, no two items touching the
// same floats. With fewer groups than threads each group is cut into chunks whose dKᵀ/dVᵀ are kept
// apart and added afterwards in chunk order: race-free, and the same bits for a given thread count.
void gqa_attention_backward(int nt, float* dqkv, const float* dout, const float* qkv, const float* lse, long B,
                            long T, long NH, long NKV, long hd) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const long QKV = (NH + 2 * NKV) * hd, OC = NH * hd, group = NH / NKV, groups = B * NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const long tile = detail::tile_rows(T);
  const long chunks = std::min(group, nt <= 1 ? 1L : (nt + groups - 1) / groups);
  const long items = groups * chunks;
  // Per-thread scratch: p and d (tile × T each) for one tile's probabilities and score gradients, and
  // (one chunk per group) dVᵀ, dKᵀ (hd × T each) accumulated over the group's heads and tiles. Offsets
  // are padded by 16 floats so that p[j] and d[j] never sit a multiple of 4 KiB apart (the row pass's
  // loads would alias its stores in the L1).
  const long span = tile * T + 16, tspan = hd * T + 16;
  std::unique_ptr<float[]> kept(chunks > 1 ? new float[static_cast<size_t>(items) * 2 * tspan] : nullptr);
  const long lastR0 = (T - 1) / tile * tile;
  detail::for_each_pair(nt, items, 2 * span + (chunks > 1 ? 0 : 2 * tspan), [&](long item, float* scratch) {
    const long g = item / chunks, b = g / NKV, kvh = g % NKV;
    long h0, h1;
    split_range(group, static_cast<int>(item % chunks), static_cast<int>(chunks), &h0, &h1);
    const float* k = qkv + b * T * QKV + (NH + kvh) * hd;
    const float* v = k + NKV * hd;
    float* p = scratch;   // rows × keys: scale·QKᵀ, then P
    float* d = p + span;  // rows × keys: dP, then dS
    float* vt = chunks > 1 ? kept.get() + static_cast<size_t>(item) * 2 * tspan : d + span;  // hd × T: dVᵀ
    float* kt = vt + tspan;                                                                  // hd × T: dKᵀ
    for (long j = h0; j < h1; ++j) {
      const long h = kvh * group + j;
      const float* q = qkv + b * T * QKV + h * hd;
      float* dq = dqkv + b * T * QKV + h * hd;
      const float* dO = dout + b * T * OC + h * hd;
      const float* l = lse + (b * NH + h) * T;
      // Last tile first: it sees every key, so the chunk's first head's products initialise dVᵀ and dKᵀ.
      for (long r0 = lastR0; r0 >= 0; r0 -= tile) {
        const long r1 = std::min(T, r0 + tile), rows = r1 - r0, keys = r1;
        const float beta = j == h0 && r0 == lastR0 ? 0.0f : 1.0f;
        sgemm_serial(false, true, rows, keys, hd, scale, q + r0 * QKV, QKV, k, QKV, 0.0f, p, keys);  // scale·Q Kᵀ
        sgemm_serial(false, true, rows, keys, hd, 1.0f, dO + r0 * OC, OC, v, QKV, 0.0f, d, keys);    // dP = dO Vᵀ
        for (long i = 0; i < rows; ++i) {
          const long t = r0 + i;
          detail::flash_backward_row(p + i * keys, d + i * keys, t + 1, keys, l[t], scale);
        }
        // dQ += dS K; dVᵀ += dOᵀ P and dKᵀ += Qᵀ dS (the 1/sqrt(hd) is folded into dS). Transposed, the
        // tile's P and dS are the GEMMs' B operand, which packs with plain row copies.
        sgemm_serial(false, false, rows, hd, keys, 1.0f, d, keys, k, QKV, 1.0f, dq + r0 * QKV, QKV);
        sgemm_serial(true, false, hd, keys, rows, 1.0f, dO + r0 * OC, OC, p, keys, beta, vt, T);
        sgemm_serial(true, false, hd, keys, rows, 1.0f, q + r0 * QKV, QKV, d, keys, beta, kt, T);
      }
    }
    if (chunks == 1) {
      float* dk = dqkv + b * T * QKV + (NH + kvh) * hd;
      detail::add_transposed(dk + NKV * hd, QKV, vt, T, T, hd);
      detail::add_transposed(dk, QKV, kt, T, T, hd);
    }
  });
  if (chunks > 1) {
    parallel_for(nt, groups, Schedule::Dynamic, [&](long g) {
      float* dk = dqkv + (g / NKV) * T * QKV + (NH + g % NKV) * hd;
      for (long c = 0; c < chunks; ++c) {
        const float* vt = kept.get() + static_cast<size_t>(g * chunks + c) * 2 * tspan;
        detail::add_transposed(dk + NKV * hd, QKV, vt, T, T, hd);
        detail::add_transposed(dk, QKV, vt + tspan, T, T, hd);
      }
    });
  }
}

// Work items are (batch, kv head, chunk of its q heads), the chunks only there to spread a few groups
// over the threads: every head's arithmetic is the same whatever the chunking (dot products, the
// softmax, then value rows added in t order). Heads run one after the other (the group's K and V rows
// come from cache for the second head on); an inner loop over heads around each short dot product
// cost ~20% at hd = 64.
void gqa_attention_decode(int nt, float* out, const float* q, const float* kCache, const float* vCache,
                          const int32_t* lens, long B, long NH, long NKV, long hd, long maxT) {
  if (B <= 0 || NH <= 0) return;
  const long OC = NH * hd, KVC = NKV * hd, group = NH / NKV, groups = B * NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  long work = 0;
  for (long b = 0; b < B; ++b) work += static_cast<long>(lens[b]) * (NH + NKV) * hd;
  const int threads = threads_for(work, nt);
  const long chunks = std::min(group, threads <= 1 ? 1L : (long{threads} * kBlocksPerThread + groups - 1) / groups);
  const long row = maxT > 0 ? maxT : 1;
  std::vector<float> scratch(static_cast<size_t>(threads) * static_cast<size_t>(row));
  parallel_for_slots(threads, groups * chunks, [&](long item, int slot) {
    float* scores = scratch.data() + static_cast<size_t>(slot) * static_cast<size_t>(row);
    const long g = item / chunks, b = g / NKV, kvh = g % NKV, len = lens[b];
    long h0, h1;
    split_range(group, static_cast<int>(item % chunks), static_cast<int>(chunks), &h0, &h1);
    const float* kb = kCache + b * maxT * KVC + kvh * hd;
    const float* vb = vCache + b * maxT * KVC + kvh * hd;
    for (long h = kvh * group + h0; h < kvh * group + h1; ++h) {
      detail::decode_head(out + b * OC + h * hd, q + b * OC + h * hd, kb, vb, KVC, len, hd, scale, scores);
    }
  });
}

// Multi-head attention in the GPT-2 layout is the grouped-query case NKV = NH, hd = C/NH (same code,
// same results: one chunk per group, the (batch, head) pairs of before).
void attention_forward(int nt, float* out, float* lse, const float* qkv, long B, long T, long C, long NH) {
  gqa_attention_forward(nt, out, lse, qkv, B, T, NH, NH, C / NH);
}

void attention_backward(int nt, float* dqkv, const float* dout, const float* qkv, const float* lse, long B,
                        long T, long C, long NH) {
  gqa_attention_backward(nt, dqkv, dout, qkv, lse, B, T, NH, NH, C / NH);
}

void attention_decode(int nt, float* out, const float* q, const float* kCache, const float* vCache,
                      const int32_t* lens, long B, long C, long NH, long maxT) {
  gqa_attention_decode(nt, out, q, kCache, vCache, lens, B, NH, NH, C / NH, maxT);
}

}  // namespace agentrl

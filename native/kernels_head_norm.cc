// Per-head RMSNorm in place (Qwen3's q_norm / k_norm): every head of width hd at the start of a
// strided row is normalised on its own, with one gain vector shared by all heads.

#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

// x ← x·rstd·w over one head, keeping the input in saved.
AGENTRL_SIMD_CLONES void head_rmsnorm_row(float* __restrict x, float* __restrict saved, float* rstdOut,
                                          const float* __restrict w, long hd, float eps) {
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (long c = 0; c < hd; ++c) {
    saved[c] = x[c];
    ss += x[c] * x[c];
  }
  const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(hd) + eps);
  for (long c = 0; c < hd; ++c) x[c] = saved[c] * rstd * w[c];
  *rstdOut = rstd;
}

// In place: on entry dx is the gradient w.r.t. the normalised head, on exit w.r.t. its input;
// dw += norm·dy. As rmsnorm_backward_row: dx = r·(w·dy − norm·mean(w·dy·norm)).
AGENTRL_SIMD_CLONES void head_rmsnorm_backward_row(float* __restrict dx, float* __restrict dw,
                                                   const float* __restrict x, const float* __restrict w,
                                                   float rstd, long hd) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (long c = 0; c < hd; ++c) dot += w[c] * dx[c] * x[c] * rstd;
  dot /= static_cast<float>(hd);
  for (long c = 0; c < hd; ++c) {
    const float norm = x[c] * rstd, dy = dx[c];
    dw[c] += norm * dy;
    dx[c] = (w[c] * dy - norm * dot) * rstd;
  }
}

}  // namespace detail

// Items are single heads (row n, head j = item / nHeads, item % nHeads), so a decode step's one row
// of many heads spreads over the threads too.
void head_rmsnorm_forward(int nt, float* x, float* saved, float* rstd, const float* weight, long N, long rowStride,
                          long nHeads, long hd, float eps) {
  const long heads = N * nHeads;
  if (heads <= 0 || hd <= 0) return;
  parallel_for(threads_for(heads * hd * 2, nt), heads, Schedule::Static, [&](long item) {
    const long n = item / nHeads, j = item % nHeads;
    detail::head_rmsnorm_row(x + n * rowStride + j * hd, saved + item * hd, rstd + item, weight, hd, eps);
  });
}

// Blocks of heads accumulate partial dweight of their own, summed in block order afterwards
// (race-free, and deterministic for a given thread count).
void head_rmsnorm_backward(int nt, float* dx, float* dweight, const float* saved, const float* weight,
                           const float* rstd, long N, long rowStride, long nHeads, long hd) {
  const long heads = N * nHeads;
  if (heads <= 0 || hd <= 0) return;
  const int threads = threads_for(heads * hd * 3, nt);
  const long blocks = threads == 1 ? 1 : block_count(threads, heads);
  std::vector<float> partial(static_cast<size_t>(blocks * hd), 0.0f);
  parallel_for_slots(threads, blocks, [&](long blk, int) {
    float* dw = partial.data() + blk * hd;
    long i0, i1;
    split_range(heads, static_cast<int>(blk), static_cast<int>(blocks), &i0, &i1);
    for (long item = i0; item < i1; ++item) {
      const long n = item / nHeads, j = item % nHeads;
      detail::head_rmsnorm_backward_row(dx + n * rowStride + j * hd, dw, saved + item * hd, weight, rstd[item], hd);
    }
  });
  for (long c = 0; c < hd; ++c) {
    float s = 0.0f;
    for (long b = 0; b < blocks; ++b) s += partial[static_cast<size_t>(b * hd + c)];
    dweight[c] += s;
  }
}

}  // namespace agentrl

// Embedding lookup and the two normalisations (LayerNorm, RMSNorm), forward and backward.

#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

// out = a + b over one row (b may be null: plain copy).
AGENTRL_SIMD_CLONES void embed_row(float* __restrict out, const float* __restrict a, const float* __restrict b,
                                   long C) {
  if (b) {
    for (long c = 0; c < C; ++c) out[c] = a[c] + b[c];
  } else {
    for (long c = 0; c < C; ++c) out[c] = a[c];
  }
}

// dst += src over a span.
AGENTRL_SIMD_CLONES void accumulate_span(float* __restrict dst, const float* __restrict src, long n) {
  for (long i = 0; i < n; ++i) dst[i] += src[i];
}

// LayerNorm of one row; returns mean and rstd through pointers. Two-pass variance (stable for rows
// with a large mean).
AGENTRL_SIMD_CLONES void layernorm_row(float* __restrict out, float* meanOut, float* rstdOut,
                                       const float* __restrict x, const float* __restrict w,
                                       const float* __restrict b, long C, float eps) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (long c = 0; c < C; ++c) sum += x[c];
  const float mean = sum / static_cast<float>(C);
  float var = 0.0f;
#pragma omp simd reduction(+ : var)
  for (long c = 0; c < C; ++c) {
    const float d = x[c] - mean;
    var += d * d;
  }
  const float rstd = 1.0f / std::sqrt(var / static_cast<float>(C) + eps);
  for (long c = 0; c < C; ++c) out[c] = (x[c] - mean) * rstd * w[c] + b[c];
  *meanOut = mean;
  *rstdOut = rstd;
}

// LayerNorm backward for one row: dinp += …, and this thread's partial dweight/dbias += ….
AGENTRL_SIMD_CLONES void layernorm_backward_row(float* __restrict dinp, float* __restrict dw,
                                                float* __restrict db, const float* __restrict dout,
                                                const float* __restrict x, const float* __restrict w,
                                                float mean, float rstd, long C) {
  float dnormMean = 0.0f, dnormNormMean = 0.0f;
#pragma omp simd reduction(+ : dnormMean, dnormNormMean)
  for (long c = 0; c < C; ++c) {
    const float norm = (x[c] - mean) * rstd;
    const float dnorm = w[c] * dout[c];
    dnormMean += dnorm;
    dnormNormMean += dnorm * norm;
  }
  dnormMean /= static_cast<float>(C);
  dnormNormMean /= static_cast<float>(C);
  for (long c = 0; c < C; ++c) {
    const float norm = (x[c] - mean) * rstd;
    const float dnorm = w[c] * dout[c];
    db[c] += dout[c];
    dw[c] += norm * dout[c];
    dinp[c] += (dnorm - dnormMean - norm * dnormNormMean) * rstd;
  }
}

AGENTRL_SIMD_CLONES void rmsnorm_row(float* __restrict out, float* rstdOut, const float* __restrict x,
                                     const float* __restrict w, long C, float eps) {
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (long c = 0; c < C; ++c) ss += x[c] * x[c];
  const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
  for (long c = 0; c < C; ++c) out[c] = x[c] * rstd * w[c];
  *rstdOut = rstd;
}

// RMSNorm backward for one row: y = x·r·w with r = (mean(x²)+eps)^-½, so
// dx = r·(w·dy) − x·r³·mean(x·w·dy) = r·(dnorm − norm·mean(dnorm·norm)).
AGENTRL_SIMD_CLONES void rmsnorm_backward_row(float* __restrict dinp, float* __restrict dw,
                                              const float* __restrict dout, const float* __restrict x,
                                              const float* __restrict w, float rstd, long C) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (long c = 0; c < C; ++c) dot += w[c] * dout[c] * x[c] * rstd;
  dot /= static_cast<float>(C);
  for (long c = 0; c < C; ++c) {
    const float norm = x[c] * rstd;
    dw[c] += norm * dout[c];
    dinp[c] += (w[c] * dout[c] - norm * dot) * rstd;
  }
}

}  // namespace detail

void embed_forward(int nt, float* out, const int32_t* tokens, const float* wte, const float* wpe, long B,
                   long T, long C) {
  const long N = B * T;
  parallel_for(threads_for(N * C, nt), N, Schedule::Static, [&](long n) {
    detail::embed_row(out + n * C, wte + static_cast<long>(tokens[n]) * C, wpe ? wpe + (n % T) * C : nullptr, C);
  });
}

// Tokens repeat, so rows of dwte receive several updates: each block owns a slice of the channels
// (in 16-float units, so slices never share a cache line) and walks all rows — race-free and
// deterministic without atomics.
void embed_backward(int nt, float* dwte, float* dwpe, const float* dout, const int32_t* tokens, long B,
                    long T, long C) {
  const long N = B * T;
  const long units = (C + 15) / 16;
  parallel_blocks(threads_for(N * C, nt), units, [&](long u0, long u1) {
    const long c0 = u0 * 16, c1 = std::min(C, u1 * 16);
    if (c1 <= c0) return;
    for (long n = 0; n < N; ++n) {
      const float* src = dout + n * C + c0;
      detail::accumulate_span(dwte + static_cast<long>(tokens[n]) * C + c0, src, c1 - c0);
      if (dwpe) detail::accumulate_span(dwpe + (n % T) * C + c0, src, c1 - c0);
    }
  });
}

void layernorm_forward(int nt, float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, long N, long C, float eps) {
  parallel_for(threads_for(N * C, nt), N, Schedule::Static, [&](long n) {
    detail::layernorm_row(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C, eps);
  });
}

// Row blocks accumulate partial parameter gradients of their own, summed in block order afterwards
// (race-free, and deterministic for a given thread count).
void layernorm_backward(int nt, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd, long N,
                        long C) {
  const int threads = threads_for(N * C, nt);
  const long blocks = threads == 1 ? 1 : block_count(threads, N);
  std::vector<float> partial(static_cast<size_t>(blocks) * 2 * C, 0.0f);
  parallel_for_slots(threads, blocks, [&](long blk, int) {
    float* dw = partial.data() + static_cast<size_t>(blk) * 2 * C;
    float* db = dw + C;
    long n0, n1;
    split_range(N, static_cast<int>(blk), static_cast<int>(blocks), &n0, &n1);
    for (long n = n0; n < n1; ++n) {
      detail::layernorm_backward_row(dinp + n * C, dw, db, dout + n * C, inp + n * C, weight, mean[n], rstd[n], C);
    }
  });
  parallel_blocks(threads, C, [&](long c0, long c1) {
    for (long c = c0; c < c1; ++c) {
      float sw = 0.0f, sb = 0.0f;
      for (long t = 0; t < blocks; ++t) {
        sw += partial[static_cast<size_t>(t) * 2 * C + c];
        sb += partial[static_cast<size_t>(t) * 2 * C + C + c];
      }
      dweight[c] += sw;
      dbias[c] += sb;
    }
  });
}

void rmsnorm_forward(int nt, float* out, float* rstd, const float* inp, const float* weight, long N, long C,
                     float eps) {
  parallel_for(threads_for(N * C, nt), N, Schedule::Static, [&](long n) {
    detail::rmsnorm_row(out + n * C, rstd + n, inp + n * C, weight, C, eps);
  });
}

void rmsnorm_backward(int nt, float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, long N, long C) {
  const int threads = threads_for(N * C, nt);
  const long blocks = threads == 1 ? 1 : block_count(threads, N);
  std::vector<float> partial(static_cast<size_t>(blocks) * C, 0.0f);
  parallel_for_slots(threads, blocks, [&](long blk, int) {
    float* dw = partial.data() + static_cast<size_t>(blk) * C;
    long n0, n1;
    split_range(N, static_cast<int>(blk), static_cast<int>(blocks), &n0, &n1);
    for (long n = n0; n < n1; ++n) {
      detail::rmsnorm_backward_row(dinp + n * C, dw, dout + n * C, inp + n * C, weight, rstd[n], C);
    }
  });
  parallel_blocks(threads, C, [&](long c0, long c1) {
    for (long c = c0; c < c1; ++c) {
      float s = 0.0f;
      for (long t = 0; t < blocks; ++t) s += partial[static_cast<size_t>(t) * C + c];
      dweight[c] += s;
    }
  });
}

}  // namespace agentrl

// AVX2 + FMA micro-kernel: a 6×16 register tile (12 ymm accumulators + 2 B vectors + 1 broadcast
// = 15 of the 16 registers), the classic Haswell shape. Selected at run time, never via -march.
#include "microkernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AGENTRL_AVX2 __attribute__((target("avx2,fma")))

namespace agentrl {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

AGENTRL_AVX2 void kernel_6x16(long kc, const float* __restrict Ap, const float* __restrict Bp,
                              float* __restrict C, long ldc, int mr, int nr, float alpha, float beta) {
  __m256 c0[kMR], c1[kMR];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
  }
  for (long k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(Bp);
    const __m256 b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256 a = _mm256_broadcast_ss(Ap + r);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
    Ap += kMR;
    Bp += kNR;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  if (mr == kMR && nr == kNR) {
    // Full tile: vector write-back straight into C.
    if (beta == 0.0f) {
#pragma GCC unroll 6
      for (int r = 0; r < kMR; ++r) {
        _mm256_storeu_ps(C + r * ldc, _mm256_mul_ps(va, c0[r]));
        _mm256_storeu_ps(C + r * ldc + 8, _mm256_mul_ps(va, c1[r]));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
      for (int r = 0; r < kMR; ++r) {
        float* row = C + r * ldc;
        _mm256_storeu_ps(row, _mm256_fmadd_ps(va, c0[r], _mm256_mul_ps(vb, _mm256_loadu_ps(row))));
        _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, c1[r], _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8))));
      }
    }
    return;
  }
  // Edge tile: spill to a local tile, then copy only the valid mr×nr part.
  alignas(32) float tile[kMR * kNR];
  for (int r = 0; r < kMR; ++r) {
    _mm256_store_ps(tile + r * kNR, c0[r]);
    _mm256_store_ps(tile + r * kNR + 8, c1[r]);
  }
  for (int r = 0; r < mr; ++r) {
    float* row = C + r * ldc;
    for (int c = 0; c < nr; ++c) {
      const float v = alpha * tile[r * kNR + c];
      row[c] = beta == 0.0f ? v : v + beta * row[c];
    }
  }
}

// MC×KC = 144 × 256 × 4 B = 144 KB of A in L2; B micro-panel 256 × 16 × 4 B = 16 KB in L1.
const MicroKernel kAvx2 = {"avx2", kMR, kNR, 144, 256, kernel_6x16};

}  // namespace

const MicroKernel* avx2_micro_kernel() { return &kAvx2; }

}  // namespace agentrl

#else
namespace agentrl {
const MicroKernel* avx2_micro_kernel() { return nullptr; }
}  // namespace agentrl
#endif

// AVX-512 micro-kernel: a 14×32 register tile (28 zmm accumulators + 2 B vectors + 1 broadcast = 31
// of the 32 registers), one FMA per 16 flops pair, no -march flag: only these functions carry the
// target attribute and they run only after cpu_has_avx512() said yes.
#include "microkernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AGENTRL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

namespace agentrl {
namespace {

constexpr int kMR = 14;
constexpr int kNR = 32;

// Why this shape: per k step it issues 2 vector loads + 14 broadcasts for 28 FMAs, so the two FMA
// ports stay busy while the load ports have slack; 14 rows × 32 columns × 4 B × kc=256 keeps the B
// micro-panel (32 KB) in L1 and the A micro-panel streaming from L2.
AGENTRL_AVX512 void kernel_14x32(long kc, const float* __restrict Ap, const float* __restrict Bp,
                                 float* __restrict C, long ldc, int mr, int nr, float alpha, float beta) {
  __m512 c0[kMR], c1[kMR];
#pragma GCC unroll 14
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
  for (long k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(Bp);
    const __m512 b1 = _mm512_load_ps(Bp + 16);
#pragma GCC unroll 14
    for (int r = 0; r < kMR; ++r) {
      const __m512 a = _mm512_set1_ps(Ap[r]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
    Ap += kMR;
    Bp += kNR;
  }

  // Edge tiles use masked loads/stores (which never touch memory outside the mask) instead of a
  // temporary tile, so partial columns cost nothing extra.
  const __mmask16 m0 = nr >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? static_cast<__mmask16>(0xFFFF)
                       : nr <= 16 ? static_cast<__mmask16>(0)
                                  : static_cast<__mmask16>((1u << (nr - 16)) - 1);
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 14
    for (int r = 0; r < kMR; ++r) {
      if (r < mr) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(va, c0[r]));
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_mul_ps(va, c1[r]));
      }
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int r = 0; r < kMR; ++r) {
      if (r < mr) {
        float* row = C + r * ldc;
        const __m512 old0 = _mm512_maskz_loadu_ps(m0, row);
        const __m512 old1 = _mm512_maskz_loadu_ps(m1, row + 16);
        _mm512_mask_storeu_ps(row, m0, _mm512_fmadd_ps(va, c0[r], _mm512_mul_ps(vb, old0)));
        _mm512_mask_storeu_ps(row + 16, m1, _mm512_fmadd_ps(va, c1[r], _mm512_mul_ps(vb, old1)));
      }
    }
  }
}

// MC×KC A block = 168 × 256 × 4 B = 168 KB (L2); B micro-panel 256 × 32 × 4 B = 32 KB (L1).
const MicroKernel kAvx512 = {"avx512", kMR, kNR, 168, 256, kernel_14x32};

}  // namespace

const MicroKernel* avx512_micro_kernel() { return &kAvx512; }

}  // namespace agentrl

#else
namespace agentrl {
const MicroKernel* avx512_micro_kernel() { return nullptr; }
}  // namespace agentrl
#endif

// Portable micro-kernel for CPUs without AVX2 (and non-x86 hosts). Plain C++ on a 4×8 tile: the
// compiler vectorizes the 8-wide column loop with the baseline ISA (SSE2 on x86-64, NEON on arm64),
// and packing still gives it unit-stride operands.
#include "microkernel.h"

namespace agentrl {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

void kernel_4x8(long kc, const float* __restrict Ap, const float* __restrict Bp, float* __restrict C,
                long ldc, int mr, int nr, float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (long k = 0; k < kc; ++k) {
    for (int r = 0; r < kMR; ++r) {
      const float a = Ap[r];
      for (int c = 0; c < kNR; ++c) acc[r][c] += a * Bp[c];
    }
    Ap += kMR;
    Bp += kNR;
  }
  for (int r = 0; r < mr; ++r) {
    float* row = C + r * ldc;
    for (int c = 0; c < nr; ++c) {
      const float v = alpha * acc[r][c];
      row[c] = beta == 0.0f ? v : v + beta * row[c];
    }
  }
}

const MicroKernel kScalar = {"scalar", kMR, kNR, 128, 256, kernel_4x8};

}  // namespace

const MicroKernel* scalar_micro_kernel() { return &kScalar; }

}  // namespace agentrl

// Internal contract between the cache-blocked GEMM driver (gemm_blocked.cc) and the per-ISA
// register-tiled micro-kernels (gemm_avx512.cc, gemm_avx2.cc, gemm_scalar.cc).
#pragma once

namespace agentrl {

// Computes an mr×nr tile (mr ≤ MR, nr ≤ NR): C = alpha·(Ap·Bp) + beta·C, where Ap is a packed
// MR×kc micro-panel (element (r,k) at Ap[k·MR + r]) and Bp a packed kc×NR micro-panel (element (k,c)
// at Bp[k·NR + c]); both are zero-padded to full MR/NR and 64-byte aligned. beta == 0 must not read C.
using MicroKernelFn = void (*)(long kc, const float* Ap, const float* Bp, float* C, long ldc, int mr,
                               int nr, float alpha, float beta);

// A micro-kernel plus the cache-blocking sizes tuned for it: an A block is MC×KC (lives in L2), one
// B micro-panel KC×NR stays in L1 while the kernel sweeps down the MC rows.
struct MicroKernel {
  const char* name;
  int mr, nr;
  long mc, kc;
  MicroKernelFn fn;
};

// Null when this build's compiler could not target the ISA (non-x86 hosts).
const MicroKernel* avx512_micro_kernel();
const MicroKernel* avx2_micro_kernel();
const MicroKernel* scalar_micro_kernel();

// The blocked driver: packs panels of op(A) and op(B) (so every transpose combination runs the same
// contiguous inner loop) and shares the work among `threads` pool threads (1 = no parallel loop,
// safe inside another parallel region). Requires M, N, K > 0.
void gemm_blocked(const MicroKernel& mk, int threads, bool transA, bool transB, long M, long N, long K,
                  float alpha, const float* A, long lda, const float* B, long ldb, float beta, float* C,
                  long ldc);

}  // namespace agentrl

// GEMM front door: handles the degenerate cases once, then dispatches to OpenBLAS or to the blocked
// driver with the micro-kernel of the requested ISA.
#include "gemm.h"

#include <cstdlib>

#include "cpu.h"
#include "microkernel.h"
#include "openblas.h"

namespace agentrl {
namespace {

// C = beta·C for the cases with no product to add (K == 0 or alpha == 0); beta == 0 writes zeros
// without reading C, matching BLAS.
void scale_c(long M, long N, float beta, float* C, long ldc) {
  if (beta == 1.0f) return;
  for (long i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f) {
      for (long j = 0; j < N; ++j) row[j] = 0.0f;
    } else {
      for (long j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

const MicroKernel* kernel_for(GemmPath path) {
  switch (path) {
    case GemmPath::Avx512: return cpu_has_avx512() ? avx512_micro_kernel() : nullptr;
    case GemmPath::Avx2: return cpu_has_avx2() ? avx2_micro_kernel() : nullptr;
    case GemmPath::Scalar: return scalar_micro_kernel();
    default: return nullptr;
  }
}

// The widest built-in kernel this CPU can run (the serial GEMM and the OpenBLAS-less default).
const MicroKernel& best_builtin_kernel() {
  static const MicroKernel* best = [] {
    if (const MicroKernel* k = kernel_for(GemmPath::Avx512)) return k;
    if (const MicroKernel* k = kernel_for(GemmPath::Avx2)) return k;
    return scalar_micro_kernel();
  }();
  return *best;
}

}  // namespace

void sgemm(GemmPath path, int threads, bool transA, bool transB, long M, long N, long K, float alpha,
           const float* A, long lda, const float* B, long ldb, float beta, float* C, long ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  if (path == GemmPath::OpenBLAS) {
    if (openblas_available()) {
      openblas_sgemm(threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    path = gemm_default_path();  // unreachable through the addon (it validates the path)
  }
  const MicroKernel* mk = kernel_for(path);
  if (!mk) mk = &best_builtin_kernel();
  gemm_blocked(*mk, threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_serial(bool transA, bool transB, long M, long N, long K, float alpha, const float* A,
                  long lda, const float* B, long ldb, float beta, float* C, long ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm_blocked(best_builtin_kernel(), 1, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool gemm_path_available(GemmPath path) {
  if (path == GemmPath::OpenBLAS) return openblas_available();
  return kernel_for(path) != nullptr;
}

const char* gemm_path_name(GemmPath path) {
  switch (path) {
    case GemmPath::OpenBLAS: return "openblas";
    case GemmPath::Avx512: return "avx512";
    case GemmPath::Avx2: return "avx2";
    case GemmPath::Scalar: return "scalar";
  }
  return "unknown";
}

bool gemm_path_from_name(const std::string& name, GemmPath* out) {
  for (GemmPath p : {GemmPath::OpenBLAS, GemmPath::Avx512, GemmPath::Avx2, GemmPath::Scalar}) {
    if (name == gemm_path_name(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

GemmPath gemm_default_path() {
  if (openblas_available()) return GemmPath::OpenBLAS;
  if (kernel_for(GemmPath::Avx512)) return GemmPath::Avx512;
  if (kernel_for(GemmPath::Avx2)) return GemmPath::Avx2;
  return GemmPath::Scalar;
}

std::string openblas_load_error() { return openblas_error(); }

}  // namespace agentrl

// Public GEMM entry points: cblas_sgemm semantics (row-major), three interchangeable paths.
#pragma once

#include <string>

namespace agentrl {

// Which implementation runs sgemm. The values are part of the JS ↔ C++ protocol (src/engine/native.ts).
enum class GemmPath : int { OpenBLAS = 0, Avx512 = 1, Avx2 = 2, Scalar = 3 };

// C = alpha·op(A)·op(B) + beta·C with row-major storage; op(A) is M×K, op(B) is K×N.
// beta == 0 never reads C (so NaN garbage in C is overwritten). `threads` caps the parallelism.
void sgemm(GemmPath path, int threads, bool transA, bool transB, long M, long N, long K, float alpha,
           const float* A, long lda, const float* B, long ldb, float beta, float* C, long ldc);

// Same contract, single-threaded, always the best built-in SIMD kernel: safe to call from inside a
// parallel loop (the attention kernels call it once per (batch, head)).
void sgemm_serial(bool transA, bool transB, long M, long N, long K, float alpha, const float* A,
                  long lda, const float* B, long ldb, float beta, float* C, long ldc);

bool gemm_path_available(GemmPath path);
const char* gemm_path_name(GemmPath path);
// Parses 'openblas' | 'avx512' | 'avx2' | 'scalar'; returns false for anything else.
bool gemm_path_from_name(const std::string& name, GemmPath* out);
// OpenBLAS when it can be dlopen'd, else the widest SIMD kernel this CPU runs.
GemmPath gemm_default_path();
// Why OpenBLAS is unavailable (empty when it loaded).
std::string openblas_load_error();

}  // namespace agentrl

// OpenBLAS loaded at run time with dlopen: never a link-time dependency, so the addon builds and
// runs without it, and uses it when the system has it.
#pragma once

#include <string>

namespace agentrl {

// Tries libopenblas.so.0, libopenblas.so, libopenblasp.so.0 once; true when cblas_sgemm resolved.
bool openblas_available();
std::string openblas_error();
// Row-major cblas_sgemm through the loaded library: single-threaded OpenBLAS calls on blocks of C,
// spread over `threads` pool threads.
void openblas_sgemm(int threads, bool transA, bool transB, long M, long N, long K, float alpha,
                    const float* A, long lda, const float* B, long ldb, float beta, float* C, long ldc);

}  // namespace agentrl

// OpenBLAS through dlopen: the addon has no link-time BLAS dependency, so it builds on machines
// without OpenBLAS headers or libraries and picks the library up when it is installed later.
//
// OpenBLAS runs single-threaded inside our pool threads (each computes a block of C) instead of
// with its own thread pool: OpenBLAS's idle workers busy-wait for ~0.1 s after every call, and on a
// 2-core machine they then steal the cores from the kernels that run between GEMMs (measured:
// a 100 µs built-in GEMM took 8.5 ms right after OpenBLAS calls). One thread model, no fight.
#include "openblas.h"

#include <dlfcn.h>

#include <algorithm>
#include <mutex>

#include "parallel.h"

namespace agentrl {
namespace {

// CBLAS enum values (cblas.h) — stable across every CBLAS implementation.
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

using CblasSgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                              float, float*, int);
using SetThreadsFn = void (*)(int);

struct OpenBlas {
  CblasSgemmFn sgemm = nullptr;
  SetThreadsFn set_threads = nullptr;
  std::string error;
};

OpenBlas& library() {
  static OpenBlas lib;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"};
    std::string tried;
    for (const char* name : names) {
      void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char* why = dlerror();
        tried += std::string(tried.empty() ? "" : "; ") + (why ? why : name);
        continue;
      }
      auto fn = reinterpret_cast<CblasSgemmFn>(dlsym(handle, "cblas_sgemm"));
      if (!fn) {
        tried += std::string(tried.empty() ? "" : "; ") + name + " has no cblas_sgemm";
        dlclose(handle);
        continue;
      }
      lib.sgemm = fn;
      lib.set_threads = reinterpret_cast<SetThreadsFn>(dlsym(handle, "openblas_set_num_threads"));
      if (lib.set_threads) lib.set_threads(1);  // we parallelise around it (see the top of this file)
      return;
    }
    lib.error = "OpenBLAS not found (" + tried + "); install it with `apt-get install libopenblas0-pthread`";
  });
  return lib;
}

}  // namespace

bool openblas_available() { return library().sgemm != nullptr; }

std::string openblas_error() { return library().error; }

void openblas_sgemm(int threads, bool transA, bool transB, long M, long N, long K, float alpha,
                    const float* A, long lda, const float* B, long ldb, float beta, float* C, long ldc) {
  const CblasSgemmFn sgemm = library().sgemm;
  auto call = [&](long i0, long m, long j0, long n) {
    // Sub-block of C: rows of op(A) start at i0 (a row offset of A, or a column offset if transposed),
    // columns of op(B) at j0 (likewise).
    const float* a = transA ? A + i0 : A + i0 * lda;
    const float* b = transB ? B + j0 * ldb : B + j0;
    sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, static_cast<int>(m),
          static_cast<int>(n), static_cast<int>(K), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
          beta, C + i0 * ldc + j0, static_cast<int>(ldc));
  };
  const int nt = 2.0 * M * N * K < 4.0e6 ? 1 : std::max(1, threads);
  if (nt == 1) {
    call(0, M, 0, N);
    return;
  }
  // Split the longer side of C into 2 blocks per thread (multiples of 16), taken dynamically so a
  // thread slowed down by another process does not hold the others up for long.
  const bool byRows = M >= N;
  const long extent = byRows ? M : N;
  const long parts = std::max(1L, std::min(2L * nt, extent / 16));
  const long step = ((extent + parts - 1) / parts + 15) / 16 * 16;
  const long blocks = (extent + step - 1) / step;
  parallel_for(nt, blocks, Schedule::Dynamic, [&](long blk) {
    const long s0 = blk * step, len = std::min(step, extent - s0);
    if (byRows) call(s0, len, 0, N);
    else call(0, M, s0, len);
  });
}

}  // namespace agentrl

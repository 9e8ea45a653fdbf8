// Small helpers for the OpenMP parallel loops in the kernels.
#pragma once

#include <algorithm>

#include "denormals.h"

namespace agentrl {

// Threads worth using for `work` floats of memory-bound work: forking costs a few microseconds,
// so small tensors run on the calling thread.
inline int threads_for(long work, int nt) { return work < 32768 ? 1 : std::max(1, nt); }

// [begin, end) of `count` units for thread `tid` of `nt`, contiguous and near-equal.
inline void split_range(long count, int tid, int nt, long* begin, long* end) {
  const long base = count / nt, extra = count % nt;
  *begin = tid * base + std::min<long>(tid, extra);
  *end = *begin + base + (tid < extra ? 1 : 0);
}

enum class Schedule { Static, Dynamic };

// body(i) for i in [0, n) on up to `nt` OpenMP threads, every worker with denormals flushed (the
// calling thread already is, by the N-API entry point). Static: contiguous blocks, for uniform rows.
// Dynamic: one index at a time, for uneven items or a machine where another process may be
// descheduling one of our threads.
template <class Fn>
void parallel_for(int nt, long n, Schedule schedule, Fn&& body) {
  if (nt <= 1 || n <= 1) {
    for (long i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    ScopedFlushDenormals flush;
    if (schedule == Schedule::Static) {
#pragma omp for schedule(static)
      for (long i = 0; i < n; ++i) body(i);
    } else {
#pragma omp for schedule(dynamic, 1)
      for (long i = 0; i < n; ++i) body(i);
    }
  }
}

}  // namespace agentrl

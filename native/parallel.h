// Parallel loops for the kernels, on the helping thread pool (thread_pool.h).
#pragma once

#include <algorithm>
#include <memory>
#include <type_traits>

#include "denormals.h"
#include "thread_pool.h"

namespace agentrl {

// Threads worth using for `work` floats of memory-bound work: posting a job costs about a
// microsecond, so small tensors run on the calling thread.
inline int threads_for(long work, int nt) { return work < 32768 ? 1 : std::max(1, nt); }

// [begin, end) of `count` units for part `part` of `parts`, contiguous and near-equal.
inline void split_range(long count, int part, int parts, long* begin, long* end) {
  const long base = count / parts, extra = count % parts;
  *begin = part * base + std::min<long>(part, extra);
  *end = *begin + base + (part < extra ? 1 : 0);
}

// Items per thread for uniform work: enough that a thread slowed down by another process holds the
// others up for a fraction of the loop only, few enough that claiming them costs nothing.
constexpr int kBlocksPerThread = 4;

// Blocks a loop of `n` uniform units is cut into for `nt` threads (a function of nt and n only, so
// per-block partial sums add up in the same order on every run).
inline long block_count(int nt, long n) { return std::max(1L, std::min<long>(n, long{nt} * kBlocksPerThread)); }

// body(i, slot) for i in [0, n) on up to `nt` threads, items claimed one at a time; slot ∈ [0, nt)
// names the executing thread, for per-thread scratch.
template <class Fn>
void parallel_for_slots(int nt, long n, Fn&& body) {
  if (nt <= 1 || n <= 1) {
    for (long i = 0; i < n; ++i) body(i, 0);
    return;
  }
  using F = std::remove_reference_t<Fn>;
  pool_run(nt, n, [](void* ctx, long i, int slot) { (*static_cast<F*>(ctx))(i, slot); },
           const_cast<void*>(static_cast<const void*>(std::addressof(body))));
}

// body(begin, end) over [0, n) cut into block_count(nt, n) contiguous blocks, claimed dynamically.
template <class Fn>
void parallel_blocks(int nt, long n, Fn&& body) {
  const long blocks = nt <= 1 ? 1 : block_count(nt, n);
  parallel_for_slots(nt, blocks, [&](long blk, int) {
    long b, e;
    split_range(n, static_cast<int>(blk), static_cast<int>(blocks), &b, &e);
    if (e > b) body(b, e);
  });
}

enum class Schedule { Static, Dynamic };

// body(i) for i in [0, n) on up to `nt` threads. Static: uniform rows, handed out in contiguous
// blocks. Dynamic: one index at a time, for uneven items.
template <class Fn>
void parallel_for(int nt, long n, Schedule schedule, Fn&& body) {
  if (schedule == Schedule::Dynamic && n < (1L << 24)) {
    parallel_for_slots(nt, n, [&](long i, int) { body(i); });
  } else {
    parallel_blocks(nt, n, [&](long b, long e) {
      for (long i = b; i < e; ++i) body(i);
    });
  }
}

}  // namespace agentrl

// See thread_pool.h for why the pool helps the caller instead of forking a team.
//
// One job at a time, described by a 64-bit ticket: generation (32 bits) | threads allowed (8) |
// items not yet claimed (24). A thread claims an item by a compare-and-swap that decrements the
// count while the generation is unchanged, so a worker that read a stale ticket can never claim an
// item of a later job; and once it holds an item, the job cannot finish, so the job's description
// (fn, ctx, n) stays valid until that item is marked done.
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace agentrl {
namespace {

inline void cpu_relax() {
#if defined(__SSE2__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

constexpr int kMaxThreads = 255;
constexpr uint64_t kCountMask = (uint64_t{1} << 24) - 1;

inline uint32_t ticket_gen(uint64_t t) { return static_cast<uint32_t>(t >> 32); }
inline int ticket_threads(uint64_t t) { return static_cast<int>((t >> 24) & 0xff); }
inline long ticket_left(uint64_t t) { return static_cast<long>(t & kCountMask); }

long read_spin_us() {
  const char* v = std::getenv("AGENTRL_SPIN_US");
  if (!v || !*v) return 100;
  char* end = nullptr;
  const long us = std::strtol(v, &end, 10);
  return (end && *end == '\0' && us >= 0) ? us : 100;
}

thread_local bool tls_in_pool = false;

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void run(int nt, long n, PoolTask fn, void* ctx) {
    if (nt > kMaxThreads) nt = kMaxThreads;
    std::unique_lock<std::mutex> caller(caller_, std::try_to_lock);
    if (!caller.owns_lock() || tls_in_pool || nt <= 1 || n <= 1 || n > static_cast<long>(kCountMask)) {
      for (long i = 0; i < n; ++i) fn(ctx, i, 0);
      return;
    }
    grow(nt - 1);
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint32_t gen = ++gen_;
    // seq_cst pairs with the sleepers' check in worker_main: either a sleeper sees this ticket in
    // its wait predicate, or we see it counted and wake it.
    ticket_.store((uint64_t{gen} << 32) | (uint64_t(nt) << 24) | uint64_t(n));
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lk(mutex_); }
      cv_.notify_all();
    }
    tls_in_pool = true;
    work(gen, 0);
    tls_in_pool = false;
    // Only items already claimed by another thread are left; wait for them, politely if it is slow
    // (the thread holding one may be descheduled).
    for (long spins = 0; done_.load(std::memory_order_acquire) < n; ++spins) {
      if (spins < 4096) cpu_relax();
      else sched_yield();
    }
  }

 private:
  // Claims and runs items of job `gen` until none is left (returns at once when that job is gone).
  void work(uint32_t gen, int slot) {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      if (ticket_gen(t) != gen || slot >= ticket_threads(t) || ticket_left(t) == 0) return;
      if (!ticket_.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const long n = n_.load(std::memory_order_relaxed);
      fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), n - ticket_left(t), slot);
      done_.fetch_add(1, std::memory_order_release);
      t = ticket_.load(std::memory_order_acquire);
    }
  }

  void grow(int workers) {
    while (static_cast<int>(workers_.size()) < workers) {
      const int slot = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, slot] { worker_main(slot); });
    }
  }

  void worker_main(int slot) {
    tls_in_pool = true;
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040);  // flush denormals for the worker's lifetime (see denormals.h)
#endif
    uint32_t seen = 0;
    const auto spin = std::chrono::microseconds(pool_spin_us());
    for (;;) {
      // Poll for a new generation for up to `spin`, then sleep until one is posted.
      uint64_t t = ticket_.load(std::memory_order_acquire);
      if (ticket_gen(t) == seen) {
        const auto until = std::chrono::steady_clock::now() + spin;
        for (int i = 0; ticket_gen(t = ticket_.load(std::memory_order_acquire)) == seen; ++i) {
          if (stop_.load(std::memory_order_relaxed)) return;
          if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
          cpu_relax();
        }
      }
      if (ticket_gen(t) == seen) {
        std::unique_lock<std::mutex> lk(mutex_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || ticket_gen(ticket_.load()) != seen; });
        sleepers_.fetch_sub(1);
        if (stop_.load()) return;
        t = ticket_.load(std::memory_order_acquire);
      }
      seen = ticket_gen(t);
      work(seen, slot);
    }
  }

  std::mutex caller_;
  std::atomic<uint64_t> ticket_{0};
  std::atomic<long> done_{0};
  std::atomic<PoolTask> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<long> n_{0};
  uint32_t gen_ = 0;  // written by the (single) caller only
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  // Never destroyed: workers may still be polling when the process exits, and joining them from a
  // static destructor during Node's teardown is not worth the risk.
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

long pool_spin_us() {
  static const long us = read_spin_us();
  return us;
}

void pool_run(int nt, long n, PoolTask fn, void* ctx) { pool().run(nt, n, fn, ctx); }

}  // namespace agentrl

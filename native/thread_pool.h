// The kernels' thread pool: persistent workers that help the calling thread, never a team it waits for.
//
// OpenMP's fork-join made every parallel region wait at its join for every thread of the team. When
// another process keeps a core busy, one of our threads is often descheduled for a whole scheduler
// time slice (milliseconds) while a kernel takes tens of microseconds: every region then waited a
// time slice, and the engine lost 75–87 % of its throughput. Here the caller posts a job of `n`
// items and works on it itself; workers that are awake claim items too; the caller returns as soon
// as every item is *done*. A worker that wakes late finds nothing left and goes back to waiting, so
// nobody ever waits for a thread that has not started, only for an item in progress.
#pragma once

namespace agentrl {

// fn(ctx, i, slot) for every i in [0, n), on the calling thread (slot 0) and up to nt − 1 pool
// workers (slots 1 … nt − 1); slot names the executing thread, for per-thread scratch. Items are
// claimed one at a time, so give it a few items per thread (not millions): n must be < 2^24.
// Reentrant calls (from inside an item) and concurrent callers run their items serially on the
// calling thread, with slot 0.
using PoolTask = void (*)(void* ctx, long i, int slot);
void pool_run(int nt, long n, PoolTask fn, void* ctx);

// Microseconds an idle worker polls for the next job before it sleeps (AGENTRL_SPIN_US, default
// 100): kernels follow each other within microseconds during a step, and a sleeping worker costs a
// futex wake per job, but a polling one burns a core that another process may want.
long pool_spin_us();

}  // namespace agentrl

// CPU feature detection and thread-count policy shared by every kernel.
#pragma once

namespace agentrl {

// True when the CPU and OS support the AVX-512 subset our GEMM micro-kernel uses (F, BW, DQ, VL + FMA).
bool cpu_has_avx512();
// True when the CPU and OS support AVX2 + FMA (the 256-bit micro-kernel).
bool cpu_has_avx2();
// CPUs this process can use: its affinity mask, capped by a cgroup CPU quota; the default thread
// count and the clamp of requested ones.
int cpu_count();
// Clamp a requested thread count to [1, cpu_count()] so we never oversubscribe a small machine.
int clamp_threads(int requested);

}  // namespace agentrl

// CPU feature detection. We compile without -march=native so one binary runs on any x86-64 CPU;
// the SIMD kernels are picked at run time from what __builtin_cpu_supports reports (libgcc also
// checks that the OS saves the wide registers, via XGETBV).
#include "cpu.h"

#include <omp.h>

namespace agentrl {

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

int cpu_count() {
  int n = omp_get_num_procs();
  return n > 0 ? n : 1;
}

int clamp_threads(int requested) {
  if (requested < 1) return 1;
  int n = cpu_count();
  return requested > n ? n : requested;
}

}  // namespace agentrl

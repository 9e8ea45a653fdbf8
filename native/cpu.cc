// CPU feature detection. We compile without -march=native so one binary runs on any x86-64 CPU;
// the SIMD kernels are picked at run time from what __builtin_cpu_supports reports (libgcc also
// checks that the OS saves the wide registers, via XGETBV).
#include "cpu.h"

#include <algorithm>
#include <string>

#include <sched.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

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

namespace {

// CPUs this process may run on (its affinity mask: taskset, cpusets, container CPU pinning).
int affinity_cpus() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Cores' worth of CPU time a cgroup quota grants (cgroup v2 cpu.max "quota period", v1
// cfs_quota_us / cfs_period_us), rounded up; 0 when there is no quota. A container limited to 1.5
// CPUs on a 64-core host would otherwise start 64 threads that the quota then throttles.
int cgroup_quota_cpus() {
  double quota = -1, period = -1;
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char q[32] = {0};
    if (std::fscanf(f, "%31s %lf", q, &period) == 2 && std::string(q) != "max") quota = std::atof(q);
    std::fclose(f);
  } else if (FILE* fq = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) {
    if (std::fscanf(fq, "%lf", &quota) != 1) quota = -1;
    std::fclose(fq);
    if (FILE* fp = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) {
      if (std::fscanf(fp, "%lf", &period) != 1) period = -1;
      std::fclose(fp);
    }
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

}  // namespace

int cpu_count() {
  static const int n = [] {
    const int cpus = affinity_cpus(), quota = cgroup_quota_cpus();
    return quota > 0 ? std::min(cpus, quota) : cpus;
  }();
  return n;
}

int clamp_threads(int requested) {
  if (requested < 1) return 1;
  int n = cpu_count();
  return requested > n ? n : requested;
}

}  // namespace agentrl

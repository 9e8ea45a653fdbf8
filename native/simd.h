// Helpers for the non-GEMM kernels: run-time ISA dispatch through GCC target_clones (an ifunc picks
// the AVX-512, AVX2 or baseline copy of a function once, at load time, from the CPU's features),
// and a branch-free exp that the compiler can vectorize (libm's expf cannot be, without -ffast-math,
// and exp/tanh dominate softmax, attention and GELU).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Put on small leaf functions (a row, a span): clones cannot be inlined, so the call must be cheap
// relative to the work, and parallel loops stay in ordinary functions.
#define AGENTRL_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AGENTRL_SIMD_CLONES
#endif

namespace agentrl {

inline float bits_to_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// e^x with ~1 ulp-level relative error (≤ 2e-7) for x in [-87.3, 88.7]; inputs outside are clamped,
// so the result stays finite and normal (exp(-∞) comes out as ~1e-38, not 0: callers that need an
// exact 0 for masked entries select it themselves). Cephes-style: x = n·ln2 + r with |r| ≤ ln2/2,
// a degree-6 polynomial for e^r, and 2^n assembled in the exponent bits.
inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;  // ln2 split in a part exact in float and a tiny remainder
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

}  // namespace agentrl

// Rotary position embedding, in place on the q and k parts of qkv.
#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

// Rotates the pairs (2i, 2i+1) of one head vector by the angles whose cos/sin are given.
AGENTRL_SIMD_CLONES void rotate_pairs(float* __restrict x, const float* __restrict cosv,
                                      const float* __restrict sinv, long half) {
  for (long i = 0; i < half; ++i) {
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * cosv[i] - x1 * sinv[i];
    x[2 * i + 1] = x0 * sinv[i] + x1 * cosv[i];
  }
}

}  // namespace detail

// Angles are computed in double (θ_i = base^(−2i/hs), angle = pos·θ_i) so long positions keep their
// precision; cos/sin are tabulated once per distinct position in [min pos, max pos] and reused by
// every row and head at that position. `inverse` negates the sines (rotation by −θ: the backward).
void rope(int nt, float* qkv, const int32_t* pos0, long B, long T, long C, long NH, double base, bool inverse) {
  const long hs = C / NH, half = hs / 2;
  if (B <= 0 || T <= 0 || half <= 0) return;
  long minPos = pos0[0], maxPos = pos0[0];
  for (long b = 1; b < B; ++b) {
    minPos = std::min<long>(minPos, pos0[b]);
    maxPos = std::max<long>(maxPos, pos0[b]);
  }
  const long positions = maxPos + T - minPos;
  // Tabulate when it is no more work than computing per row (always, for training and decoding).
  const bool tabulate = positions <= B * T;
  std::vector<double> theta(static_cast<size_t>(half));
  for (long i = 0; i < half; ++i) theta[i] = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(hs));
  const double sign = inverse ? -1.0 : 1.0;
  auto fill = [&](long pos, float* cosv, float* sinv) {
    for (long i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos) * theta[i];
      cosv[i] = static_cast<float>(std::cos(a));
      sinv[i] = static_cast<float>(sign * std::sin(a));
    }
  };
  std::vector<float> table;
  if (tabulate) {
    table.resize(static_cast<size_t>(positions * 2 * half));
    parallel_for(threads_for(positions * half * 16, nt), positions, Schedule::Static,
                 [&](long p) { fill(minPos + p, table.data() + p * 2 * half, table.data() + p * 2 * half + half); });
  }
  const long rows = B * T;
#pragma omp parallel num_threads(threads_for(rows * 2 * C, nt))
  {
    ScopedFlushDenormals flush;
    std::vector<float> local(tabulate ? 0 : static_cast<size_t>(2 * half));
#pragma omp for schedule(static)
    for (long r = 0; r < rows; ++r) {
      const long pos = pos0[r / T] + r % T;
      const float *cosv, *sinv;
      if (tabulate) {
        cosv = table.data() + (pos - minPos) * 2 * half;
        sinv = cosv + half;
      } else {
        fill(pos, local.data(), local.data() + half);
        cosv = local.data();
        sinv = cosv + half;
      }
      float* row = qkv + r * 3 * C;
      for (long h = 0; h < NH; ++h) {
        detail::rotate_pairs(row + h * hs, cosv, sinv, half);      // q
        detail::rotate_pairs(row + C + h * hs, cosv, sinv, half);  // k
      }
    }
  }
}

}  // namespace agentrl

// Rotary position embedding, in place on the q and k heads of qkv rows: a table of per-pair
// frequencies (any scaling, e.g. llama3's), and the GPT-2-layout form with θ_i = base^(−2i/hs).
#include <algorithm>
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

// Angles are computed in double (angle = pos·invFreq[i]) so long positions keep their precision;
// cos/sin are tabulated once per distinct position in [min pos, max pos] and reused by every row and
// head at that position. `inverse` negates the sines (rotation by −θ: the backward).
void rope_freqs(int nt, float* x, long rowStride, const int32_t* pos0, long B, long T, long nHeads, long hd,
                const double* invFreq, bool inverse) {
  const long half = hd / 2;
  if (B <= 0 || T <= 0 || half <= 0 || nHeads <= 0) return;
  long minPos = pos0[0], maxPos = pos0[0];
  for (long b = 1; b < B; ++b) {
    minPos = std::min<long>(minPos, pos0[b]);
    maxPos = std::max<long>(maxPos, pos0[b]);
  }
  const long positions = maxPos + T - minPos;
  // Tabulate when it is no more work than computing per row (always, for training and decoding).
  const bool tabulate = positions <= B * T;
  const double sign = inverse ? -1.0 : 1.0;
  auto fill = [&](long pos, float* cosv, float* sinv) {
    for (long i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos) * invFreq[i];
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
  const int threads = threads_for(rows * nHeads * hd, nt);
  // Per-thread angle scratch for the untabulated case.
  std::vector<float> local(tabulate ? 0 : static_cast<size_t>(std::max(1, threads) * 2 * half));
  parallel_for_slots(threads, block_count(threads, rows), [&](long blk, int slot) {
    long r0, r1;
    split_range(rows, static_cast<int>(blk), static_cast<int>(block_count(threads, rows)), &r0, &r1);
    for (long r = r0; r < r1; ++r) {
      const long pos = pos0[r / T] + r % T;
      const float *cosv, *sinv;
      if (tabulate) {
        cosv = table.data() + (pos - minPos) * 2 * half;
        sinv = cosv + half;
      } else {
        float* mine = local.data() + static_cast<size_t>(slot) * 2 * half;
        fill(pos, mine, mine + half);
        cosv = mine;
        sinv = cosv + half;
      }
      float* row = x + r * rowStride;
      for (long h = 0; h < nHeads; ++h) detail::rotate_pairs(row + h * hd, cosv, sinv, half);
    }
  });
}

// GPT-2 layout: the q and k heads are 2·NH contiguous heads of width hs at the start of each 3C-wide
// row, and θ_i = base^(−2i/hs).
void rope(int nt, float* qkv, const int32_t* pos0, long B, long T, long C, long NH, double base, bool inverse) {
  const long hs = C / NH, half = hs / 2;
  std::vector<double> theta(static_cast<size_t>(half));
  for (long i = 0; i < half; ++i) theta[i] = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(hs));
  rope_freqs(nt, qkv, 3 * C, pos0, B, T, 2 * NH, hs, theta.data(), inverse);
}

}  // namespace agentrl

// SwiGLU, the gated MLP activation of Llama / Qwen: rows [gate | up] of width 2I → silu(gate)·up.

#include <algorithm>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

// σ(g) = 1 / (1 + e^(−g)). fast_exp clamps its argument, so e^(−g) stays finite and normal: σ is
// exactly 1 for large g and a tiny positive number (0 once subnormals are flushed) for very negative
// g — never NaN, and the backward's g·σ·(1 − σ) never forms 0·∞.
inline float sigmoid(float g) { return 1.0f / (1.0f + fast_exp(-g)); }

AGENTRL_SIMD_CLONES void swiglu_forward_span(float* __restrict out, const float* __restrict gate,
                                             const float* __restrict up, long n) {
  for (long i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g * sigmoid(g) * up[i];
  }
}

// d/dg [g·σ(g)·u] = u·(σ + g·σ·(1 − σ)); d/du = g·σ(g).
AGENTRL_SIMD_CLONES void swiglu_backward_span(float* __restrict dgate, float* __restrict dup,
                                              const float* __restrict gate, const float* __restrict up,
                                              const float* __restrict dout, long n) {
  for (long i = 0; i < n; ++i) {
    const float g = gate[i], s = sigmoid(g), d = dout[i];
    dgate[i] += d * up[i] * (s + g * s * (1.0f - s));
    dup[i] += d * g * s;
  }
}

// fn(n, i0, i1) over the N×I elements (rows of I) cut into spans of whole 16-element units, so that
// one row of a decode step (N = 1, I in the thousands) spreads over the threads like many short rows.
template <class Fn>
void for_row_spans(int nt, long N, long I, Fn&& fn) {
  const long n = N * I, units = (n + 15) / 16;
  const int threads = threads_for(3 * n, nt);
  const long spans = threads == 1 ? 1 : block_count(threads, units);
  parallel_for_slots(threads, spans, [&](long s, int) {
    long u0, u1;
    split_range(units, static_cast<int>(s), static_cast<int>(spans), &u0, &u1);
    for (long b = u0 * 16, e = std::min(n, u1 * 16); b < e;) {
      const long row = b / I, i0 = b % I, i1 = std::min(I, i0 + (e - b));
      fn(row, i0, i1);
      b += i1 - i0;
    }
  });
}

}  // namespace detail

void swiglu_forward(int nt, float* out, const float* inp, long N, long I) {
  if (N <= 0 || I <= 0) return;
  detail::for_row_spans(nt, N, I, [&](long n, long i0, long i1) {
    const float* row = inp + n * 2 * I;
    detail::swiglu_forward_span(out + n * I + i0, row + i0, row + I + i0, i1 - i0);
  });
}

void swiglu_backward(int nt, float* dinp, const float* inp, const float* dout, long N, long I) {
  if (N <= 0 || I <= 0) return;
  detail::for_row_spans(nt, N, I, [&](long n, long i0, long i1) {
    const float* row = inp + n * 2 * I;
    float* drow = dinp + n * 2 * I;
    detail::swiglu_backward_span(drow + i0, drow + I + i0, row + i0, row + I + i0, dout + n * I + i0, i1 - i0);
  });
}

}  // namespace agentrl

// Elementwise and reduction kernels: GELU, add, bias, sum of squares, scale, AdamW.

#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/π)
constexpr float kGeluC = 0.044715f;

// GELU (tanh form) rewritten with 0.5·(1 + tanh u) = σ(2u) = 1 / (1 + e^(−2u)), so one vectorizable
// exp replaces libm's tanhf.
AGENTRL_SIMD_CLONES void gelu_forward_span(float* __restrict out, const float* __restrict x, long n) {
  for (long i = 0; i < n; ++i) {
    const float xi = x[i];
    const float u = kGeluK * (xi + kGeluC * xi * xi * xi);
    out[i] = xi / (1.0f + fast_exp(-2.0f * u));
  }
}

// d/dx [x·σ(2u)] = σ + 2x·σ(1−σ)·u′, with u′ = k(1 + 3c·x²) (σ(1−σ)·4 = sech²u).
AGENTRL_SIMD_CLONES void gelu_backward_span(float* __restrict dinp, const float* __restrict x,
                                            const float* __restrict dout, long n) {
  for (long i = 0; i < n; ++i) {
    const float xi = x[i];
    const float u = kGeluK * (xi + kGeluC * xi * xi * xi);
    const float s = 1.0f / (1.0f + fast_exp(-2.0f * u));
    const float du = kGeluK * (1.0f + 3.0f * kGeluC * xi * xi);
    dinp[i] += (s + 2.0f * xi * s * (1.0f - s) * du) * dout[i];
  }
}

// No __restrict: out may alias a or b (same index read before written).
AGENTRL_SIMD_CLONES void add_span(float* out, const float* a, const float* b, long n) {
  for (long i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

AGENTRL_SIMD_CLONES void add_bias_row(float* __restrict out, const float* __restrict bias, long cols) {
  for (long c = 0; c < cols; ++c) out[c] += bias[c];
}

// dbias[c0:c1) += column sums of rows of dout (stride cols).
AGENTRL_SIMD_CLONES void column_sums(float* __restrict dbias, const float* __restrict dout, long rows,
                                     long cols, long c0, long c1) {
  for (long r = 0; r < rows; ++r) {
    const float* row = dout + r * cols;
    for (long c = c0; c < c1; ++c) dbias[c] += row[c];
  }
}

AGENTRL_SIMD_CLONES double sum_squares_span(const float* __restrict x, long n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (long i = 0; i < n; ++i) {
    const double d = x[i];
    acc += d * d;
  }
  return acc;
}

AGENTRL_SIMD_CLONES void scale_span(float* __restrict x, float s, long n) {
  for (long i = 0; i < n; ++i) x[i] *= s;
}

// In double, in the order of the JS backend's loop and without fused multiply-adds (JS has none), so
// both paths give the same float32 results: the moments and the step are rounded to float32 only when
// stored, and a contracted a·b + c lands on the other side of a float32 rounding tie for ~1% of
// elements. Memory-bound either way.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
AGENTRL_SIMD_CLONES void adamw_span(float* __restrict p, const float* __restrict g, float* __restrict m,
                                    float* __restrict v, long n, double lr, double b1, double b2, double eps,
                                    double wd, double bc1, double bc2) {
  const double omb1 = 1.0 - b1, omb2 = 1.0 - b2;
  for (long i = 0; i < n; ++i) {
    const double gi = g[i];
    const double mi = b1 * m[i] + omb1 * gi;
    const double vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    const double pi = p[i];
    p[i] = static_cast<float>(pi - lr * (mi / bc1 / (std::sqrt(vi / bc2) + eps) + wd * pi));
  }
}
#pragma GCC pop_options

}  // namespace detail

namespace {

// Runs fn(begin, end) over [0, n) in block_count(threads, units) contiguous spans, claimed
// dynamically (spans are multiples of 16 floats so threads never write the same cache line).
// Returns the number of spans; fn also gets the span's index.
template <class Fn>
long parallel_spans(int nt, long n, Fn fn) {
  const int threads = threads_for(n, nt);
  const long units = (n + 15) / 16;
  const long spans = threads == 1 ? 1 : block_count(threads, units);
  parallel_for_slots(threads, spans, [&](long s, int) {
    long u0, u1;
    split_range(units, static_cast<int>(s), static_cast<int>(spans), &u0, &u1);
    const long b = u0 * 16, e = std::min(n, u1 * 16);
    if (e > b) fn(b, e, s);
  });
  return spans;
}

}  // namespace

void gelu_forward(int nt, float* out, const float* inp, long n) {
  parallel_spans(nt, n, [&](long b, long e, long) { detail::gelu_forward_span(out + b, inp + b, e - b); });
}

void gelu_backward(int nt, float* dinp, const float* inp, const float* dout, long n) {
  parallel_spans(nt, n, [&](long b, long e, long) { detail::gelu_backward_span(dinp + b, inp + b, dout + b, e - b); });
}

void add(int nt, float* out, const float* a, const float* b, long n) {
  parallel_spans(nt, n, [&](long s, long e, long) { detail::add_span(out + s, a + s, b + s, e - s); });
}

void add_bias(int nt, float* out, const float* bias, long rows, long cols) {
  parallel_for(threads_for(rows * cols, nt), rows, Schedule::Static,
               [&](long r) { detail::add_bias_row(out + r * cols, bias, cols); });
}

// Each block owns a slice of the columns and sums it over all rows: race-free, deterministic.
void bias_backward(int nt, float* dbias, const float* dout, long rows, long cols) {
  const long units = (cols + 15) / 16;
  parallel_blocks(threads_for(rows * cols, nt), units, [&](long u0, long u1) {
    const long c0 = u0 * 16, c1 = std::min(cols, u1 * 16);
    if (c1 > c0) detail::column_sums(dbias, dout, rows, cols, c0, c1);
  });
}

// Per-span double partials added in span order: the same input gives the same bits every time for
// a given thread count (the gradient-norm clip depends on it).
double sum_squares(int nt, const float* x, long n) {
  std::vector<double> partial(static_cast<size_t>(block_count(std::max(1, nt), (n + 15) / 16)), 0.0);
  const long spans = parallel_spans(nt, n, [&](long b, long e, long s) {
    partial[static_cast<size_t>(s)] = detail::sum_squares_span(x + b, e - b);
  });
  double total = 0.0;
  for (long s = 0; s < spans; ++s) total += partial[static_cast<size_t>(s)];
  return total;
}

void scale(int nt, float* x, float s, long n) {
  parallel_spans(nt, n, [&](long b, long e, long) { detail::scale_span(x + b, s, e - b); });
}

void adamw(int nt, float* param, const float* grad, float* m, float* v, long n, double lr, double beta1,
           double beta2, double eps, double wd, double t) {
  // Everything in double, β and 1 − β included (β₂ = 0.999 as a float is 0.99900001, which made
  // 1 − β₂ wrong by 1.3e-5 relative); bias corrections 1 − β^t likewise.
  const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
  parallel_spans(nt, n, [&](long b, long e, long) {
    detail::adamw_span(param + b, grad + b, m + b, v + b, e - b, lr, beta1, beta2, eps, wd, bc1, bc2);
  });
}

}  // namespace agentrl

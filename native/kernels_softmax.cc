// Fused tempered, masked log-softmax + target gather + entropy (forward) and its gradient (backward),
// one row of V logits at a time. With z = logits·invTemp (−∞ where masked), m = max z,
// S = Σ e^(z−m), lse = m + log S:
//   logprob = z[target] − lse,   entropy = log S − Σ e^(z−m)·(z−m) / S   (both terms ≥ 0: no cancellation)
//   ∂logprob/∂z_v = [v = target] − p_v,   ∂entropy/∂z_v = −p_v·(z_v − E_p[z]).
#include <cmath>
#include <limits>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"

namespace agentrl {
namespace detail {

struct RowStats {
  float max;      // m (−∞ when every token is masked, NaN when an allowed logit is NaN)
  float sum;      // S
  float shifted;  // Σ e^(z−m)·(z−m)
};

// Reads the row only (the backward may write dlogits over it afterwards).
// A NaN among the allowed logits makes m NaN, so the row's logprob and entropy come out NaN (non-finite
// weights or activations) instead of looking like a row with every token masked (m = −∞).
AGENTRL_SIMD_CLONES void row_stats(RowStats* out, const float* x, const uint8_t* mask, long V, float invTemp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  float mx = ninf;
  int nan = 0;
  if (mask) {
#pragma omp simd reduction(max : mx) reduction(| : nan)
    for (long v = 0; v < V; ++v) {
      const float z = mask[v] ? x[v] * invTemp : ninf;
      mx = z > mx ? z : mx;
      nan |= z != z;
    }
  } else {
#pragma omp simd reduction(max : mx) reduction(| : nan)
    for (long v = 0; v < V; ++v) {
      const float z = x[v] * invTemp;
      mx = z > mx ? z : mx;
      nan |= z != z;
    }
  }
  if (nan) mx = std::numeric_limits<float>::quiet_NaN();
  float sum = 0.0f, shifted = 0.0f;
  if (mx != ninf) {
    if (mask) {
#pragma omp simd reduction(+ : sum, shifted)
      for (long v = 0; v < V; ++v) {
        const float d = x[v] * invTemp - mx;
        const float e = mask[v] ? fast_exp(d) : 0.0f;
        sum += e;
        shifted += mask[v] ? e * d : 0.0f;
      }
    } else {
#pragma omp simd reduction(+ : sum, shifted)
      for (long v = 0; v < V; ++v) {
        const float d = x[v] * invTemp - mx;
        const float e = fast_exp(d);
        sum += e;
        shifted += e * d;
      }
    }
  }
  out->max = mx;
  out->sum = sum;
  out->shifted = shifted;
}

// dlogits row = invTemp·(dlogp·([v=t] − p_v) − dent·p_v·(z_v − E[z])), 0 where masked. No __restrict:
// dx may be x itself; each element is read before it is written.
AGENTRL_SIMD_CLONES void row_gradient(float* dx, const float* x, const uint8_t* mask, long V, float invTemp,
                                      float mx, float invSum, float meanShifted, float dlogp, float dent) {
  // z_v − E[z] = (z_v − m) − E[z − m]
  if (mask) {
    for (long v = 0; v < V; ++v) {
      const float d = x[v] * invTemp - mx;
      const float p = mask[v] ? fast_exp(d) * invSum : 0.0f;
      dx[v] = invTemp * (-dlogp * p - dent * p * (d - meanShifted));
    }
  } else {
    for (long v = 0; v < V; ++v) {
      const float d = x[v] * invTemp - mx;
      const float p = fast_exp(d) * invSum;
      dx[v] = invTemp * (-dlogp * p - dent * p * (d - meanShifted));
    }
  }
}

}  // namespace detail

void log_softmax_forward(int nt, float* logprobs, float* entropy, const float* logits, const int32_t* targets,
                         const uint8_t* mask, long N, long V, float invTemp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  parallel_for(threads_for(N * V, nt), N, Schedule::Static, [&](long n) {
    const long t = targets[n];
    if (t < 0) {
      logprobs[n] = 0.0f;
      entropy[n] = 0.0f;
      return;
    }
    const float* x = logits + n * V;
    const uint8_t* mk = mask ? mask + n * V : nullptr;
    detail::RowStats s;
    detail::row_stats(&s, x, mk, V, invTemp);
    if (s.max == ninf) {  // every token masked: no distribution, the target is forbidden
      logprobs[n] = ninf;
      entropy[n] = 0.0f;
      return;
    }
    const float logS = std::log(s.sum);
    logprobs[n] = (mk && !mk[t]) ? ninf : (x[t] * invTemp - s.max) - logS;
    entropy[n] = logS - s.shifted / s.sum;
  });
}

void log_softmax_backward(int nt, float* dlogits, const float* logits, const int32_t* targets,
                          const uint8_t* mask, const float* dlogp, const float* dent, long N, long V,
                          float invTemp) {
  const float ninf = -std::numeric_limits<float>::infinity();
  parallel_for(threads_for(N * V, nt), N, Schedule::Static, [&](long n) {
    const long t = targets[n];
    float* dx = dlogits + n * V;
    const float* x = logits + n * V;
    const uint8_t* mk = mask ? mask + n * V : nullptr;
    detail::RowStats s{ninf, 0.0f, 0.0f};
    if (t >= 0) detail::row_stats(&s, x, mk, V, invTemp);
    if (t < 0 || s.max == ninf) {
      for (long v = 0; v < V; ++v) dx[v] = 0.0f;
      return;
    }
    // A forbidden target has logprob −∞, a constant: its term contributes no gradient.
    const bool targetAllowed = !mk || mk[t];
    const float dlp = targetAllowed ? dlogp[n] : 0.0f;
    detail::row_gradient(dx, x, mk, V, invTemp, s.max, 1.0f / s.sum, s.shifted / s.sum, dlp, dent[n]);
    if (targetAllowed) dx[t] += invTemp * dlp;  // the [v = target] term
  });
}

}  // namespace agentrl

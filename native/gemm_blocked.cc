// Cache-blocked GEMM driver (the Goto/BLIS scheme) shared by every built-in micro-kernel.
//
// Packing copies op(A)/op(B) into contiguous, zero-padded micro-panels, which is what makes the four
// transA/transB combinations equally fast: the transpose happens once in the O(n²) copy, never in
// the O(n³) inner loop.
//
// Threading is built to survive a busy machine (other processes, or our own rollout workers, sharing
// the cores): the pool (thread_pool.h) first packs all of op(B) (one KC×N slab per KC step) into a
// shared buffer, then runs work items — an MC-row block × a column chunk of C — claimed one at a
// time. No static split and no team barrier, so a descheduled thread delays the others by at most
// one item (a static 2-way split measured 3–10× slower than one thread while another process ran).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "denormals.h"
#include "microkernel.h"
#include "parallel.h"

namespace agentrl {
namespace {

// 64-byte aligned scratch owned by the calling thread, grown on demand and reused across calls,
// so steady-state GEMMs never allocate. thread_local keeps concurrent callers (attention's per-head
// serial GEMMs, Node worker threads) from sharing a buffer.
struct AlignedScratch {
  float* data = nullptr;
  size_t capacity = 0;
  float* reserve(size_t floats) {
    if (floats > capacity) {
      std::free(data);
      size_t bytes = ((floats * sizeof(float) + 63) / 64) * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity = data ? floats : 0;
    }
    return data;
  }
  ~AlignedScratch() { std::free(data); }
};
thread_local AlignedScratch tls_scratch;

// out[k·W + c] = src[c·ld + k] for c < W, k < kc: a W-row strip of a row-major matrix, transposed
// into a packed panel. 4×4 SSE transposes (baseline on every x86-64 CPU) read 4 floats per row and
// write 4 per k, instead of one float per instruction; this is the packing of op(B) for NT
// products, the forward pass of every layer and batched decoding, where it is not amortised.
template <int W>
void transpose_pack(const float* src, long ld, long kc, float* out) {
  long k = 0;
#if defined(__SSE2__)
  static_assert(W % 4 == 0, "panel width must be a multiple of 4");
  for (; k + 4 <= kc; k += 4) {
    for (int c = 0; c < W; c += 4) {
      __m128 r0 = _mm_loadu_ps(src + (c + 0) * ld + k);
      __m128 r1 = _mm_loadu_ps(src + (c + 1) * ld + k);
      __m128 r2 = _mm_loadu_ps(src + (c + 2) * ld + k);
      __m128 r3 = _mm_loadu_ps(src + (c + 3) * ld + k);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(out + (k + 0) * W + c, r0);
      _mm_storeu_ps(out + (k + 1) * W + c, r1);
      _mm_storeu_ps(out + (k + 2) * W + c, r2);
      _mm_storeu_ps(out + (k + 3) * W + c, r3);
    }
  }
#endif
  for (; k < kc; ++k) {
    for (int c = 0; c < W; ++c) out[k * W + c] = src[c * ld + k];
  }
}

// Packs micro-panels [p0, p1) of the mc×kc block of op(A) starting at (i0, k0). Panel p holds rows
// i0 + p·MR … (+MR) in k-major order (dst[k·MR + r]); rows past mc are zero so edge tiles need no
// special case in the micro-kernel's inner loop.
template <int MR>
void pack_a(const float* A, long lda, bool transA, long i0, long k0, long mc, long kc, long p0, long p1,
            float* dst) {
  if (transA) {
    // op(A)(i,k) = A[k·lda + i]: row k of A holds all the block's i contiguously. k outermost, so
    // each source row is read once front to back (a micro-panel at a time would touch one cache
    // line and one page per k: ~10× slower when A is not in cache).
    for (long k = 0; k < kc; ++k) {
      const float* src = A + (k0 + k) * lda + i0;
      for (long p = p0; p < p1; ++p) {
        float* o = dst + p * MR * kc + k * MR;
        const int rows = static_cast<int>(std::min<long>(MR, mc - p * MR));
        const float* s = src + p * MR;
        int r = 0;
        for (; r < rows; ++r) o[r] = s[r];
        for (; r < MR; ++r) o[r] = 0.0f;
      }
    }
    return;
  }
  // op(A)(i,k) = A[i·lda + k]: MR sequential row streams per micro-panel, interleaved.
  for (long p = p0; p < p1; ++p) {
    float* out = dst + p * MR * kc;
    const long row = i0 + p * MR;
    const int rows = static_cast<int>(std::min<long>(MR, mc - p * MR));
    const float* src[MR];
    for (int r = 0; r < MR; ++r) src[r] = A + (row + std::min(r, rows - 1)) * lda + k0;
    for (long k = 0; k < kc; ++k) {
      float* o = out + k * MR;
      for (int r = 0; r < MR; ++r) o[r] = r < rows ? src[r][k] : 0.0f;
    }
  }
}

// Packs micro-panels [q0, q1) of the kc×nc panel of op(B) starting at (k0, j0): panel q holds
// columns j0 + q·NR … (+NR), dst[k·NR + c], columns past nc zero.
template <int NR>
void pack_b(const float* B, long ldb, bool transB, long k0, long j0, long kc, long nc, long q0, long q1,
            float* dst) {
  if (!transB) {
    // op(B)(k,j) = B[k·ldb + j]: row k holds the panels' columns contiguously; k outermost as in
    // pack_a's transposed case.
    for (long k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j0;
      for (long q = q0; q < q1; ++q) {
        float* o = dst + q * NR * kc + k * NR;
        const int cols = static_cast<int>(std::min<long>(NR, nc - q * NR));
        const float* s = src + q * NR;
        if (cols == NR) {
          std::memcpy(o, s, NR * sizeof(float));
        } else {
          int c = 0;
          for (; c < cols; ++c) o[c] = s[c];
          for (; c < NR; ++c) o[c] = 0.0f;
        }
      }
    }
    return;
  }
  for (long q = q0; q < q1; ++q) {
    float* out = dst + q * NR * kc;
    const long col = j0 + q * NR;
    const int cols = static_cast<int>(std::min<long>(NR, nc - q * NR));
    if (cols == NR) {
      transpose_pack<NR>(B + col * ldb + k0, ldb, kc, out);
    } else {
      // op(B)(k,j) = B[j·ldb + k]: NR sequential column streams, interleaved (edge panel).
      const float* src[NR];
      for (int c = 0; c < NR; ++c) src[c] = B + (col + std::min(c, cols - 1)) * ldb + k0;
      for (long k = 0; k < kc; ++k) {
        float* o = out + k * NR;
        for (int c = 0; c < NR; ++c) o[c] = c < cols ? src[c][k] : 0.0f;
      }
    }
  }
}

using PackAFn = void (*)(const float*, long, bool, long, long, long, long, long, long, float*);
using PackBFn = void (*)(const float*, long, bool, long, long, long, long, long, long, float*);

// Packers are specialised on the tile size so the per-k copy loops unroll completely.
PackAFn pack_a_for(int mr) {
  switch (mr) {
    case 4: return pack_a<4>;
    case 6: return pack_a<6>;
    case 8: return pack_a<8>;
    case 12: return pack_a<12>;
    case 14: return pack_a<14>;
    case 16: return pack_a<16>;
    default: std::abort();
  }
}
PackBFn pack_b_for(int nr) {
  switch (nr) {
    case 8: return pack_b<8>;
    case 16: return pack_b<16>;
    case 32: return pack_b<32>;
    case 48: return pack_b<48>;
    default: std::abort();
  }
}

inline long round_up(long x, long m) { return (x + m - 1) / m * m; }

// Packed op(B) slabs larger than this many floats (32 MB) are processed in several column ranges.
constexpr long kMaxPackedB = 8L << 20;
// op(A) is packed once up front (instead of per work item) when it fits in this many floats (32 MB).
constexpr long kMaxPackedA = 8L << 20;
thread_local AlignedScratch tls_packed_b;  // the calling thread's shared op(B) buffer
thread_local AlignedScratch tls_packed_a;  // the calling thread's shared op(A) buffer

}  // namespace

void gemm_blocked(const MicroKernel& mk, int threads, bool transA, bool transB, long M, long N, long K,
                  float alpha, const float* A, long lda, const float* B, long ldb, float beta, float* C,
                  long ldc) {
  const int MR = mk.mr, NR = mk.nr;
  const long MC = mk.mc, KC = mk.kc;  // MC is a multiple of MR
  const PackAFn packA = pack_a_for(MR);
  const PackBFn packB = pack_b_for(NR);

  // Tiny products cost less than handing work to the pool: run them on the calling thread.
  int nt = threads < 1 ? 1 : threads;
  if (2.0 * M * N * K < 2.0e6) nt = 1;

  // Column range [jc, jc + NCR) whose packed op(B) (K × NCR floats) fits the cap; usually all of N.
  const long NCR = std::max<long>(NR, std::min(round_up(N, NR), kMaxPackedB / K / NR * NR));
  const long nRanges = (N + NCR - 1) / NCR;
  float* Bbuf = tls_packed_b.reserve(static_cast<size_t>(K * std::min(round_up(N, NR), NCR)));
  if (!Bbuf) std::abort();  // cannot allocate the packing buffer: nothing sane to do

  // Work items are (MC-row block, column chunk). Few row blocks (small M) → split the columns too,
  // aiming for ≥ 4 items per thread so a slow thread cannot hold the others up for long.
  const long nmb = (M + MC - 1) / MC;
  const long chunksWanted = nt > 1 ? std::max<long>(1, (4L * nt + nmb - 1) / nmb) : 1;
  auto chunk_width = [&](long ncr) {
    const long panels = (ncr + NR - 1) / NR;
    const long want = std::min(panels, chunksWanted);
    return ((panels + want - 1) / want) * NR;
  };
  // With several chunks per row block, each A block would be packed once per chunk: pack op(A) once,
  // shared, instead (slab pc at Abuf + pc·Mr, panel p at + p·MR·kc).
  const long Mr = round_up(M, MR);
  const bool sharedA = chunksWanted > 1 && Mr * K <= kMaxPackedA;
  float* AbufShared = sharedA ? tls_packed_a.reserve(static_cast<size_t>(Mr * K)) : nullptr;
  if (sharedA && !AbufShared) std::abort();
  const long kBlocks = (K + KC - 1) / KC;

  for (long r = 0; r < nRanges; ++r) {
    const long jc = r * NCR, ncr = std::min(NCR, N - jc);
    const long Nr = round_up(ncr, NR), nq = Nr / NR;
    // Phase 1: pack op(B)[:, jc:jc+ncr] (slab pc at Bbuf + pc·Nr, panel q at + q·NR·kc) and, on the
    // first range, the shared op(A). A job is a group of micro-panels (~256 columns, or one MC block
    // of rows) so row-contiguous sources are read in long runs.
    const long qGroup = std::max<long>(1, 256 / NR), nqGroups = (nq + qGroup - 1) / qGroup;
    const long bJobs = kBlocks * nqGroups;
    const long np = Mr / MR, pGroup = MC / MR, npGroups = (np + pGroup - 1) / pGroup;
    const long aJobs = sharedA && r == 0 ? kBlocks * npGroups : 0;
    parallel_for_slots(nt, bJobs + aJobs, [&](long job, int) {
      if (job < bJobs) {
        const long pc = (job / nqGroups) * KC, q0 = (job % nqGroups) * qGroup, kc = std::min(KC, K - pc);
        packB(B, ldb, transB, pc, jc, kc, ncr, q0, std::min(nq, q0 + qGroup), Bbuf + pc * Nr);
      } else {
        job -= bJobs;
        const long pc = (job / npGroups) * KC, p0 = (job % npGroups) * pGroup, kc = std::min(KC, K - pc);
        packA(A, lda, transA, 0, pc, M, kc, p0, std::min(np, p0 + pGroup), AbufShared + pc * Mr);
      }
    });
    // Phase 2: compute items (an MC-row block × a column chunk of C). The pool returns when every
    // item is done, which is also what the next range's repacking of Bbuf needs.
    const long chunk = chunk_width(ncr), nch = (ncr + chunk - 1) / chunk;
    parallel_for_slots(nt, nmb * nch, [&](long item, int) {
      const long ic = (item / nch) * MC, mc = std::min(MC, M - ic), npa = (mc + MR - 1) / MR;
      const long c0 = (item % nch) * chunk, c1 = std::min(c0 + chunk, ncr);
      // Private A block (MC × KC) for the unshared case: the executing thread's own, reused across calls.
      float* Aprivate = nullptr;
      if (!sharedA) {
        Aprivate = tls_scratch.reserve(static_cast<size_t>(round_up(std::min(M, MC), MR) * std::min(K, KC)));
        if (!Aprivate) std::abort();
      }
      for (long pc = 0; pc < K; pc += KC) {
        const long kc = std::min(KC, K - pc);
        // Only the first KC slice applies the caller's beta; later slices accumulate.
        const float betaEff = pc == 0 ? beta : 1.0f;
        const float* Ablock;
        if (sharedA) {
          Ablock = AbufShared + pc * Mr + ic * kc;  // ic is a multiple of MR: panel ic/MR
        } else {
          packA(A, lda, transA, ic, pc, mc, kc, 0, npa, Aprivate);
          Ablock = Aprivate;
        }
        const float* slab = Bbuf + pc * Nr;
        for (long q = c0 / NR; q * NR < c1; ++q) {
          const int nr = static_cast<int>(std::min<long>(NR, c1 - q * NR));
          for (long p = 0; p < npa; ++p) {
            const int mr = static_cast<int>(std::min<long>(MR, mc - p * MR));
            mk.fn(kc, Ablock + p * MR * kc, slab + q * NR * kc, C + (ic + p * MR) * ldc + jc + q * NR,
                  ldc, mr, nr, alpha, betaEff);
          }
        }
      }
    });
  }
}

}  // namespace agentrl

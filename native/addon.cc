// N-API bindings: one JS function per Backend kernel. Typed-array views are passed through without
// copies (their data pointers include byteOffset); every call checks argument types and buffer
// lengths before touching memory, and runs with subnormal floats flushed (denormals.h). The first argument of every kernel is the thread count (and, for
// sgemm, the GEMM path before it) so several backends with different settings can coexist.
#include <napi.h>

#include <string>

#include "args.h"
#include "cpu.h"
#include "denormals.h"
#include "gemm.h"
#include "kernels.h"

namespace agentrl {
namespace {

double product(double a, double b) { return a * b; }

int threads_arg(const Args& a, size_t i) {
  const long t = a.size(i, "threads");
  if (t < 1) a.range_error("threads must be ≥ 1");
  return clamp_threads(static_cast<int>(t));
}

// Elements a row-major rows×cols matrix with row stride ld occupies (0 when empty).
double matrix_extent(long rows, long cols, long ld) {
  return rows == 0 || cols == 0 ? 0.0 : static_cast<double>(rows - 1) * ld + cols;
}

// info() → { paths, defaultPath, openblasError, avx512, avx2, cpus }
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array paths = Napi::Array::New(env);
  uint32_t n = 0;
  for (GemmPath p : {GemmPath::OpenBLAS, GemmPath::Avx512, GemmPath::Avx2, GemmPath::Scalar}) {
    if (gemm_path_available(p)) paths.Set(n++, Napi::String::New(env, gemm_path_name(p)));
  }
  out.Set("paths", paths);
  out.Set("defaultPath", Napi::String::New(env, gemm_path_name(gemm_default_path())));
  out.Set("openblasError", Napi::String::New(env, openblas_load_error()));
  out.Set("avx512", Napi::Boolean::New(env, cpu_has_avx512()));
  out.Set("avx2", Napi::Boolean::New(env, cpu_has_avx2()));
  out.Set("cpus", Napi::Number::New(env, cpu_count()));
  return out;
}

// sgemm(path, threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
void Sgemm(const Napi::CallbackInfo& info) {
  Args a(info, "sgemm", 15);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  if (!info[0].IsString()) a.type_error("path must be a string");
  const std::string pathName = info[0].As<Napi::String>().Utf8Value();
  GemmPath path;
  if (!gemm_path_from_name(pathName, &path) || !gemm_path_available(path)) {
    a.range_error("GEMM path '" + pathName + "' is not available on this machine");
  }
  const int threads = threads_arg(a, 1);
  const bool tA = a.boolean(2, "transA"), tB = a.boolean(3, "transB");
  const long M = a.size(4, "M"), N = a.size(5, "N"), K = a.size(6, "K");
  const float alpha = static_cast<float>(a.number(7, "alpha"));
  const long lda = a.size(9, "lda"), ldb = a.size(11, "ldb"), ldc = a.size(14, "ldc");
  const float beta = static_cast<float>(a.number(12, "beta"));
  const long aRows = tA ? K : M, aCols = tA ? M : K;
  const long bRows = tB ? N : K, bCols = tB ? K : N;
  if (lda < std::max(1L, aCols)) a.range_error("lda (" + std::to_string(lda) + ") must be ≥ the stored A width " + std::to_string(aCols));
  if (ldb < std::max(1L, bCols)) a.range_error("ldb (" + std::to_string(ldb) + ") must be ≥ the stored B width " + std::to_string(bCols));
  if (ldc < std::max(1L, N)) a.range_error("ldc (" + std::to_string(ldc) + ") must be ≥ N " + std::to_string(N));
  const bool product_needed = M > 0 && N > 0 && K > 0 && alpha != 0.0f;
  const float* A = a.f32(8, "A", product_needed ? matrix_extent(aRows, aCols, lda) : 0);
  const float* B = a.f32(10, "B", product_needed ? matrix_extent(bRows, bCols, ldb) : 0);
  float* C = a.f32(13, "C", matrix_extent(M, N, ldc));
  sgemm(path, threads, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Token ids index rows of wte: one out-of-range id would read or write outside it.
void check_tokens(const Args& a, const int32_t* tokens, long n, long vocab, const char* name) {
  for (long i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      a.range_error(std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                    " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
}

long vocab_of(const Napi::CallbackInfo& info, size_t i, long C) {
  return C > 0 ? static_cast<long>(info[i].As<Napi::Float32Array>().ElementLength()) / C : 0;
}

// embedForward(threads, out, tokens, wte, wpe|null, B, T, C)
void EmbedForward(const Napi::CallbackInfo& info) {
  Args a(info, "embedForward", 8);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(5, "B"), T = a.size(6, "T"), C = a.size(7, "C");
  float* out = a.f32(1, "out", product(B * T, C));
  const int32_t* tokens = a.i32(2, "tokens", B * T);
  const float* wte = a.f32(3, "wte", C);
  const float* wpe = a.f32(4, "wpe", product(T, C), true);
  check_tokens(a, tokens, B * T, vocab_of(info, 3, C), "tokens");
  embed_forward(nt, out, tokens, wte, wpe, B, T, C);
}

// embedBackward(threads, dwte, dwpe|null, dout, tokens, B, T, C)
void EmbedBackward(const Napi::CallbackInfo& info) {
  Args a(info, "embedBackward", 8);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(5, "B"), T = a.size(6, "T"), C = a.size(7, "C");
  float* dwte = a.f32(1, "dwte", C);
  float* dwpe = a.f32(2, "dwpe", product(T, C), true);
  const float* dout = a.f32(3, "dout", product(B * T, C));
  const int32_t* tokens = a.i32(4, "tokens", B * T);
  check_tokens(a, tokens, B * T, vocab_of(info, 1, C), "tokens");
  embed_backward(nt, dwte, dwpe, dout, tokens, B, T, C);
}

// layernormForward(threads, out, mean, rstd, inp, weight, bias, N, C, eps)
void LayernormForward(const Napi::CallbackInfo& info) {
  Args a(info, "layernormForward", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(7, "N"), C = a.size(8, "C");
  const float eps = static_cast<float>(a.number(9, "eps"));
  layernorm_forward(nt, a.f32(1, "out", product(N, C)), a.f32(2, "mean", N), a.f32(3, "rstd", N),
                    a.f32(4, "inp", product(N, C)), a.f32(5, "weight", C), a.f32(6, "bias", C), N, C, eps);
}

// layernormBackward(threads, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C)
void LayernormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "layernormBackward", 11);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(9, "N"), C = a.size(10, "C");
  layernorm_backward(nt, a.f32(1, "dinp", product(N, C)), a.f32(2, "dweight", C), a.f32(3, "dbias", C),
                     a.f32(4, "dout", product(N, C)), a.f32(5, "inp", product(N, C)), a.f32(6, "weight", C),
                     a.f32(7, "mean", N), a.f32(8, "rstd", N), N, C);
}

// rmsnormForward(threads, out, rstd, inp, weight, N, C, eps)
void RmsnormForward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormForward", 8);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(5, "N"), C = a.size(6, "C");
  const float eps = static_cast<float>(a.number(7, "eps"));
  rmsnorm_forward(nt, a.f32(1, "out", product(N, C)), a.f32(2, "rstd", N), a.f32(3, "inp", product(N, C)),
                  a.f32(4, "weight", C), N, C, eps);
}

// rmsnormBackward(threads, dinp, dweight, dout, inp, weight, rstd, N, C)
void RmsnormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormBackward", 9);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(7, "N"), C = a.size(8, "C");
  rmsnorm_backward(nt, a.f32(1, "dinp", product(N, C)), a.f32(2, "dweight", C), a.f32(3, "dout", product(N, C)),
                   a.f32(4, "inp", product(N, C)), a.f32(5, "weight", C), a.f32(6, "rstd", N), N, C);
}

// geluForward(threads, out, inp, n)
void GeluForward(const Napi::CallbackInfo& info) {
  Args a(info, "geluForward", 4);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(3, "n");
  gelu_forward(nt, a.f32(1, "out", n), a.f32(2, "inp", n), n);
}

// geluBackward(threads, dinp, inp, dout, n)
void GeluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "geluBackward", 5);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(4, "n");
  gelu_backward(nt, a.f32(1, "dinp", n), a.f32(2, "inp", n), a.f32(3, "dout", n), n);
}

void check_heads(const Args& a, long C, long NH) {
  if (NH < 1 || C % NH != 0) a.range_error("C (" + std::to_string(C) + ") must be a positive multiple of NH (" + std::to_string(NH) + ")");
}

// rope(threads, qkv, pos0, B, T, C, NH, base, inverse)
void Rope(const Napi::CallbackInfo& info) {
  Args a(info, "rope", 9);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(3, "B"), T = a.size(4, "T"), C = a.size(5, "C"), NH = a.size(6, "NH");
  check_heads(a, C, NH);
  if ((C / NH) % 2 != 0) a.range_error("rotary embeddings need an even head size, got " + std::to_string(C / NH));
  const double base = a.number(7, "base");
  const bool inverse = a.boolean(8, "inverse");
  float* qkv = a.f32(1, "qkv", product(B * T, 3 * C));
  const int32_t* pos0 = a.i32(2, "pos0", B);
  rope(nt, qkv, pos0, B, T, C, NH, base, inverse);
}

// attentionForward(threads, out, lse, qkv, B, T, C, NH)
void AttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionForward", 8);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(4, "B"), T = a.size(5, "T"), C = a.size(6, "C"), NH = a.size(7, "NH");
  check_heads(a, C, NH);
  attention_forward(nt, a.f32(1, "out", product(B * T, C)), a.f32(2, "lse", product(B * NH, T)),
                    a.f32(3, "qkv", product(B * T, 3 * C)), B, T, C, NH);
}

// attentionBackward(threads, dqkv, dout, qkv, lse, B, T, C, NH)
void AttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackward", 9);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(5, "B"), T = a.size(6, "T"), C = a.size(7, "C"), NH = a.size(8, "NH");
  check_heads(a, C, NH);
  attention_backward(nt, a.f32(1, "dqkv", product(B * T, 3 * C)), a.f32(2, "dout", product(B * T, C)),
                     a.f32(3, "qkv", product(B * T, 3 * C)), a.f32(4, "lse", product(B * NH, T)), B, T, C, NH);
}

// attentionDecode(threads, out, q, kCache, vCache, lens, B, C, NH, maxT)
void AttentionDecode(const Napi::CallbackInfo& info) {
  Args a(info, "attentionDecode", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(6, "B"), C = a.size(7, "C"), NH = a.size(8, "NH"), maxT = a.size(9, "maxT");
  check_heads(a, C, NH);
  const int32_t* lens = a.i32(5, "lens", B);
  for (long b = 0; b < B; ++b) {
    if (lens[b] < 0 || lens[b] > maxT) a.range_error("lens[" + std::to_string(b) + "] = " + std::to_string(lens[b]) + " is outside [0, maxT=" + std::to_string(maxT) + "]");
  }
  const double cache = product(B * maxT, C);
  attention_decode(nt, a.f32(1, "out", product(B, C)), a.f32(2, "q", product(B, C)), a.f32(3, "kCache", cache),
                   a.f32(4, "vCache", cache), lens, B, C, NH, maxT);
}

// ---- open-weight architectures (grouped-query attention, scaled RoPE, SwiGLU, per-head RMSNorm)

// Head counts of the grouped-query layout: every q head must map to one kv head.
void check_gqa(const Args& a, long NH, long NKV, long hd) {
  if (NH < 1 || NKV < 1 || NH % NKV != 0) {
    a.range_error("NH (" + std::to_string(NH) + " query heads) must be a positive multiple of NKV (" + std::to_string(NKV) + " key/value heads)");
  }
  if (hd < 1) a.range_error("head size hd must be ≥ 1");
}

// Rows of `width` floats, `stride` apart (stride ≥ width: the heads sit at the start of each row).
void check_stride(const Args& a, long stride, long width, const char* what) {
  if (stride < width) a.range_error("rowStride (" + std::to_string(stride) + ") must be ≥ " + what + " (" + std::to_string(width) + ")");
}

// Args has no Float64Array accessor: the same checks, for the RoPE frequency table.
const double* f64_arg(const Napi::CallbackInfo& info, const Args& a, size_t i, const char* name, double need) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    a.type_error(std::string(name) + " must be a Float64Array");
  }
  Napi::Float64Array arr = v.As<Napi::Float64Array>();
  if (static_cast<double>(arr.ElementLength()) < need) {
    a.range_error(std::string(name) + " has " + std::to_string(arr.ElementLength()) + " elements but the shape needs " +
                  std::to_string(static_cast<long long>(need)) + " (check the shape arguments and the buffer size)");
  }
  return arr.Data();
}

// gqaAttentionForward(threads, out, lse, qkv, B, T, NH, NKV, hd)
void GqaAttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "gqaAttentionForward", 9);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(4, "B"), T = a.size(5, "T"), NH = a.size(6, "NH"), NKV = a.size(7, "NKV"), hd = a.size(8, "hd");
  check_gqa(a, NH, NKV, hd);
  const double QKV = static_cast<double>(NH + 2 * NKV) * hd;
  gqa_attention_forward(nt, a.f32(1, "out", product(B * T, NH * hd)), a.f32(2, "lse", product(B * NH, T)),
                        a.f32(3, "qkv", product(B * T, QKV)), B, T, NH, NKV, hd);
}

// gqaAttentionBackward(threads, dqkv, dout, qkv, lse, B, T, NH, NKV, hd)
void GqaAttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "gqaAttentionBackward", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(5, "B"), T = a.size(6, "T"), NH = a.size(7, "NH"), NKV = a.size(8, "NKV"), hd = a.size(9, "hd");
  check_gqa(a, NH, NKV, hd);
  const double QKV = static_cast<double>(NH + 2 * NKV) * hd;
  gqa_attention_backward(nt, a.f32(1, "dqkv", product(B * T, QKV)), a.f32(2, "dout", product(B * T, NH * hd)),
                         a.f32(3, "qkv", product(B * T, QKV)), a.f32(4, "lse", product(B * NH, T)), B, T, NH, NKV, hd);
}

// gqaAttentionDecode(threads, out, q, kCache, vCache, lens, B, NH, NKV, hd, maxT)
void GqaAttentionDecode(const Napi::CallbackInfo& info) {
  Args a(info, "gqaAttentionDecode", 11);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long B = a.size(6, "B"), NH = a.size(7, "NH"), NKV = a.size(8, "NKV"), hd = a.size(9, "hd"), maxT = a.size(10, "maxT");
  check_gqa(a, NH, NKV, hd);
  const int32_t* lens = a.i32(5, "lens", B);
  for (long b = 0; b < B; ++b) {
    if (lens[b] < 0 || lens[b] > maxT) a.range_error("lens[" + std::to_string(b) + "] = " + std::to_string(lens[b]) + " is outside [0, maxT=" + std::to_string(maxT) + "]");
  }
  const double cache = product(B * maxT, NKV * hd);
  gqa_attention_decode(nt, a.f32(1, "out", product(B, NH * hd)), a.f32(2, "q", product(B, NH * hd)),
                       a.f32(3, "kCache", cache), a.f32(4, "vCache", cache), lens, B, NH, NKV, hd, maxT);
}

// ropeFreqs(threads, x, rowStride, pos0, B, T, nHeads, hd, invFreq, inverse)
void RopeFreqs(const Napi::CallbackInfo& info) {
  Args a(info, "ropeFreqs", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long rowStride = a.size(2, "rowStride"), B = a.size(4, "B"), T = a.size(5, "T"), nHeads = a.size(6, "nHeads"),
             hd = a.size(7, "hd");
  if (hd < 2 || hd % 2 != 0) a.range_error("rotary embeddings need a positive even head size hd, got " + std::to_string(hd));
  check_stride(a, rowStride, nHeads * hd, "nHeads·hd");
  const bool inverse = a.boolean(9, "inverse");
  float* x = a.f32(1, "x", matrix_extent(B * T, nHeads * hd, rowStride));
  const int32_t* pos0 = a.i32(3, "pos0", B);
  const double* invFreq = f64_arg(info, a, 8, "invFreq", static_cast<double>(hd / 2));
  rope_freqs(nt, x, rowStride, pos0, B, T, nHeads, hd, invFreq, inverse);
}

// swigluForward(threads, out, inp, N, I)
void SwigluForward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluForward", 5);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(3, "N"), I = a.size(4, "I");
  swiglu_forward(nt, a.f32(1, "out", product(N, I)), a.f32(2, "inp", product(N, 2.0 * I)), N, I);
}

// swigluBackward(threads, dinp, inp, dout, N, I)
void SwigluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluBackward", 6);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(4, "N"), I = a.size(5, "I");
  swiglu_backward(nt, a.f32(1, "dinp", product(N, 2.0 * I)), a.f32(2, "inp", product(N, 2.0 * I)),
                  a.f32(3, "dout", product(N, I)), N, I);
}

// headRmsnormForward(threads, x, saved, rstd, weight, N, rowStride, nHeads, hd, eps)
void HeadRmsnormForward(const Napi::CallbackInfo& info) {
  Args a(info, "headRmsnormForward", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(5, "N"), rowStride = a.size(6, "rowStride"), nHeads = a.size(7, "nHeads"), hd = a.size(8, "hd");
  const float eps = static_cast<float>(a.number(9, "eps"));
  check_stride(a, rowStride, nHeads * hd, "nHeads·hd");
  head_rmsnorm_forward(nt, a.f32(1, "x", matrix_extent(N, nHeads * hd, rowStride)), a.f32(2, "saved", product(N, nHeads * hd)),
                       a.f32(3, "rstd", product(N, nHeads)), a.f32(4, "weight", hd), N, rowStride, nHeads, hd, eps);
}

// headRmsnormBackward(threads, dx, dweight, saved, weight, rstd, N, rowStride, nHeads, hd)
void HeadRmsnormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "headRmsnormBackward", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(6, "N"), rowStride = a.size(7, "rowStride"), nHeads = a.size(8, "nHeads"), hd = a.size(9, "hd");
  check_stride(a, rowStride, nHeads * hd, "nHeads·hd");
  head_rmsnorm_backward(nt, a.f32(1, "dx", matrix_extent(N, nHeads * hd, rowStride)), a.f32(2, "dweight", hd),
                        a.f32(3, "saved", product(N, nHeads * hd)), a.f32(4, "weight", hd), a.f32(5, "rstd", product(N, nHeads)),
                        N, rowStride, nHeads, hd);
}

void check_targets(const Args& a, const int32_t* targets, long N, long V) {
  for (long n = 0; n < N; ++n) {
    if (targets[n] >= V) a.range_error("targets[" + std::to_string(n) + "] = " + std::to_string(targets[n]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  }
}

// logSoftmaxForward(threads, logprobs, entropy, logits, targets, mask|null, N, V, invTemp)
void LogSoftmaxForward(const Napi::CallbackInfo& info) {
  Args a(info, "logSoftmaxForward", 9);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(6, "N"), V = a.size(7, "V");
  const float invTemp = static_cast<float>(a.number(8, "invTemp"));
  const int32_t* targets = a.i32(4, "targets", N);
  check_targets(a, targets, N, V);
  log_softmax_forward(nt, a.f32(1, "logprobs", N), a.f32(2, "entropy", N), a.f32(3, "logits", product(N, V)),
                      targets, a.u8(5, "mask", product(N, V), true), N, V, invTemp);
}

// logSoftmaxBackward(threads, dlogits, logits, targets, mask|null, dlogp, dent, N, V, invTemp)
void LogSoftmaxBackward(const Napi::CallbackInfo& info) {
  Args a(info, "logSoftmaxBackward", 10);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long N = a.size(7, "N"), V = a.size(8, "V");
  const float invTemp = static_cast<float>(a.number(9, "invTemp"));
  const int32_t* targets = a.i32(3, "targets", N);
  check_targets(a, targets, N, V);
  log_softmax_backward(nt, a.f32(1, "dlogits", product(N, V)), a.f32(2, "logits", product(N, V)), targets,
                       a.u8(4, "mask", product(N, V), true), a.f32(5, "dlogp", N), a.f32(6, "dent", N), N, V,
                       invTemp);
}

// add(threads, out, a, b, n)
void Add(const Napi::CallbackInfo& info) {
  Args a(info, "add", 5);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(4, "n");
  add(nt, a.f32(1, "out", n), a.f32(2, "a", n), a.f32(3, "b", n), n);
}

// addBias(threads, out, bias, rows, cols)
void AddBias(const Napi::CallbackInfo& info) {
  Args a(info, "addBias", 5);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long rows = a.size(3, "rows"), cols = a.size(4, "cols");
  add_bias(nt, a.f32(1, "out", product(rows, cols)), a.f32(2, "bias", cols), rows, cols);
}

// biasBackward(threads, dbias, dout, rows, cols)
void BiasBackward(const Napi::CallbackInfo& info) {
  Args a(info, "biasBackward", 5);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long rows = a.size(3, "rows"), cols = a.size(4, "cols");
  bias_backward(nt, a.f32(1, "dbias", cols), a.f32(2, "dout", product(rows, cols)), rows, cols);
}

// sumSquares(threads, x, n) → number
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Args a(info, "sumSquares", 3);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(2, "n");
  return Napi::Number::New(info.Env(), sum_squares(nt, a.f32(1, "x", n), n));
}

// scale(threads, x, s, n)
void Scale(const Napi::CallbackInfo& info) {
  Args a(info, "scale", 4);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(3, "n");
  scale(nt, a.f32(1, "x", n), static_cast<float>(a.number(2, "s")), n);
}

// adamw(threads, param, grad, m, v, n, lr, beta1, beta2, eps, wd, t)
void Adamw(const Napi::CallbackInfo& info) {
  Args a(info, "adamw", 12);
  ScopedFlushDenormals flush;  // see denormals.h; restored before returning to JS
  const int nt = threads_arg(a, 0);
  const long n = a.size(5, "n");
  const double t = a.number(11, "t");
  if (!(t >= 1)) a.range_error("step t must be ≥ 1 (bias correction divides by 1 − β^t)");
  adamw(nt, a.f32(1, "param", n), a.f32(2, "grad", n), a.f32(3, "m", n), a.f32(4, "v", n), n,
        a.number(6, "lr"), a.number(7, "beta1"), a.number(8, "beta2"), a.number(9, "eps"),
        a.number(10, "wd"), t);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("embedForward", Napi::Function::New(env, EmbedForward, "embedForward"));
  exports.Set("embedBackward", Napi::Function::New(env, EmbedBackward, "embedBackward"));
  exports.Set("layernormForward", Napi::Function::New(env, LayernormForward, "layernormForward"));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward, "layernormBackward"));
  exports.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward, "rmsnormForward"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward, "rmsnormBackward"));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward, "geluForward"));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward, "geluBackward"));
  exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("attentionDecode", Napi::Function::New(env, AttentionDecode, "attentionDecode"));
  exports.Set("gqaAttentionForward", Napi::Function::New(env, GqaAttentionForward, "gqaAttentionForward"));
  exports.Set("gqaAttentionBackward", Napi::Function::New(env, GqaAttentionBackward, "gqaAttentionBackward"));
  exports.Set("gqaAttentionDecode", Napi::Function::New(env, GqaAttentionDecode, "gqaAttentionDecode"));
  exports.Set("ropeFreqs", Napi::Function::New(env, RopeFreqs, "ropeFreqs"));
  exports.Set("swigluForward", Napi::Function::New(env, SwigluForward, "swigluForward"));
  exports.Set("swigluBackward", Napi::Function::New(env, SwigluBackward, "swigluBackward"));
  exports.Set("headRmsnormForward", Napi::Function::New(env, HeadRmsnormForward, "headRmsnormForward"));
  exports.Set("headRmsnormBackward", Napi::Function::New(env, HeadRmsnormBackward, "headRmsnormBackward"));
  exports.Set("logSoftmaxForward", Napi::Function::New(env, LogSoftmaxForward, "logSoftmaxForward"));
  exports.Set("logSoftmaxBackward", Napi::Function::New(env, LogSoftmaxBackward, "logSoftmaxBackward"));
  exports.Set("add", Napi::Function::New(env, Add, "add"));
  exports.Set("addBias", Napi::Function::New(env, AddBias, "addBias"));
  exports.Set("biasBackward", Napi::Function::New(env, BiasBackward, "biasBackward"));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares, "sumSquares"));
  exports.Set("scale", Napi::Function::New(env, Scale, "scale"));
  exports.Set("adamw", Napi::Function::New(env, Adamw, "adamw"));
  return exports;
}

}  // namespace
}  // namespace agentrl

// NODE_API_MODULE needs an unqualified function name.
static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return agentrl::Init(env, exports); }

NODE_API_MODULE(agentrl_native, InitModule)

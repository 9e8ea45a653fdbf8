// The non-GEMM kernels of the Backend contract (src/engine/backend.ts), on raw pointers. Every
// function takes `nt`, the number of threads to use (thread_pool.h), and follows the semantic comments in
// backend.ts (which outputs are overwritten and which are accumulated).
#pragma once

#include <cstdint>

namespace agentrl {

void embed_forward(int nt, float* out, const int32_t* tokens, const float* wte, const float* wpe, long B,
                   long T, long C);
void embed_backward(int nt, float* dwte, float* dwpe, const float* dout, const int32_t* tokens, long B,
                    long T, long C);

void layernorm_forward(int nt, float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, long N, long C, float eps);
void layernorm_backward(int nt, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd, long N,
                        long C);
void rmsnorm_forward(int nt, float* out, float* rstd, const float* inp, const float* weight, long N, long C,
                     float eps);
void rmsnorm_backward(int nt, float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, long N, long C);

void gelu_forward(int nt, float* out, const float* inp, long n);
void gelu_backward(int nt, float* dinp, const float* inp, const float* dout, long n);

void rope(int nt, float* qkv, const int32_t* pos0, long B, long T, long C, long NH, double base, bool inverse);

void attention_forward(int nt, float* out, float* lse, const float* qkv, long B, long T, long C, long NH);
void attention_backward(int nt, float* dqkv, const float* dout, const float* qkv, const float* lse, long B,
                        long T, long C, long NH);
void attention_decode(int nt, float* out, const float* q, const float* kCache, const float* vCache,
                      const int32_t* lens, long B, long C, long NH, long maxT);

// Open-weight architectures (Llama / Qwen2 / Qwen3). qkv rows are [q (NH·hd) | k (NKV·hd) | v (NKV·hd)];
// q head h reads kv head h / (NH/NKV). With NKV = NH and hd = C/NH these are the kernels above (which
// call them).
void gqa_attention_forward(int nt, float* out, float* lse, const float* qkv, long B, long T, long NH, long NKV,
                           long hd);
void gqa_attention_backward(int nt, float* dqkv, const float* dout, const float* qkv, const float* lse, long B,
                            long T, long NH, long NKV, long hd);
void gqa_attention_decode(int nt, float* out, const float* q, const float* kCache, const float* vCache,
                          const int32_t* lens, long B, long NH, long NKV, long hd, long maxT);
void rope_freqs(int nt, float* x, long rowStride, const int32_t* pos0, long B, long T, long nHeads, long hd,
                const double* invFreq, bool inverse);
void swiglu_forward(int nt, float* out, const float* inp, long N, long I);
void swiglu_backward(int nt, float* dinp, const float* inp, const float* dout, long N, long I);
void head_rmsnorm_forward(int nt, float* x, float* saved, float* rstd, const float* weight, long N, long rowStride,
                          long nHeads, long hd, float eps);
void head_rmsnorm_backward(int nt, float* dx, float* dweight, const float* saved, const float* weight,
                           const float* rstd, long N, long rowStride, long nHeads, long hd);

void log_softmax_forward(int nt, float* logprobs, float* entropy, const float* logits, const int32_t* targets,
                         const uint8_t* mask, long N, long V, float invTemp);
void log_softmax_backward(int nt, float* dlogits, const float* logits, const int32_t* targets,
                          const uint8_t* mask, const float* dlogp, const float* dent, long N, long V,
                          float invTemp);

void add(int nt, float* out, const float* a, const float* b, long n);
void add_bias(int nt, float* out, const float* bias, long rows, long cols);
void bias_backward(int nt, float* dbias, const float* dout, long rows, long cols);
double sum_squares(int nt, const float* x, long n);
void scale(int nt, float* x, float s, long n);
void adamw(int nt, float* param, const float* grad, float* m, float* v, long n, double lr, double beta1,
           double beta2, double eps, double wd, double t);

}  // namespace agentrl

{
  "targets": [
    {
      "target_name": "agentrl_native",
      "sources": [
        "native/addon.cc",
        "native/cpu.cc",
        "native/thread_pool.cc",
        "native/gemm.cc",
        "native/gemm_blocked.cc",
        "native/gemm_avx512.cc",
        "native/gemm_avx2.cc",
        "native/gemm_scalar.cc",
        "native/openblas.cc",
        "native/kernels_embed_norm.cc",
        "native/kernels_elementwise.cc",
        "native/kernels_rope.cc",
        "native/kernels_attention.cc",
        "native/kernels_softmax.cc",
        "native/kernels_swiglu.cc",
        "native/kernels_head_norm.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-fopenmp-simd", "-pthread", "-fno-math-errno", "-fno-trapping-math"],
      "cflags_cc": ["-O3", "-fopenmp-simd", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-Wall"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}

"""PyTorch CPU reference for bench/engine.ts: the same decoder-only transformer (learned positions,
LayerNorm, GELU-tanh MLP x4, tied embeddings, biases), the same train step (cross-entropy over all
positions, AdamW, grad clip 1.0) and KV-cache batched sampling.

The peer gets its best setup on this CPU, never a handicap:
- threads pinned before torch loads: OMP/OPENBLAS/MKL_NUM_THREADS = --threads, torch.set_num_threads;
  OMP_WAIT_POLICY=PASSIVE (PyTorch's best setting on the shared 2-core machine: spinning
  OpenMP/OpenBLAS pools cost it 1.2-3x);
- ISA pinned: ATEN_CPU_CAPABILITY=avx512 on an AVX-512 CPU (torch 1.13 otherwise dispatches AVX2);
  OpenBLAS picks this CPU's own kernels (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset; the dev machine's
  OPENBLAS_CORETYPE=Haswell was slower for it in a comparison here) unless --openblas-coretype says otherwise;
- sampling under torch.inference_mode() with a preallocated KV cache (fixed-size [B, heads, ctx,
  head] tensors written in place per step, as an inference engine does; no torch.cat growth),
  preallocated position ids and causal mask; decode steps (one new token) skip the mask.
The JSON output records the torch version, its build config (BLAS) and parallel info, the CPU
capability (ISA) it dispatches to, the thread settings and the OPENBLAS_CORETYPE in effect.

Run with Debian's interpreter:
  /usr/bin/python3 bench/torch_reference.py --threads 2 [--repeats 5]   # one JSON line: runs + medians
  /usr/bin/python3 bench/torch_reference.py --threads 2 --serve         # for bench/engine.ts (interleaved)
In --serve mode it prints one JSON line {"ready": ..., "info": ...} after warming up, then answers
each stdin line {"op": "train", "steps": N} / {"op": "sample"} with one JSON line, until EOF or
{"op": "quit"}.
"""
import argparse, json, math, os, statistics, sys, time

from torch_setup import SETUP_VARS, add_setup_args, cpu_capability, cpu_flags, loaded_blas, pin_before_torch

ap = argparse.ArgumentParser()
add_setup_args(ap)
ap.add_argument("--vocab", type=int, default=1024)
ap.add_argument("--ctx", type=int, default=128)
ap.add_argument("--width", type=int, default=256)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--train-steps", type=int, default=5, help="train steps per repeat")
ap.add_argument("--sample-batch", type=int, default=64)
ap.add_argument("--prompt", type=int, default=16)
ap.add_argument("--new-tokens", type=int, default=112)
ap.add_argument("--repeats", type=int, default=5, help="standalone mode: repeats of each measurement")
ap.add_argument("--serve", action="store_true", help="answer train/sample requests on stdin (bench/engine.ts)")
a = ap.parse_args()

pin_before_torch(a)  # before torch (libgomp, OpenBLAS) loads: they read it once

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Block(nn.Module):
    def __init__(s, C, NH):
        super().__init__()
        s.NH = NH
        s.ln1 = nn.LayerNorm(C)
        s.qkv = nn.Linear(C, 3 * C)
        s.proj = nn.Linear(C, C)
        s.ln2 = nn.LayerNorm(C)
        s.fc = nn.Linear(C, 4 * C)
        s.fcproj = nn.Linear(4 * C, C)

    def heads(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(x).split(C, dim=2)
        sh = lambda t: t.view(B, T, s.NH, C // s.NH).transpose(1, 2)
        return sh(q), sh(k), sh(v)

    def merge(s, y):
        B, NH, T, hs = y.shape
        return s.proj(y.transpose(1, 2).reshape(B, T, NH * hs))

    def attn_train(s, x, masked_out):
        q, k, v = s.heads(x)
        T = q.size(2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(masked_out[:T, :T], float("-inf")).softmax(dim=-1)
        return s.merge(att @ v)

    def attn_cached(s, x, kc, vc, pos, masked_out):
        """Writes this step's keys/values into the preallocated cache in place, attends over [0, pos+T)."""
        q, k, v = s.heads(x)
        B, T = x.size(0), x.size(1)
        kc[:B, :, pos:pos + T].copy_(k)
        vc[:B, :, pos:pos + T].copy_(v)
        K, V = kc[:B, :, :pos + T], vc[:B, :, :pos + T]
        att = (q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if T > 1:  # prefill: causal mask; a single new token sees every cached position
            att = att.masked_fill(masked_out[pos:pos + T, :pos + T], float("-inf"))
        return s.merge(att.softmax(dim=-1) @ V)

    def forward(s, x, masked_out, cache=None, pos=0):
        h = s.ln1(x)
        x = x + (s.attn_train(h, masked_out) if cache is None else s.attn_cached(h, cache[0], cache[1], pos, masked_out))
        return x + s.fcproj(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(s, V, T, C, L, NH):
        super().__init__()
        s.wte = nn.Embedding(V, C)
        s.wpe = nn.Embedding(T, C)
        s.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        s.lnf = nn.LayerNorm(C)
        s.register_buffer("pos_ids", torch.arange(T), persistent=False)
        s.register_buffer("masked_out", torch.ones(T, T, dtype=torch.bool).triu(diagonal=1), persistent=False)

    def forward(s, idx, pos0=0, caches=None):
        B, T = idx.shape
        x = s.wte(idx) + s.wpe(s.pos_ids[pos0:pos0 + T])
        for i, b in enumerate(s.blocks):
            x = b(x, s.masked_out, None if caches is None else caches[i], pos0)
        return s.lnf(x) @ s.wte.weight.t()


def build_settings(config):
    """The BLAS/LAPACK/threading entries of torch's build settings."""
    keep = ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP", "PERF_WITH_AVX2", "PERF_WITH_AVX512", "TORCH_VERSION")
    out = {}
    for line in config.splitlines():
        if "Build settings:" in line:
            for item in line.split("Build settings:", 1)[1].split(", "):
                k, _, v = item.strip().rstrip(",").partition("=")
                if k in keep:
                    out[k] = v
    return out


def main():
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = GPT(a.vocab, a.ctx, a.width, a.layers, a.heads)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
    x = torch.randint(0, a.vocab, (a.batch, a.ctx))
    y = torch.randint(0, a.vocab, (a.batch, a.ctx))
    hs = a.width // a.heads

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x).view(-1, a.vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    def train(steps):
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step()
        dt = (time.perf_counter() - t0) / steps
        return {"train_tokens_per_s": a.batch * a.ctx / dt, "train_step_s": dt}

    # Allocated once, like an inference engine's KV cache: [batch, heads, ctx, head size] per layer.
    with torch.inference_mode():
        caches = [(torch.zeros(a.sample_batch, a.heads, a.ctx, hs), torch.zeros(a.sample_batch, a.heads, a.ctx, hs)) for _ in m.blocks]
        out = torch.zeros(a.sample_batch, a.new_tokens, dtype=torch.long)
    assert a.prompt + a.new_tokens <= a.ctx, "prompt + new tokens must fit the context"

    def sample():
        with torch.inference_mode():
            idx = torch.randint(0, a.vocab, (a.sample_batch, a.prompt))
            t0 = time.perf_counter()
            logits = m(idx, 0, caches)[:, -1]
            pos = a.prompt
            for i in range(a.new_tokens):
                tok = torch.multinomial(F.softmax(logits, dim=-1), 1)
                out[:, i] = tok[:, 0]
                if i + 1 < a.new_tokens:
                    logits = m(tok, pos, caches)[:, -1]
                    pos += 1
            dt = time.perf_counter() - t0
        return {"sample_tokens_per_s": a.sample_batch * a.new_tokens / dt, "sample_s": dt}

    train_step()  # warm-up (allocator, thread pools, BLAS loaded)
    sample()

    config = torch.__config__.show()
    cap, cap_source = cpu_capability(torch, config)
    info = {
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "threads": a.threads,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ.get(k) for k in SETUP_VARS},
        "cpu_capability_requested": a.cpu_capability,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "cpu_capability": cap,
        "cpu_capability_source": cap_source,
        "cpu_flags": cpu_flags(),
        "build_settings": build_settings(config),
        "blas": loaded_blas(),
        "config": config,
        "parallel_info": torch.__config__.parallel_info(),
        "kv_cache": "preallocated [batch, heads, ctx, head] per layer, written in place",
        "sampling_mode": "torch.inference_mode",
        "train_batch": a.batch,
        "sample_batch": a.sample_batch,
        "prompt": a.prompt,
        "new_tokens": a.new_tokens,
    }

    if a.serve:
        print(json.dumps({"ready": True, "info": info}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            if req.get("op") == "train":
                res = train(int(req.get("steps", a.train_steps)))
            elif req.get("op") == "sample":
                res = sample()
            elif req.get("op") == "quit":
                break
            else:
                res = {"error": f"unknown op {req.get('op')!r}"}
            print(json.dumps(res), flush=True)
        return

    train_runs, sample_runs = [], []
    for _ in range(a.repeats):
        train_runs.append(train(a.train_steps)["train_tokens_per_s"])
        sample_runs.append(sample()["sample_tokens_per_s"])
    stats = lambda r: {"median": statistics.median(r), "min": min(r), "max": max(r), "runs": r}
    print(json.dumps({**info, "repeats": a.repeats, "train_steps_per_repeat": a.train_steps,
                      "train_tokens_per_s": statistics.median(train_runs), "sample_tokens_per_s": statistics.median(sample_runs),
                      "train": stats(train_runs), "sample": stats(sample_runs)}))


if __name__ == "__main__":
    main()

"""PyTorch CPU peer of bench/models.ts: a plain torch implementation of the Llama / Qwen2 forward
(RMSNorm, grouped-query attention with rotate-half RoPE, SwiGLU, optional q/k/v biases, tied or
untied head) on the same weights as the built-in engine (an F32 safetensors file under Hugging Face
names, written by bench/models.ts), doing the same three jobs:

- batched KV-cache sampling: B prompts of P tokens prefilled together, then N tokens sampled at
  temperature 1 (softmax + multinomial over the whole vocabulary), under torch.inference_mode with a
  preallocated KV cache ([B, kv heads, ctx, head] per layer, written in place; no torch.cat growth);
  prefill computes the logits of the last position only, as the engine and llama.cpp do;
- a full fine-tuning step: mean cross-entropy over all positions, AdamW over every parameter (weight
  decay on matrices and the embedding, none on norm gains and biases, as the engine's trainer),
  gradient clipping at 1.0;
- a LoRA step: rank-r adapters (A kaiming-uniform, B = 0, scale alpha/r, as PEFT) on every linear
  layer of every block (q, k, v, o, gate, up, down), base weights frozen, AdamW over the adapters.

It gets its best setup, as bench/torch_reference.py does: threads pinned before torch loads
(OMP/OPENBLAS/MKL_NUM_THREADS = --threads, torch.set_num_threads), OMP_WAIT_POLICY=PASSIVE, ATen ISA
pinned (avx512 on an AVX-512 CPU), OpenBLAS on this CPU's own kernels unless told otherwise; and
here also glibc malloc keeping freed memory for reuse (--malloc keep, see below).
torch 1.13 (Debian's /usr/bin/python3) has no scaled_dot_product_attention: attention is written out
with matmuls, the query heads of each kv head attending as one [G·T, S] block (no repeat_kv copy).

Memory: each phase op first frees the previous phase's state, hands free heap memory back
(malloc_trim) and resets the kernel's peak-RSS counter (writes 5 to /proc/self/clear_refs), so
{"op": "mem"} at the end of a phase reports that phase's peak (VmHWM).

Serve protocol (bench/models.ts): one JSON line {"ready": true, "info": ...} once the weights are
loaded, then one JSON line per request line, until EOF or {"op": "quit"}:
  {"op": "check", "tokens": [...]}        -> log-softmax rows [T, V], float64 little-endian, base64
  {"op": "phase", "name": "sample"|"train_full"|"train_lora"}  -> sets the phase up, warm-up run(s)
  {"op": "sample", "seed": s}             -> {"tokens_per_s", "seconds", "generated"}
  {"op": "train", "steps": n}             -> {"tokens_per_s", "step_s", "loss"} (full or LoRA: the phase)
  {"op": "mem"}                           -> {"rss_mb", "peak_rss_mb"}
Every reply also carries "mem". Run it by hand with:
  /usr/bin/python3 bench/torch_models.py --weights W.safetensors --arch '<ArchConfig as JSON>' --ctx 128
"""
import argparse, base64, gc, json, math, os, struct, sys, time

from torch_setup import SETUP_VARS, add_setup_args, cpu_capability, loaded_blas, pin_before_torch

ap = argparse.ArgumentParser()
add_setup_args(ap)
ap.add_argument("--weights", required=True, help="F32 safetensors file with Hugging Face tensor names")
ap.add_argument("--arch", required=True, help="JSON: the ArchConfig fields of src/engine/arch.ts")
ap.add_argument("--ctx", type=int, required=True, help="KV-cache length (prompt + new tokens)")
ap.add_argument("--sample-batch", type=int, default=8)
ap.add_argument("--prompt", type=int, default=32)
ap.add_argument("--new-tokens", type=int, default=64)
ap.add_argument("--train-batch", type=int, default=4)
ap.add_argument("--train-len", type=int, default=128)
ap.add_argument("--lr", type=float, default=1e-5)
ap.add_argument("--weight-decay", type=float, default=0.01)
ap.add_argument("--lora-rank", type=int, default=8)
ap.add_argument("--lora-alpha", type=float, default=8.0)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                help="'keep': glibc malloc keeps freed memory for reuse (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ huge); "
                     "'default': glibc's defaults (every block over 32 MB is a fresh mmap)")
a = ap.parse_args()

# glibc's default malloc serves every block over 32 MB with a fresh mmap and unmaps it on free, so
# each training step page-faults its big tensors in again (the tied embedding's dense gradient,
# AdamW's temporaries): that cost torch 5-15x per step on the dev VM. Keeping freed memory in the
# heap is what jemalloc/tcmalloc would give it. glibc reads these once at start-up: re-exec with them.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 50)}
if a.malloc == "keep" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    os.environ.update(MALLOC_ENV)
    os.execv(sys.executable, [sys.executable] + sys.argv)

pin_before_torch(a)  # before torch (libgomp, OpenBLAS) loads: they read it once

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ARCH = json.loads(a.arch)
C, V, L = ARCH["hiddenSize"], ARCH["vocabSize"], ARCH["nLayer"]
NH, NKV, HD, I = ARCH["nHead"], ARCH["nKvHead"], ARCH["headDim"], ARCH["intermediateSize"]
G = NH // NKV
EPS = ARCH["normEps"]
if ARCH.get("family") not in ("llama", "qwen2") or ARCH.get("qkNorm") or ARCH.get("ropeScaling"):
    sys.exit(f"torch_models.py: only Llama / Qwen2 without q/k norms or RoPE scaling are implemented (got {ARCH.get('family')})")


# ---------------------------------------------------------------------------------------------
# Memory

def proc_mem():
    """VmRSS and VmHWM (peak since the last reset) of this process, in MB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def reset_peak():
    gc.collect()
    try:  # hand what the previous phase freed back to the OS (the heap keeps it otherwise)
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Model

def linear(n_in, n_out, bias):
    # skip_init: the weights come from the file; no point in kaiming-initialising 100M+ floats first.
    return torch.nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias)


class LoraLinear(nn.Module):
    """y = base(x) + (alpha/r)·x·Aᵀ·Bᵀ with the base frozen (PEFT's LoRA, no dropout)."""

    def __init__(s, base, r, alpha):
        super().__init__()
        s.base = base
        s.scale = alpha / r
        s.A = nn.Parameter(torch.empty(r, base.in_features))
        s.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(s.A, a=math.sqrt(5))

    def forward(s, x):
        return s.base(x) + F.linear(F.linear(x, s.A), s.B) * s.scale


class Layer(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1 = nn.Parameter(torch.empty(C))
        s.q = linear(C, NH * HD, ARCH["qkvBias"])
        s.k = linear(C, NKV * HD, ARCH["qkvBias"])
        s.v = linear(C, NKV * HD, ARCH["qkvBias"])
        s.o = linear(NH * HD, C, ARCH["oBias"])
        s.ln2 = nn.Parameter(torch.empty(C))
        s.gate = linear(C, I, ARCH["mlpBias"])
        s.up = linear(C, I, ARCH["mlpBias"])
        s.down = linear(I, C, ARCH["mlpBias"])


class Model(nn.Module):
    def __init__(s, ctx):
        super().__init__()
        s.embed = nn.Parameter(torch.empty(V, C))
        s.layers = nn.ModuleList([Layer() for _ in range(L)])
        s.norm = nn.Parameter(torch.empty(C))
        s.lm_head = None if ARCH["tiedEmbeddings"] else nn.Parameter(torch.empty(V, C))
        # transformers' rotary tables: inv_freq in float32 from int64 exponents, cos/sin of [pos, pos].
        inv = 1.0 / (ARCH["ropeTheta"] ** (torch.arange(0, HD, 2, dtype=torch.int64).float() / HD))
        ang = torch.outer(torch.arange(ctx, dtype=torch.float32), inv)
        emb = torch.cat((ang, ang), dim=-1)
        s.register_buffer("cos", emb.cos(), persistent=False)
        s.register_buffer("sin", emb.sin(), persistent=False)
        s.register_buffer("masked_out", torch.ones(ctx, ctx, dtype=torch.bool).triu(diagonal=1), persistent=False)

    def hf_params(s):
        """Parameter of each Hugging Face tensor name."""
        out = {"model.embed_tokens.weight": s.embed, "model.norm.weight": s.norm}
        if s.lm_head is not None:
            out["lm_head.weight"] = s.lm_head
        for i, l in enumerate(s.layers):
            p = f"model.layers.{i}."
            out[p + "input_layernorm.weight"] = l.ln1
            out[p + "post_attention_layernorm.weight"] = l.ln2
            for mod, hf in (("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"), ("o", "self_attn.o_proj"),
                            ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"), ("down", "mlp.down_proj")):
                lin = getattr(l, mod)
                out[p + hf + ".weight"] = lin.weight
                if lin.bias is not None:
                    out[p + hf + ".bias"] = lin.bias
        return out


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def attend(q, k, v, mask):
    """q [B, NH, T, HD]; k, v [B, NKV, S, HD] (q head h reads kv head h // G, as repeat_kv); -> [B, T, NH·HD]."""
    B, _, T, _ = q.shape
    S = k.shape[2]
    qg = q.reshape(B, NKV, G * T, HD)  # the G query heads of each kv head, stacked
    att = (qg @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))
    if mask is not None:
        att = att.view(B, NKV, G, T, S).masked_fill(mask, float("-inf")).view(B, NKV, G * T, S)
    y = att.softmax(dim=-1) @ v  # [B, NKV, G·T, HD]
    return y.view(B, NH, T, HD).transpose(1, 2).reshape(B, T, NH * HD)


def forward(m, idx, pos=0, caches=None, last_only=False):
    """Logits [B, T, V] (or [B, V] of the last position) of idx [B, T] at positions pos.. (caches: KV cache per layer)."""
    B, T = idx.shape
    x = F.embedding(idx, m.embed)
    cos, sin = m.cos[pos:pos + T], m.sin[pos:pos + T]
    mask = m.masked_out[pos:pos + T, :pos + T] if T > 1 else None  # one new token sees every cached position
    for i, l in enumerate(m.layers):
        h = rms(x, l.ln1)
        q = l.q(h).view(B, T, NH, HD).transpose(1, 2)
        k = l.k(h).view(B, T, NKV, HD).transpose(1, 2)
        v = l.v(h).view(B, T, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if caches is not None:
            kc, vc = caches[i]
            kc[:B, :, pos:pos + T].copy_(k)
            vc[:B, :, pos:pos + T].copy_(v)
            k, v = kc[:B, :, :pos + T], vc[:B, :, :pos + T]
        x = x + l.o(attend(q, k, v, mask))
        h = rms(x, l.ln2)
        x = x + l.down(F.silu(l.gate(h)) * l.up(h))
    x = rms(x, m.norm)
    if last_only:
        x = x[:, -1]
    return F.linear(x, m.embed if m.lm_head is None else m.lm_head)


def load_safetensors(path, params):
    """Read an F32 safetensors file straight into the parameters (no whole-file buffer)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        header.pop("__metadata__", None)
        missing = set(params) - set(header)
        extra = set(header) - set(params)
        if missing or extra:
            raise ValueError(f"{path}: missing tensors {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
        with torch.no_grad():
            for name, t in header.items():
                p = params[name]
                if t["dtype"] != "F32" or list(p.shape) != t["shape"]:
                    raise ValueError(f"{path}: {name} is {t['dtype']} {t['shape']}, expected F32 {list(p.shape)}")
                start, end = t["data_offsets"]
                f.seek(base + start)
                buf = p.data.numpy()
                if f.readinto(memoryview(buf).cast("B")) != end - start:
                    raise ValueError(f"{path}: {name} is truncated")


# ---------------------------------------------------------------------------------------------

def main():
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    m = Model(a.ctx)
    load_safetensors(a.weights, m.hf_params())
    load_s = time.perf_counter() - t0

    state = {"phase": None, "opt": None, "caches": None}
    gen = torch.Generator().manual_seed(a.seed + 1)
    Bt, Tt = a.train_batch, a.train_len
    # Random ids below V - 1 (the last id is the synthetic tokenizer's special token), as the engine's.
    xy = torch.randint(0, V - 1, (Bt, Tt + 1), generator=gen)
    x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()

    def adamw(params):
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        # torch's default per-tensor AdamW: the multi-tensor (foreach) one was no faster here and holds
        # a parameter-sized set of temporaries at once.
        return torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                 lr=a.lr, betas=(0.9, 0.999), eps=1e-8)

    def train_step():
        opt = state["opt"]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(m, x).view(-1, V), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        return loss.item()

    def train(steps):
        t = time.perf_counter()
        loss = 0.0
        for _ in range(steps):
            loss = train_step()
        dt = (time.perf_counter() - t) / steps
        return {"tokens_per_s": Bt * Tt / dt, "step_s": dt, "loss": loss}

    def sample(seed):
        B, P, N = a.sample_batch, a.prompt, a.new_tokens
        g = torch.Generator().manual_seed(seed)
        caches = state["caches"]
        with torch.inference_mode():
            idx = torch.randint(0, V - 1, (B, P), generator=g)
            out = torch.empty(B, N, dtype=torch.long)
            t = time.perf_counter()
            logits = forward(m, idx, 0, caches, last_only=True)
            pos = P
            for i in range(N):
                tok = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=g)
                out[:, i] = tok[:, 0]
                if i + 1 < N:
                    logits = forward(m, tok, pos, caches, last_only=True)
                    pos += 1
            dt = time.perf_counter() - t
        return {"tokens_per_s": B * N / dt, "seconds": dt, "generated": B * N}

    def phase(name):
        # Drop what the previous phase held before the peak counter is reset.
        state["opt"] = None
        state["caches"] = None
        for p in m.parameters():
            p.grad = None
        reset = reset_peak()
        if name == "sample":
            assert a.prompt + a.new_tokens <= a.ctx, "prompt + new tokens must fit the context"
            with torch.inference_mode():
                state["caches"] = [(torch.zeros(a.sample_batch, NKV, a.ctx, HD), torch.zeros(a.sample_batch, NKV, a.ctx, HD)) for _ in range(L)]
            sample(a.seed + 2)  # warm-up
        elif name == "train_full":
            for p in m.parameters():
                p.requires_grad_(True)
            state["opt"] = adamw(m.parameters())
            train_step()  # warm-up: AdamW state, and the heap grown to a step's size (twice: the
            train_step()  # first step allocates the moments while the gradients are alive)
        elif name == "train_lora":
            for p in m.parameters():
                p.requires_grad_(False)
            for l in m.layers:
                for mod in ("q", "k", "v", "o", "gate", "up", "down"):
                    cur = getattr(l, mod)
                    base = cur.base if isinstance(cur, LoraLinear) else cur
                    setattr(l, mod, LoraLinear(base, a.lora_rank, a.lora_alpha))
            state["opt"] = adamw(m.parameters())
            train_step()  # warm-up, as for train_full
            train_step()
        else:
            raise ValueError(f"unknown phase {name!r}")
        state["phase"] = name
        n_trained = sum(p.numel() for g in state["opt"].param_groups for p in g["params"]) if state["opt"] else 0
        return {"phase": name, "peak_reset": reset, "trained_params": n_trained}

    def check(tokens):
        with torch.inference_mode():
            ls = forward(m, torch.tensor([tokens])).double().log_softmax(dim=-1)[0]
        return {"rows": len(tokens), "vocab": V, "logsoftmax_f64_b64": base64.b64encode(ls.numpy().astype("<f8").tobytes()).decode()}

    info = {
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "threads": a.threads,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ.get(k) for k in SETUP_VARS + tuple(MALLOC_ENV)},
        "malloc": a.malloc,
        "cpu_capability": cpu_capability(torch, torch.__config__.show())[0],
        "blas": loaded_blas(),
        "params": sum(p.numel() for p in m.parameters()),
        "load_s": round(load_s, 2),
        "kv_cache": "preallocated [batch, kv heads, ctx, head] per layer, written in place",
        "sampling": "torch.inference_mode; batched prefill (last-position logits), softmax + multinomial at temperature 1",
        "attention": "matmul + masked softmax; the G query heads of a kv head as one block (no repeat_kv copy)",
        "lora": {"rank": a.lora_rank, "alpha": a.lora_alpha, "modules": ["q", "k", "v", "o", "gate", "up", "down"], "base": "frozen (requires_grad False)"},
        "optimizer": f"AdamW lr {a.lr}, betas (0.9, 0.999), eps 1e-8, weight decay {a.weight_decay} on matrices/embedding, clip 1.0",
        "mem": proc_mem(),
    }
    print(json.dumps({"ready": True, "info": info}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        op = req.get("op")
        try:
            if op == "check":
                res = check(req["tokens"])
            elif op == "phase":
                res = phase(req["name"])
            elif op == "sample":
                if state["phase"] != "sample":
                    raise ValueError("sample outside the 'sample' phase")
                res = sample(int(req.get("seed", 0)))
            elif op == "train":
                if state["phase"] not in ("train_full", "train_lora"):
                    raise ValueError("train outside a training phase")
                res = train(int(req.get("steps", 1)))
            elif op == "mem":
                res = {}
            elif op == "quit":
                break
            else:
                res = {"error": f"unknown op {op!r}"}
        except Exception as e:  # report, keep serving: the bench decides what to do
            res = {"error": f"{type(e).__name__}: {e}"}
        res["mem"] = proc_mem()
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()

"""PyTorch CPU reference for bench/engine.ts: the same decoder-only transformer (learned positions,
LayerNorm, GELU-tanh MLP x4, tied embeddings, biases), the same train step (cross-entropy over all
positions, AdamW, grad clip 1.0) and KV-cache batched sampling. Prints one JSON line.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_reference.py --threads 2 ...
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def attn(s, x, cache=None):
        B, T, C = x.shape
        q, k, v = s.qkv(x).split(C, dim=2)
        sh = lambda t: t.view(B, T, s.NH, C // s.NH).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        Tq, Tk = q.size(2), k.size(2)
        mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return s.proj(y)

    def forward(s, x, cache=None):
        x = x + s.attn(s.ln1(x), cache)
        return x + s.fcproj(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(s, V, T, C, L, NH):
        super().__init__()
        s.wte = nn.Embedding(V, C)
        s.wpe = nn.Embedding(T, C)
        s.blocks = nn.ModuleList([Block(C, NH) for _ in range(L)])
        s.lnf = nn.LayerNorm(C)

    def forward(s, idx, pos0=0, caches=None):
        B, T = idx.shape
        x = s.wte(idx) + s.wpe(torch.arange(pos0, pos0 + T))
        for i, b in enumerate(s.blocks):
            x = b(x, None if caches is None else caches[i])
        return s.lnf(x) @ s.wte.weight.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--sample-batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=112)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = GPT(a.vocab, a.ctx, a.width, a.layers, a.heads)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
    x = torch.randint(0, a.vocab, (a.batch, a.ctx))
    y = torch.randint(0, a.vocab, (a.batch, a.ctx))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x).view(-1, a.vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.train_steps):
        step()
    dt = (time.perf_counter() - t0) / a.train_steps
    train_tps = a.batch * a.ctx / dt

    @torch.no_grad()
    def sample():
        caches = [dict() for _ in m.blocks]
        idx = torch.randint(0, a.vocab, (a.sample_batch, a.prompt))
        logits = m(idx, 0, caches)[:, -1]
        pos = a.prompt
        for _ in range(a.new_tokens):
            tok = torch.multinomial(F.softmax(logits, dim=-1), 1)
            if pos >= a.ctx:
                break
            logits = m(tok, pos, caches)[:, -1]
            pos += 1

    sample()  # warm-up
    t0 = time.perf_counter()
    sample()
    sdt = time.perf_counter() - t0
    sample_tps = a.sample_batch * a.new_tokens / sdt
    print(json.dumps({"torch_version": torch.__version__, "threads": a.threads, "train_step_s": dt,
                      "train_tokens_per_s": train_tps, "sample_tokens_per_s": sample_tps}))


if __name__ == "__main__":
    main()

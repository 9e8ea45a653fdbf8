/**
 * An independent reference forward pass for tests, written straight from the semantics of Hugging
 * Face transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py / modeling_gpt2.py,
 * in float64 and as plainly as possible (no kernels, no caching, no speed): other implementations
 * (the built-in engine, llama.cpp via GGUF) are checked against it.
 *
 *   Llama / Qwen2 / Qwen3 decoder layer:
 *     h = RMSNorm(x)·g;  q, k, v = h·Wᵀ (+ b);  [Qwen3: q, k ← RMSNorm per head (q_norm, k_norm)]
 *     q, k ← RoPE (rotate-half: x·cos + rotate_half(x)·sin, frequencies from rope_theta and
 *     rope_scaling);  grouped-query attention (head h reads kv head ⌊h / (nHead/nKvHead)⌋),
 *     causal softmax(q·k / √headDim)·v;  x += o_proj;  x += down(silu(gate(h2)) · up(h2)).
 *   GPT-2 block: h = LayerNorm(x);  q|k|v = h·W_attn + b (Conv1D weights are [in, out]);
 *     causal attention;  x += c_proj;  x += c_proj(gelu_new(h2·W_fc + b)).
 *   Embedding (+ learned positions for GPT-2), final norm, head = embedding matrix when tied.
 */
import type { ArchConfig, HfTensors } from '../../src/engine/arch.ts';

/** RoPE inverse frequencies (transformers' modeling_rope_utils: default, linear and llama3), in float64. */
export function referenceInvFreq(arch: ArchConfig): number[] {
  const d = arch.headDim;
  const inv: number[] = [];
  for (let i = 0; i < d / 2; i++) inv.push(1 / Math.pow(arch.ropeTheta, (2 * i) / d));
  const sc = arch.ropeScaling;
  if (sc === null) return inv;
  if (sc.type === 'linear') return inv.map((f) => f / sc.factor);
  // _compute_llama3_parameters: keep short wavelengths, divide long ones by factor, blend between.
  const lowFreqWavelen = sc.originalMaxPositions / sc.lowFreqFactor;
  const highFreqWavelen = sc.originalMaxPositions / sc.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / sc.factor;
    const smooth = (sc.originalMaxPositions / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
    return (1 - smooth) * (f / sc.factor) + smooth * f;
  });
}

type Vec = number[];

/** `x·Wᵀ + b` for a Linear weight W of shape [out, in]. */
function linear(x: Vec, w: Float32Array, out: number, bias?: Float32Array): Vec {
  const inDim = x.length;
  const y: Vec = new Array(out).fill(0);
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o]! : 0;
    for (let i = 0; i < inDim; i++) s += x[i]! * w[o * inDim + i]!;
    y[o] = s;
  }
  return y;
}

/** `x·W + b` for a GPT-2 Conv1D weight W of shape [in, out]. */
function conv1d(x: Vec, w: Float32Array, out: number, bias: Float32Array): Vec {
  const y: Vec = new Array(out).fill(0);
  for (let o = 0; o < out; o++) {
    let s = bias[o]!;
    for (let i = 0; i < x.length; i++) s += x[i]! * w[i * out + o]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Vec, g: Float32Array, eps: number): Vec {
  const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
  const r = 1 / Math.sqrt(ms + eps);
  return x.map((v, i) => v * r * g[i]!);
}

function layerNorm(x: Vec, g: Float32Array, b: Float32Array, eps: number): Vec {
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
  const r = 1 / Math.sqrt(variance + eps);
  return x.map((v, i) => (v - mean) * r * g[i]! + b[i]!);
}

const silu = (v: number): number => v / (1 + Math.exp(-v));
const geluNew = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** Rotate-half RoPE of one head vector at position `pos`. */
function rope(x: Vec, pos: number, invFreq: number[]): Vec {
  const half = x.length / 2;
  const out = x.slice();
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * invFreq[i]!), s = Math.sin(pos * invFreq[i]!);
    out[i] = x[i]! * c - x[i + half]! * s;
    out[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return out;
}

function logSoftmax(z: Vec): Float64Array {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return Float64Array.from(z, (v) => v - lse);
}

/** Causal attention over per-position, per-head q/k/v (already projected, normed and rotated). */
function attention(q: Vec[][], k: Vec[][], v: Vec[][], nHead: number, nKvHead: number, headDim: number): Vec[] {
  const T = q.length, group = nHead / nKvHead, scale = 1 / Math.sqrt(headDim);
  const out: Vec[] = [];
  for (let t = 0; t < T; t++) {
    const row: Vec = [];
    for (let h = 0; h < nHead; h++) {
      const kh = Math.floor(h / group);
      const scores: Vec = [];
      for (let u = 0; u <= t; u++) scores.push(q[t]![h]!.reduce((s, a, i) => s + a * k[u]![kh]![i]!, 0) * scale);
      const m = Math.max(...scores);
      const p = scores.map((s) => Math.exp(s - m));
      const z = p.reduce((a, b) => a + b, 0);
      for (let i = 0; i < headDim; i++) {
        let acc = 0;
        for (let u = 0; u <= t; u++) acc += (p[u]! / z) * v[u]![kh]![i]!;
        row.push(acc);
      }
    }
    out.push(row);
  }
  return out;
}

function heads(x: Vec, n: number, headDim: number): Vec[] {
  return Array.from({ length: n }, (_, h) => x.slice(h * headDim, (h + 1) * headDim));
}

/**
 * For each position t of `tokens`, the log-softmax over the vocabulary of the logits that predict
 * token t + 1 (so `result[t][tokens[t + 1]]` is that token's logprob).
 */
export function referenceLogprobs(arch: ArchConfig, tensors: HfTensors, tokens: number[]): Float64Array[] {
  const get = (name: string): Float32Array => {
    const t = tensors.get(name) ?? (name.startsWith('transformer.') ? tensors.get(name.slice('transformer.'.length)) : undefined);
    if (!t) throw new Error(`referenceLogprobs: tensor ${name} is missing`);
    return t.data;
  };
  const opt = (name: string): Float32Array | undefined => (tensors.has(name) ? get(name) : undefined);
  const C = arch.hiddenSize, V = arch.vocabSize, hd = arch.headDim, eps = arch.normEps;
  for (const t of tokens) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`referenceLogprobs: token ${t} outside the vocabulary of ${V}`);
  if (tokens.length > arch.maxPositions) throw new Error(`referenceLogprobs: ${tokens.length} tokens exceed maxPositions ${arch.maxPositions}`);

  if (arch.family === 'gpt2') {
    const p = 'transformer.';
    const wte = get(`${p}wte.weight`), wpe = get(`${p}wpe.weight`);
    let x: Vec[] = tokens.map((tok, pos) => Array.from({ length: C }, (_, i) => wte[tok * C + i]! + wpe[pos * C + i]!));
    for (let l = 0; l < arch.nLayer; l++) {
      const h = `${p}h.${l}.`;
      const q: Vec[][] = [], k: Vec[][] = [], v: Vec[][] = [];
      for (const xt of x) {
        const a = layerNorm(xt, get(`${h}ln_1.weight`), get(`${h}ln_1.bias`), eps);
        const qkv = conv1d(a, get(`${h}attn.c_attn.weight`), 3 * C, get(`${h}attn.c_attn.bias`));
        q.push(heads(qkv.slice(0, C), arch.nHead, hd));
        k.push(heads(qkv.slice(C, 2 * C), arch.nHead, hd));
        v.push(heads(qkv.slice(2 * C), arch.nHead, hd));
      }
      const att = attention(q, k, v, arch.nHead, arch.nHead, hd);
      x = x.map((xt, t) => {
        const o = conv1d(att[t]!, get(`${h}attn.c_proj.weight`), C, get(`${h}attn.c_proj.bias`));
        const r = xt.map((val, i) => val + o[i]!);
        const m = layerNorm(r, get(`${h}ln_2.weight`), get(`${h}ln_2.bias`), eps);
        const up = conv1d(m, get(`${h}mlp.c_fc.weight`), arch.intermediateSize, get(`${h}mlp.c_fc.bias`)).map(geluNew);
        const down = conv1d(up, get(`${h}mlp.c_proj.weight`), C, get(`${h}mlp.c_proj.bias`));
        return r.map((val, i) => val + down[i]!);
      });
    }
    const head = arch.tiedEmbeddings ? wte : get('lm_head.weight');
    return x.map((xt) => logSoftmax(linear(layerNorm(xt, get(`${p}ln_f.weight`), get(`${p}ln_f.bias`), eps), head, V)));
  }

  const invFreq = referenceInvFreq(arch);
  const embed = get('model.embed_tokens.weight');
  let x: Vec[] = tokens.map((tok) => Array.from({ length: C }, (_, i) => embed[tok * C + i]!));
  for (let l = 0; l < arch.nLayer; l++) {
    const h = `model.layers.${l}.`;
    const q: Vec[][] = [], k: Vec[][] = [], v: Vec[][] = [];
    x.forEach((xt, pos) => {
      const a = rmsNorm(xt, get(`${h}input_layernorm.weight`), eps);
      let qh = heads(linear(a, get(`${h}self_attn.q_proj.weight`), arch.nHead * hd, opt(`${h}self_attn.q_proj.bias`)), arch.nHead, hd);
      let kh = heads(linear(a, get(`${h}self_attn.k_proj.weight`), arch.nKvHead * hd, opt(`${h}self_attn.k_proj.bias`)), arch.nKvHead, hd);
      const vh = heads(linear(a, get(`${h}self_attn.v_proj.weight`), arch.nKvHead * hd, opt(`${h}self_attn.v_proj.bias`)), arch.nKvHead, hd);
      if (arch.qkNorm) {
        qh = qh.map((u) => rmsNorm(u, get(`${h}self_attn.q_norm.weight`), eps));
        kh = kh.map((u) => rmsNorm(u, get(`${h}self_attn.k_norm.weight`), eps));
      }
      q.push(qh.map((u) => rope(u, pos, invFreq)));
      k.push(kh.map((u) => rope(u, pos, invFreq)));
      v.push(vh);
    });
    const att = attention(q, k, v, arch.nHead, arch.nKvHead, hd);
    x = x.map((xt, t) => {
      const o = linear(att[t]!, get(`${h}self_attn.o_proj.weight`), C, opt(`${h}self_attn.o_proj.bias`));
      const r = xt.map((val, i) => val + o[i]!);
      const m = rmsNorm(r, get(`${h}post_attention_layernorm.weight`), eps);
      const gate = linear(m, get(`${h}mlp.gate_proj.weight`), arch.intermediateSize, opt(`${h}mlp.gate_proj.bias`));
      const up = linear(m, get(`${h}mlp.up_proj.weight`), arch.intermediateSize, opt(`${h}mlp.up_proj.bias`));
      const down = linear(gate.map((g, i) => silu(g) * up[i]!), get(`${h}mlp.down_proj.weight`), C, opt(`${h}mlp.down_proj.bias`));
      return r.map((val, i) => val + down[i]!);
    });
  }
  const head = arch.tiedEmbeddings ? embed : get('lm_head.weight');
  return x.map((xt) => logSoftmax(linear(rmsNorm(xt, get('model.norm.weight'), eps), head, V)));
}

/**
 * Hugging Face model (ArchConfig + HfTensors + tokenizer.json) ⇄ GGUF, in the conventions of
 * llama.cpp's convert_hf_to_gguf.py, so the files we write load in llama.cpp and files llama.cpp's
 * converter wrote load here:
 *
 * - `general.architecture` llama / qwen2 / qwen3 / gpt2 and the `{arch}.*` hyper-parameters.
 * - Tensor names: token_embd, position_embd (GPT-2), output_norm, output (untied heads only),
 *   blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_qkv (GPT-2), attn_output, attn_q_norm,
 *   attn_k_norm, ffn_norm, ffn_gate, ffn_up, ffn_down}.{weight,bias}, rope_freqs (llama3 RoPE).
 * - Llama's q_proj / k_proj rows (weights and biases) are permuted per head from the rotate-half
 *   layout of Hugging Face to the interleaved-pair layout of llama.cpp's "normal" RoPE; Qwen2/3 use
 *   llama.cpp's NEOX (rotate-half) RoPE and are not permuted.
 * - GPT-2's Conv1D weights are stored [in, out] by Hugging Face and [out, in] in GGUF.
 * - llama3 RoPE scaling becomes a `rope_freqs.weight` tensor of per-frequency divisors (llama.cpp
 *   divides each inverse frequency by it); linear scaling becomes rope.scaling.type/factor. We also
 *   write the llama3 parameters under `agentrl.rope_scaling.*` (llama.cpp ignores unknown keys) so
 *   the ArchConfig comes back exactly; without them they are fitted to rope_freqs.weight.
 * - 1-D tensors, norms and position_embd stay F32; Q8_0 falls back to F16 for a tensor whose row
 *   length is not a multiple of 32 (as the converter does).
 * - Byte-level BPE tokenizer: tokenizer.ggml.model "gpt2", .pre, .tokens, .token_type (control
 *   for special added tokens, user-defined for other added tokens, unused for padding slots),
 *   .merges ("a b"), special token ids, add_bos/add_eos, chat_template.
 *
 * Lossy by design: GGUF keeps one eos id (extra ArchConfig.eosTokenIds are dropped) and Q8_0/F16/
 * BF16 weights are rounded.
 */
import type { ArchConfig, ArchFamily, HfDType, HfTensor, HfTensors, RopeScaling } from './arch.ts';
import {
  decodeGgufTensor, gguf, metaArray, metaBool, metaNumber, metaString, parseGguf, requireNumber, writeGguf,
  type GgufFile, type GgufTensorToWrite, type GgufTensorType, type GgufValue,
} from './gguf.ts';

export type GgufDType = 'F32' | 'F16' | 'BF16' | 'Q8_0';

export interface HfToGgufOptions {
  /** Type of the 2-D weights; norms, biases and position embeddings stay F32. */
  dtype: GgufDType;
  /** tokenizer_config.json: bos/eos/pad/unk tokens, add_bos_token/add_eos_token, chat_template. */
  tokenizerConfig?: Record<string, unknown>;
  /** general.name (default: the Hugging Face architecture). */
  name?: string;
  /** tokenizer.ggml.pre; default: recognised from tokenizer.json's pre_tokenizer. */
  pre?: string;
}

/** llama.cpp token types (llama_token_type / gguf TokenType). */
export const GGUF_TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** A GGUF tokenizer (tokenizer.ggml.*), as stored. */
export interface GgufTokenizer {
  model: string;
  pre: string | null;
  tokens: string[];
  tokenTypes: number[];
  merges: string[];
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  unkTokenId: number | null;
  addBosToken: boolean | null;
  addEosToken: boolean | null;
  chatTemplate: string | null;
}

const FAMILIES: readonly ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];
const HF_ARCHITECTURE: Record<ArchFamily, string> = {
  llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', gpt2: 'GPT2LMHeadModel',
};
/** llama_ftype written to general.file_type. */
const FILE_TYPE: Record<GgufDType, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };
const AGENTRL_ROPE = 'agentrl.rope_scaling';

// ---------------------------------------------------------------------------------------------
// Tensor name maps

type Transform = 'none' | 'permute-q' | 'permute-k' | 'transpose';
interface TensorMapping {
  hf: string;
  gguf: string;
  transform: Transform;
  /** Row-major shape under the Hugging Face name. */
  shape: number[];
}

/** Every tensor of `arch`, under both namings, with the transform between them. */
function tensorMappings(arch: ArchConfig): TensorMapping[] {
  const C = arch.hiddenSize, I = arch.intermediateSize, V = arch.vocabSize, hd = arch.headDim;
  const q = arch.nHead * hd, kv = arch.nKvHead * hd;
  const m: TensorMapping[] = [];
  const add = (hf: string, g: string, shape: number[], transform: Transform = 'none'): void => { m.push({ hf, gguf: g, transform, shape }); };
  if (arch.family === 'gpt2') {
    const p = 'transformer.';
    add(`${p}wte.weight`, 'token_embd.weight', [V, C]);
    add(`${p}wpe.weight`, 'position_embd.weight', [arch.maxPositions, C]);
    for (let l = 0; l < arch.nLayer; l++) {
      const h = `${p}h.${l}.`, b = `blk.${l}.`;
      add(`${h}ln_1.weight`, `${b}attn_norm.weight`, [C]); add(`${h}ln_1.bias`, `${b}attn_norm.bias`, [C]);
      add(`${h}attn.c_attn.weight`, `${b}attn_qkv.weight`, [C, 3 * C], 'transpose'); add(`${h}attn.c_attn.bias`, `${b}attn_qkv.bias`, [3 * C]);
      add(`${h}attn.c_proj.weight`, `${b}attn_output.weight`, [C, C], 'transpose'); add(`${h}attn.c_proj.bias`, `${b}attn_output.bias`, [C]);
      add(`${h}ln_2.weight`, `${b}ffn_norm.weight`, [C]); add(`${h}ln_2.bias`, `${b}ffn_norm.bias`, [C]);
      add(`${h}mlp.c_fc.weight`, `${b}ffn_up.weight`, [C, I], 'transpose'); add(`${h}mlp.c_fc.bias`, `${b}ffn_up.bias`, [I]);
      add(`${h}mlp.c_proj.weight`, `${b}ffn_down.weight`, [I, C], 'transpose'); add(`${h}mlp.c_proj.bias`, `${b}ffn_down.bias`, [C]);
    }
    add(`${p}ln_f.weight`, 'output_norm.weight', [C]); add(`${p}ln_f.bias`, 'output_norm.bias', [C]);
    if (!arch.tiedEmbeddings) add('lm_head.weight', 'output.weight', [V, C]);
    return m;
  }
  const permute = arch.family === 'llama';
  add('model.embed_tokens.weight', 'token_embd.weight', [V, C]);
  for (let l = 0; l < arch.nLayer; l++) {
    const h = `model.layers.${l}.`, b = `blk.${l}.`;
    add(`${h}input_layernorm.weight`, `${b}attn_norm.weight`, [C]);
    add(`${h}self_attn.q_proj.weight`, `${b}attn_q.weight`, [q, C], permute ? 'permute-q' : 'none');
    add(`${h}self_attn.k_proj.weight`, `${b}attn_k.weight`, [kv, C], permute ? 'permute-k' : 'none');
    add(`${h}self_attn.v_proj.weight`, `${b}attn_v.weight`, [kv, C]);
    if (arch.qkvBias) {
      add(`${h}self_attn.q_proj.bias`, `${b}attn_q.bias`, [q], permute ? 'permute-q' : 'none');
      add(`${h}self_attn.k_proj.bias`, `${b}attn_k.bias`, [kv], permute ? 'permute-k' : 'none');
      add(`${h}self_attn.v_proj.bias`, `${b}attn_v.bias`, [kv]);
    }
    if (arch.qkNorm) {
      add(`${h}self_attn.q_norm.weight`, `${b}attn_q_norm.weight`, [hd]);
      add(`${h}self_attn.k_norm.weight`, `${b}attn_k_norm.weight`, [hd]);
    }
    add(`${h}self_attn.o_proj.weight`, `${b}attn_output.weight`, [C, q]);
    if (arch.oBias) add(`${h}self_attn.o_proj.bias`, `${b}attn_output.bias`, [C]);
    add(`${h}post_attention_layernorm.weight`, `${b}ffn_norm.weight`, [C]);
    add(`${h}mlp.gate_proj.weight`, `${b}ffn_gate.weight`, [I, C]);
    add(`${h}mlp.up_proj.weight`, `${b}ffn_up.weight`, [I, C]);
    add(`${h}mlp.down_proj.weight`, `${b}ffn_down.weight`, [C, I]);
    if (arch.mlpBias) {
      add(`${h}mlp.gate_proj.bias`, `${b}ffn_gate.bias`, [I]);
      add(`${h}mlp.up_proj.bias`, `${b}ffn_up.bias`, [I]);
      add(`${h}mlp.down_proj.bias`, `${b}ffn_down.bias`, [C]);
    }
  }
  add('model.norm.weight', 'output_norm.weight', [C]);
  if (!arch.tiedEmbeddings) add('lm_head.weight', 'output.weight', [V, C]);
  return m;
}

/** Hugging Face buffers that are not weights (the converter drops them too). */
function isIgnoredHfTensor(name: string): boolean {
  return /\.attn\.(masked_)?bias$/.test(name) || name.endsWith('.rotary_emb.inv_freq');
}

// ---------------------------------------------------------------------------------------------
// Layout transforms

/**
 * llama.cpp's LlamaModel.permute: within each head, rows [x0..x(d/2-1), y0..y(d/2-1)] (rotate-half
 * pairs i and i + d/2) become [x0, y0, x1, y1, …] (interleaved pairs). `cols` = 1 for a bias.
 */
export function permuteRopeRows(data: Float32Array, nHead: number, headDim: number, cols: number, inverse = false): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < nHead; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const hfRow = h * headDim + s * half + j, ggufRow = h * headDim + 2 * j + s;
        const [from, to] = inverse ? [ggufRow, hfRow] : [hfRow, ggufRow];
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

// ---------------------------------------------------------------------------------------------
// RoPE scaling

/**
 * convert_hf_to_gguf.py's llama3 rope factors (one per frequency; llama.cpp divides the frequency by
 * it). The converter reads original_max_position_embeddings from the top level of config.json
 * (default 8192, right for every Llama 3.x); we use rope_scaling's own value, which transformers uses.
 */
export function llama3RopeFactors(arch: Pick<ArchConfig, 'headDim' | 'ropeTheta'>, sc: Extract<RopeScaling, { type: 'llama3' }>): Float32Array {
  const d = arch.headDim;
  const out = new Float32Array(d / 2);
  const lowWavelen = sc.originalMaxPositions / sc.lowFreqFactor, highWavelen = sc.originalMaxPositions / sc.highFreqFactor;
  for (let i = 0; i < d / 2; i++) {
    const wavelen = (2 * Math.PI) / (1 / Math.pow(arch.ropeTheta, (2 * i) / d));
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = sc.factor;
    else {
      const s = (sc.originalMaxPositions / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
      out[i] = 1 / ((1 - s) / sc.factor + s);
    }
  }
  return out;
}

function factorsMatch(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) <= 1e-5 * Math.max(1, Math.abs(x)));
}

/**
 * llama3 parameters that reproduce a rope_freqs.weight written by another converter. Only the
 * wavelength thresholds matter, so low_freq_factor is fixed to 1 (as in every Llama 3.x config) and
 * the rest is fitted to the factors strictly between 1 and `factor` (at least two are needed).
 */
function fitLlama3Scaling(factors: Float32Array, arch: Pick<ArchConfig, 'headDim' | 'ropeTheta'>, source: string): RopeScaling | null {
  const factor = Math.max(...factors);
  if (factor <= 1 + 1e-6) return null;
  const pts: { x: number; s: number }[] = [];
  factors.forEach((f, i) => {
    if (f > 1 + 1e-6 && f < factor - 1e-6 * factor) {
      const wavelen = 2 * Math.PI * Math.pow(arch.ropeTheta, (2 * i) / arch.headDim);
      pts.push({ x: 1 / wavelen, s: (1 / f - 1 / factor) / (1 - 1 / factor) });
    }
  });
  const fail = (): never => {
    throw new Error(`${source}: cannot recover the llama3 RoPE parameters from rope_freqs.weight (${factors.length} factors, ${pts.length} between 1 and ${factor}); the file lacks ${AGENTRL_ROPE}.* keys`);
  };
  if (pts.length < 2) fail();
  // Least squares s = a·x + b, then low = 1: L = -a/b, high = 1 - 1/b.
  const n = pts.length, mx = pts.reduce((t, p) => t + p.x, 0) / n, ms = pts.reduce((t, p) => t + p.s, 0) / n;
  const a = pts.reduce((t, p) => t + (p.x - mx) * (p.s - ms), 0) / pts.reduce((t, p) => t + (p.x - mx) ** 2, 0);
  const b = ms - a * mx;
  const sc: RopeScaling = { type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: 1 - 1 / b, originalMaxPositions: Math.round(-a / b) };
  if (!factorsMatch(llama3RopeFactors(arch, sc), factors)) fail();
  return sc;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

interface TokenizerJsonModel {
  type?: string;
  vocab?: Record<string, number>;
  merges?: (string | [string, string])[];
}
interface AddedToken { id: number; content: string; special?: boolean }

/** The regexes of Qwen2 and Llama 3 pre-tokenizers (tokenizer.json Split patterns). */
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * tokenizer.ggml.pre for a tokenizer.json pre_tokenizer: llama.cpp picks it by hashing the
 * tokenisation of a test string; we recognise the structures of the families we support.
 */
export function detectPreTokenizer(tokenizerJson: unknown): string | null {
  const pre = (tokenizerJson as { pre_tokenizer?: Record<string, unknown> } | null)?.pre_tokenizer;
  if (!pre || typeof pre !== 'object') return null;
  const isByteLevel = (p: unknown, regex: boolean): boolean => {
    const o = p as Record<string, unknown>;
    return o?.type === 'ByteLevel' && (o.use_regex !== false) === regex;
  };
  if (isByteLevel(pre, true)) return 'gpt-2';
  if (pre.type !== 'Sequence' || !Array.isArray(pre.pretokenizers)) return null;
  const parts = pre.pretokenizers as Record<string, unknown>[];
  if (parts.length === 2 && parts[0]?.type === 'Digits' && parts[0].individual_digits === true && isByteLevel(parts[1], true)) return 'smollm';
  if (parts.length === 2 && parts[0]?.type === 'Split' && isByteLevel(parts[1], false)) {
    const pattern = (parts[0].pattern as { Regex?: string } | undefined)?.Regex;
    if (pattern === QWEN2_REGEX) return 'qwen2';
    if (pattern === LLAMA3_REGEX) return 'llama-bpe';
  }
  return null;
}

/** A token string from tokenizer_config.json (`"<|im_end|>"` or `{ content: "<|im_end|>" }`). */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** convert_hf_to_gguf's does_token_look_special, for added tokens not flagged special. */
function looksSpecial(t: string): boolean {
  return (t.startsWith('<|') && t.endsWith('|>')) || ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(t) || (t.startsWith('<unused') && t.endsWith('>'));
}

function tokenizerMetadata(arch: ArchConfig, tokenizerJson: unknown, opts: HfToGgufOptions): [string, GgufValue][] {
  const tj = tokenizerJson as { model?: TokenizerJsonModel; added_tokens?: AddedToken[] } | null;
  const model = tj?.model;
  if (!model || model.type !== 'BPE' || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) {
    throw new Error(`hfToGguf: tokenizer.json must hold a BPE model with vocab and merges (got model type ${JSON.stringify(model?.type)}); only byte-level BPE tokenizers are supported`);
  }
  const V = arch.vocabSize;
  const tokens: (string | undefined)[] = new Array(V);
  const types = new Array<number>(V).fill(GGUF_TOKEN_TYPE.normal);
  const place = (content: string, id: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`hfToGguf: token ${JSON.stringify(content)} has id ${id}, outside the model's vocabulary of ${V}`);
    tokens[id] = content;
  };
  for (const [content, id] of Object.entries(model.vocab)) place(content, id);
  for (const t of tj!.added_tokens ?? []) {
    place(t.content, t.id);
    types[t.id] = t.special || looksSpecial(t.content) ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined;
  }
  // Model vocabularies may be larger than the tokenizer's: the converter fills the gap like this.
  for (let i = 0; i < V; i++) {
    if (tokens[i] === undefined) { tokens[i] = `[PAD${i}]`; types[i] = GGUF_TOKEN_TYPE.unused; }
  }
  const merges = model.merges.map((mg) => (Array.isArray(mg) ? `${mg[0]} ${mg[1]}` : mg));

  const pre = opts.pre ?? detectPreTokenizer(tokenizerJson);
  if (pre === null) {
    throw new Error(`hfToGguf: cannot tell llama.cpp's pre-tokenizer (tokenizer.ggml.pre) for this tokenizer.json; pass { pre: 'gpt-2' | 'llama-bpe' | 'qwen2' | 'smollm' | ... }`);
  }
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => { if (!idOf.has(t!)) idOf.set(t!, i); });
  const cfg = opts.tokenizerConfig ?? {};
  const special = (key: string, fallback: number | null): number | null => {
    const content = tokenContent(cfg[key]);
    if (content !== null) {
      const id = idOf.get(content);
      if (id === undefined) throw new Error(`hfToGguf: tokenizer_config.json ${key} ${JSON.stringify(content)} is not in the vocabulary`);
      return id;
    }
    return fallback;
  };

  const md: [string, GgufValue][] = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(pre)],
    ['tokenizer.ggml.tokens', gguf.arr('string', tokens as string[])],
    ['tokenizer.ggml.token_type', gguf.arr('int32', types)],
    ['tokenizer.ggml.merges', gguf.arr('string', merges)],
  ];
  const ids: [string, number | null][] = [
    ['bos_token_id', special('bos_token', arch.bosTokenId)],
    ['eos_token_id', special('eos_token', arch.eosTokenIds[0] ?? null)],
    ['unknown_token_id', special('unk_token', null)],
    ['padding_token_id', special('pad_token', null)],
  ];
  for (const [k, id] of ids) if (id !== null) md.push([`tokenizer.ggml.${k}`, gguf.u32(id)]);
  if (typeof cfg.add_bos_token === 'boolean') md.push(['tokenizer.ggml.add_bos_token', gguf.bool(cfg.add_bos_token)]);
  if (typeof cfg.add_eos_token === 'boolean') md.push(['tokenizer.ggml.add_eos_token', gguf.bool(cfg.add_eos_token)]);
  if (typeof cfg.chat_template === 'string') md.push(['tokenizer.chat_template', gguf.str(cfg.chat_template)]);
  return md;
}

// ---------------------------------------------------------------------------------------------
// HF → GGUF

function checkArch(arch: ArchConfig, where: string): void {
  if (!FAMILIES.includes(arch.family)) throw new Error(`${where}: unsupported architecture family '${arch.family}' (supported: ${FAMILIES.join(', ')})`);
  const positive = ['vocabSize', 'hiddenSize', 'intermediateSize', 'nLayer', 'nHead', 'nKvHead', 'headDim', 'maxPositions'] as const;
  for (const k of positive) if (!Number.isInteger(arch[k]) || arch[k] <= 0) throw new Error(`${where}: arch.${k} must be a positive integer, got ${arch[k]}`);
  if (arch.nHead % arch.nKvHead !== 0) throw new Error(`${where}: nHead ${arch.nHead} is not a multiple of nKvHead ${arch.nKvHead}`);
  if (arch.positions === 'rope' && arch.headDim % 2 !== 0) throw new Error(`${where}: RoPE needs an even headDim, got ${arch.headDim}`);
  if (arch.family === 'gpt2' && arch.nHead * arch.headDim !== arch.hiddenSize) throw new Error(`${where}: GPT-2 needs nHead·headDim = hiddenSize`);
}

/** Which ggml type a tensor is stored in, following convert_hf_to_gguf.py's prepare_tensors. */
function storageType(ggufName: string, shape: number[], dtype: GgufDType): GgufTensorType {
  if (shape.length <= 1 || ggufName.endsWith('_norm.weight') || ggufName.startsWith('position_embd.') || !ggufName.endsWith('.weight')) return 'F32';
  if (dtype === 'Q8_0' && shape[shape.length - 1]! % 32 !== 0) return 'F16';
  return dtype;
}

/** Write a Hugging Face model as GGUF bytes the way llama.cpp's converter would. */
export function hfToGguf(arch: ArchConfig, tensors: HfTensors, tokenizerJson: unknown, opts: HfToGgufOptions): Uint8Array {
  checkArch(arch, 'hfToGguf');
  if (!(['F32', 'F16', 'BF16', 'Q8_0'] as const).includes(opts.dtype)) throw new Error(`hfToGguf: dtype must be F32, F16, BF16 or Q8_0, got ${String(opts.dtype)}`);
  const a = arch.family;

  // GPT-2 checkpoints come with and without the `transformer.` prefix.
  const byName = new Map<string, HfTensor>();
  for (const [name, t] of tensors) {
    if (isIgnoredHfTensor(name)) continue;
    const key = a === 'gpt2' && name !== 'lm_head.weight' && !name.startsWith('transformer.') ? `transformer.${name}` : name;
    byName.set(key, t);
  }
  const mappings = tensorMappings(arch);
  const missing = mappings.filter((m) => !byName.has(m.hf)).map((m) => m.hf);
  if (missing.length > 0) throw new Error(`hfToGguf: ${missing.length} tensor(s) missing for ${arch.hfArchitecture}: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}`);
  const known = new Set(mappings.map((m) => m.hf));
  const extra = [...byName.keys()].filter((n) => !known.has(n));
  if (extra.length > 0) throw new Error(`hfToGguf: unexpected tensor(s) for this ${arch.hfArchitecture} config: ${extra.slice(0, 8).join(', ')} (check tiedEmbeddings / qkvBias / oBias / mlpBias / qkNorm)`);

  const out: GgufTensorToWrite[] = [];
  if (arch.ropeScaling?.type === 'llama3') {
    if (a !== 'llama') throw new Error(`hfToGguf: llama3 RoPE scaling is only supported for the llama family (llama.cpp reads rope_freqs for it), got ${a}`);
    out.push({ name: 'rope_freqs.weight', shape: [arch.headDim / 2], data: llama3RopeFactors(arch, arch.ropeScaling), type: 'F32' });
  }
  for (const m of mappings) {
    const t = byName.get(m.hf)!;
    if (t.shape.length !== m.shape.length || t.shape.some((d, i) => d !== m.shape[i])) {
      throw new Error(`hfToGguf: tensor ${m.hf} has shape [${t.shape.join(', ')}], expected [${m.shape.join(', ')}] for this config`);
    }
    let data = t.data, shape = m.shape;
    const cols = m.shape.length === 2 ? m.shape[1]! : 1;
    if (m.transform === 'permute-q') data = permuteRopeRows(data, arch.nHead, arch.headDim, cols);
    else if (m.transform === 'permute-k') data = permuteRopeRows(data, arch.nKvHead, arch.headDim, cols);
    else if (m.transform === 'transpose') { data = transpose2d(data, m.shape[0]!, m.shape[1]!); shape = [m.shape[1]!, m.shape[0]!]; }
    out.push({ name: m.gguf, shape, data, type: storageType(m.gguf, shape, opts.dtype) });
  }

  const k = (s: string): string => `${a}.${s}`;
  const md: [string, GgufValue][] = [
    ['general.architecture', gguf.str(a)],
    ['general.type', gguf.str('model')],
    ['general.name', gguf.str(opts.name ?? arch.hfArchitecture)],
    [k('block_count'), gguf.u32(arch.nLayer)],
    [k('context_length'), gguf.u32(arch.maxPositions)],
    [k('embedding_length'), gguf.u32(arch.hiddenSize)],
    [k('feed_forward_length'), gguf.u32(arch.intermediateSize)],
    [k('attention.head_count'), gguf.u32(arch.nHead)],
  ];
  if (a === 'gpt2') {
    md.push([k('attention.layer_norm_epsilon'), gguf.f32(arch.normEps)]);
  } else {
    md.push(
      [k('attention.head_count_kv'), gguf.u32(arch.nKvHead)],
      [k('rope.freq_base'), gguf.f32(arch.ropeTheta)],
      [k('attention.layer_norm_rms_epsilon'), gguf.f32(arch.normEps)],
      [k('attention.key_length'), gguf.u32(arch.headDim)],
      [k('attention.value_length'), gguf.u32(arch.headDim)],
      [k('vocab_size'), gguf.u32(arch.vocabSize)],
      [k('rope.dimension_count'), gguf.u32(arch.headDim)],
    );
    const sc = arch.ropeScaling;
    if (sc?.type === 'linear') md.push([k('rope.scaling.type'), gguf.str('linear')], [k('rope.scaling.factor'), gguf.f32(sc.factor)]);
    if (sc?.type === 'llama3') {
      md.push(
        [`${AGENTRL_ROPE}.type`, gguf.str('llama3')],
        [`${AGENTRL_ROPE}.factor`, gguf.f64(sc.factor)],
        [`${AGENTRL_ROPE}.low_freq_factor`, gguf.f64(sc.lowFreqFactor)],
        [`${AGENTRL_ROPE}.high_freq_factor`, gguf.f64(sc.highFreqFactor)],
        [`${AGENTRL_ROPE}.original_max_position_embeddings`, gguf.u32(sc.originalMaxPositions)],
      );
    }
  }
  md.push(['general.file_type', gguf.u32(FILE_TYPE[opts.dtype])], ['general.quantization_version', gguf.u32(2)]);
  md.push(...tokenizerMetadata(arch, tokenizerJson, opts));
  return writeGguf({ metadata: md, tensors: out });
}

// ---------------------------------------------------------------------------------------------
// GGUF → HF

export interface GgufToHfResult {
  arch: ArchConfig;
  tensors: HfTensors;
  tokenizer: GgufTokenizer;
}

function readTokenizer(file: GgufFile): GgufTokenizer {
  const model = metaString(file, 'tokenizer.ggml.model');
  if (model === undefined) throw new Error(`${file.source}: has no tokenizer (tokenizer.ggml.model is missing)`);
  if (model !== 'gpt2') throw new Error(`${file.source}: tokenizer.ggml.model is '${model}'; only byte-level BPE ('gpt2') tokenizers are supported`);
  const tokens = metaArray(file, 'tokenizer.ggml.tokens', ['string']);
  if (!tokens) throw new Error(`${file.source}: tokenizer.ggml.tokens is missing`);
  const intTypes = ['int32', 'uint32', 'int8', 'uint8', 'int16', 'uint16'] as const;
  const tokenTypes = (metaArray(file, 'tokenizer.ggml.token_type', intTypes) ?? tokens.map(() => GGUF_TOKEN_TYPE.normal)) as number[];
  if (tokenTypes.length !== tokens.length) throw new Error(`${file.source}: tokenizer.ggml.token_type has ${tokenTypes.length} entries for ${tokens.length} tokens`);
  const id = (key: string): number | null => {
    const v = metaNumber(file, `tokenizer.ggml.${key}`);
    if (v === undefined) return null;
    if (!Number.isInteger(v) || v < 0 || v >= tokens.length) throw new Error(`${file.source}: tokenizer.ggml.${key} ${v} is outside the vocabulary of ${tokens.length}`);
    return v;
  };
  return {
    model,
    pre: metaString(file, 'tokenizer.ggml.pre') ?? null,
    tokens: tokens as string[],
    tokenTypes,
    merges: (metaArray(file, 'tokenizer.ggml.merges', ['string']) ?? []) as string[],
    bosTokenId: id('bos_token_id'),
    eosTokenId: id('eos_token_id'),
    padTokenId: id('padding_token_id'),
    unkTokenId: id('unknown_token_id'),
    addBosToken: metaBool(file, 'tokenizer.ggml.add_bos_token') ?? null,
    addEosToken: metaBool(file, 'tokenizer.ggml.add_eos_token') ?? null,
    chatTemplate: metaString(file, 'tokenizer.chat_template') ?? null,
  };
}

/** Read a GGUF model back into Hugging Face form, undoing every llama.cpp convention. */
export function ggufToHf(bytes: Uint8Array, source = 'GGUF buffer'): GgufToHfResult {
  const file = parseGguf(bytes, source);
  const a = metaString(file, 'general.architecture');
  if (a === undefined) throw new Error(`${source}: general.architecture is missing`);
  if (!(FAMILIES as readonly string[]).includes(a)) throw new Error(`${source}: unsupported architecture '${a}' (supported: ${FAMILIES.join(', ')})`);
  const family = a as ArchFamily;
  const infos = new Map(file.tensorInfos.map((t) => [t.name, t]));
  const k = (s: string): string => `${family}.${s}`;

  const embd = infos.get('token_embd.weight');
  if (!embd) throw new Error(`${source}: tensor token_embd.weight is missing`);
  const hiddenSize = requireNumber(file, k('embedding_length'));
  const nHead = requireNumber(file, k('attention.head_count'));
  const nKvHead = metaNumber(file, k('attention.head_count_kv')) ?? nHead;
  const headDim = metaNumber(file, k('attention.key_length')) ?? hiddenSize / nHead;
  const valueLength = metaNumber(file, k('attention.value_length')) ?? headDim;
  if (valueLength !== headDim) throw new Error(`${source}: ${k('attention.value_length')} ${valueLength} ≠ key_length ${headDim} is not supported`);
  const gpt2 = family === 'gpt2';
  if (!gpt2) {
    const rot = metaNumber(file, k('rope.dimension_count')) ?? headDim;
    if (rot !== headDim) throw new Error(`${source}: partial rotary embeddings (rope.dimension_count ${rot} < head width ${headDim}) are not supported`);
  }
  const has = (n: string): boolean => infos.has(n);
  const ropeTheta = gpt2 ? 10000 : metaNumber(file, k('rope.freq_base')) ?? 10000;

  let ropeScaling: RopeScaling | null = null;
  if (!gpt2) {
    const scType = metaString(file, k('rope.scaling.type'));
    if (scType === 'linear') ropeScaling = { type: 'linear', factor: requireNumber(file, k('rope.scaling.factor')) };
    else if (scType !== undefined && scType !== 'none') throw new Error(`${source}: RoPE scaling type '${scType}' is not supported (supported: none, linear, llama3)`);
    const freqs = infos.get('rope_freqs.weight');
    if (freqs) {
      if (ropeScaling) throw new Error(`${source}: has both rope.scaling.type '${scType}' and rope_freqs.weight`);
      const factors = decodeGgufTensor(file, freqs).data;
      if (factors.length !== headDim / 2) throw new Error(`${source}: rope_freqs.weight has ${factors.length} factors, expected ${headDim / 2}`);
      const arch = { headDim, ropeTheta };
      if (metaString(file, `${AGENTRL_ROPE}.type`) === 'llama3') {
        ropeScaling = {
          type: 'llama3',
          factor: requireNumber(file, `${AGENTRL_ROPE}.factor`),
          lowFreqFactor: requireNumber(file, `${AGENTRL_ROPE}.low_freq_factor`),
          highFreqFactor: requireNumber(file, `${AGENTRL_ROPE}.high_freq_factor`),
          originalMaxPositions: requireNumber(file, `${AGENTRL_ROPE}.original_max_position_embeddings`),
        };
        if (!factorsMatch(llama3RopeFactors(arch, ropeScaling), factors)) throw new Error(`${source}: rope_freqs.weight disagrees with ${AGENTRL_ROPE}.* (file edited?)`);
      } else {
        ropeScaling = fitLlama3Scaling(factors, arch, source);
      }
    }
  }

  const tokenizer = readTokenizer(file);
  const arch: ArchConfig = {
    family,
    hfArchitecture: HF_ARCHITECTURE[family],
    vocabSize: embd.shape[0]!,
    hiddenSize,
    intermediateSize: requireNumber(file, k('feed_forward_length')),
    nLayer: requireNumber(file, k('block_count')),
    nHead,
    nKvHead,
    headDim,
    maxPositions: requireNumber(file, k('context_length')),
    norm: gpt2 ? 'layernorm' : 'rmsnorm',
    normEps: requireNumber(file, k(gpt2 ? 'attention.layer_norm_epsilon' : 'attention.layer_norm_rms_epsilon')),
    mlp: gpt2 ? 'gelu' : 'swiglu',
    positions: gpt2 ? 'learned' : 'rope',
    ropeTheta,
    ropeScaling,
    tiedEmbeddings: !has('output.weight'),
    qkvBias: gpt2 ? true : has('blk.0.attn_q.bias'),
    oBias: gpt2 ? true : has('blk.0.attn_output.bias'),
    mlpBias: gpt2 ? true : has('blk.0.ffn_up.bias'),
    qkNorm: has('blk.0.attn_q_norm.weight'),
    bosTokenId: tokenizer.bosTokenId,
    eosTokenIds: tokenizer.eosTokenId === null ? [] : [tokenizer.eosTokenId],
  };
  // f32 metadata: give the float32 value back as the decimal the config most likely held.
  arch.normEps = Number(arch.normEps.toPrecision(7));
  arch.ropeTheta = Number(arch.ropeTheta.toPrecision(7));
  checkArch(arch, source);

  const mappings = tensorMappings(arch);
  const missing = mappings.filter((m) => !infos.has(m.gguf)).map((m) => m.gguf);
  if (missing.length > 0) throw new Error(`${source}: ${missing.length} tensor(s) missing for a ${family} model: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}`);
  const known = new Set([...mappings.map((m) => m.gguf), 'rope_freqs.weight']);
  const extra = file.tensorInfos.map((t) => t.name).filter((n) => !known.has(n));
  if (extra.length > 0) throw new Error(`${source}: unexpected tensor(s) for a ${family} model: ${extra.slice(0, 8).join(', ')}`);

  const tensors: HfTensors = new Map();
  for (const m of mappings) {
    const info = infos.get(m.gguf)!;
    const t = decodeGgufTensor(file, info);
    const ggufShape = m.transform === 'transpose' ? [m.shape[1]!, m.shape[0]!] : m.shape;
    if (t.shape.length !== ggufShape.length || t.shape.some((d, i) => d !== ggufShape[i])) {
      throw new Error(`${source}: tensor ${m.gguf} has shape [${t.shape.join(', ')}] (ggml ne [${info.dims.join(', ')}]), expected [${ggufShape.join(', ')}]`);
    }
    let data = t.data;
    const cols = m.shape.length === 2 ? m.shape[1]! : 1;
    if (m.transform === 'permute-q') data = permuteRopeRows(data, arch.nHead, arch.headDim, cols, true);
    else if (m.transform === 'permute-k') data = permuteRopeRows(data, arch.nKvHead, arch.headDim, cols, true);
    else if (m.transform === 'transpose') data = transpose2d(data, ggufShape[0]!, ggufShape[1]!);
    // Q8_0 values are exactly representable in F32, not in F16/BF16.
    const dtype: HfDType = t.type === 'Q8_0' ? 'F32' : t.type;
    tensors.set(m.hf, { shape: [...m.shape], data, dtype });
  }
  return { arch, tensors, tokenizer };
}

/**
 * A Hugging Face tokenizer.json for a GGUF byte-level BPE tokenizer (so `HfTokenizer` can load a
 * GGUF model's vocabulary). Control and user-defined tokens become added tokens; the pre-tokenizer
 * is rebuilt from tokenizer.ggml.pre for the kinds `detectPreTokenizer` recognises.
 */
export function ggufTokenizerToJson(tok: GgufTokenizer, source = 'GGUF tokenizer'): Record<string, unknown> {
  const byteLevel = (useRegex: boolean): Record<string, unknown> => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
  const split = (regex: string): Record<string, unknown> => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
  let preTokenizer: Record<string, unknown>;
  switch (tok.pre) {
    case 'gpt-2': case 'default': case null: preTokenizer = byteLevel(true); break;
    case 'smollm': preTokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] }; break;
    case 'qwen2': preTokenizer = { type: 'Sequence', pretokenizers: [split(QWEN2_REGEX), byteLevel(false)] }; break;
    case 'llama-bpe': preTokenizer = { type: 'Sequence', pretokenizers: [split(LLAMA3_REGEX), byteLevel(false)] }; break;
    default: throw new Error(`${source}: pre-tokenizer '${tok.pre}' is not supported (supported: gpt-2, default, smollm, qwen2, llama-bpe)`);
  }
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tok.tokens.forEach((t, id) => {
    const type = tok.tokenTypes[id];
    if (type === GGUF_TOKEN_TYPE.unused) return;
    if (type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.userDefined) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === GGUF_TOKEN_TYPE.control });
      return;
    }
    if (!(t in vocab)) vocab[t] = id;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: byteLevel(true),
    decoder: byteLevel(true),
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: tok.merges,
    },
  };
}

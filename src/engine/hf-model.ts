/**
 * Hugging Face models on the built-in transformer: the `ModelConfig` of an `ArchConfig`, and the
 * weights mapped in (`loadHfIntoModel`) and back out (`modelToHfTensors`, the exact inverse: a
 * round trip is bit-identical).
 *
 * The mapping, per family:
 *   Llama / Qwen2 / Qwen3   q_proj | k_proj | v_proj  → attn.qkv.w rows (and biases → attn.qkv.b)
 *                           gate_proj | up_proj       → mlp.fc.w rows [gate | up] (one GEMM)
 *                           o_proj → attn.proj.w, down_proj → mlp.proj.w, q_norm/k_norm → attn.qnorm/knorm.w
 *   GPT-2                   Conv1D weights are [in, out]: transposed to the engine's [out, in];
 *                           c_attn is already fused q | k | v; learned positions; tied head.
 *
 * RoPE: transformers rotates the pairs (i, i + hd/2) of each head ("rotate half"); the engine's
 * kernel rotates adjacent pairs (2i, 2i+1). Both use frequency i for pair i, so reordering the rows
 * of q_proj and k_proj inside each head — HF row i to engine row 2i, HF row i + hd/2 to engine row
 * 2i+1 — makes the engine compute exactly HF's attention scores (q·k is the same sum, reordered),
 * while v and o_proj are untouched. Biases and the q/k norm gains are reordered with their rows.
 * llama.cpp's converter does the same permutation for Llama.
 */
import type { ArchConfig, HfTensor, HfTensors } from './arch.ts';
import type { Backend } from './backend.ts';
import { HfTokenizer } from './hf-tokenizer.ts';
import { readHfModelDir } from './hf-weights.ts';
import { parseModelConfig, Transformer, type ModelConfig } from './model.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Default context length of a loaded model: the model's own maximum, capped here because the KV
 * cache is allocated for the whole context (per slot: layers · 2 · contextLength · nKvHead·headDim
 * floats, e.g. 100 MB for Qwen2.5-0.5B at 4096) and open-weight models advertise 32k–128k.
 */
export const DEFAULT_HF_CONTEXT_LENGTH = 4096;

export interface HfModelOptions {
  /**
   * Tokens the model handles (prompt + completion). Default min(arch.maxPositions, 4096). With
   * learned positions (GPT-2) at most maxPositions; with RoPE larger values are allowed
   * (positions past the trained range extrapolate, as in transformers).
   */
  contextLength?: number;
}

/** The engine config of a Hugging Face architecture (throws, naming the field, for what the engine cannot run). */
export function modelConfigFromArch(arch: ArchConfig, opts: HfModelOptions = {}): ModelConfig {
  const who = `modelConfigFromArch (${arch.hfArchitecture})`;
  const fail = (msg: string): never => {
    throw new Error(`${who}: ${msg}`);
  };
  if (arch.family === 'gpt2') {
    if (arch.norm !== 'layernorm' || arch.positions !== 'learned' || arch.mlp !== 'gelu') fail(`GPT-2 needs norm 'layernorm', positions 'learned' and mlp 'gelu' (got ${arch.norm}, ${arch.positions}, ${arch.mlp})`);
    if (!arch.qkvBias || !arch.oBias || !arch.mlpBias) fail('GPT-2 has biases on every projection (qkvBias, oBias, mlpBias must be true)');
    if (arch.qkNorm) fail('qkNorm is not part of GPT-2');
    if (arch.nKvHead !== arch.nHead) fail(`nKvHead (${arch.nKvHead}) must equal nHead (${arch.nHead}) for GPT-2 (its c_attn is q | k | v of hiddenSize each)`);
    if (arch.headDim * arch.nHead !== arch.hiddenSize) fail(`headDim (${arch.headDim}) · nHead (${arch.nHead}) must equal hiddenSize (${arch.hiddenSize}) for GPT-2`);
  } else {
    if (arch.norm !== 'rmsnorm' || arch.positions !== 'rope' || arch.mlp !== 'swiglu') fail(`${arch.family} needs norm 'rmsnorm', positions 'rope' and mlp 'swiglu' (got ${arch.norm}, ${arch.positions}, ${arch.mlp})`);
  }
  const contextLength = opts.contextLength ?? Math.min(arch.maxPositions, DEFAULT_HF_CONTEXT_LENGTH);
  if (!Number.isInteger(contextLength) || contextLength < 2) fail(`contextLength must be an integer ≥ 2, got ${contextLength}`);
  if (arch.positions === 'learned' && contextLength > arch.maxPositions) {
    fail(`contextLength ${contextLength} exceeds maxPositions ${arch.maxPositions}: the model has learned position embeddings for ${arch.maxPositions} positions only`);
  }
  try {
    return parseModelConfig({
      vocabSize: arch.vocabSize, contextLength, nLayer: arch.nLayer, nHead: arch.nHead, nKvHead: arch.nKvHead,
      nEmbd: arch.hiddenSize, headDim: arch.headDim, intermediateSize: arch.intermediateSize,
      norm: arch.norm, normEps: arch.normEps, positions: arch.positions, mlp: arch.mlp,
      ropeBase: arch.ropeTheta, ropeScaling: arch.positions === 'rope' ? arch.ropeScaling : null,
      tiedEmbeddings: arch.tiedEmbeddings, qkvBias: arch.qkvBias, oBias: arch.oBias, mlpBias: arch.mlpBias, qkNorm: arch.qkNorm,
    });
  } catch (e) {
    throw new Error(`${who}: ${(e as Error).message}`, { cause: e });
  }
}

/** Config fields that decide the parameter layout and the arithmetic (not contextLength, not init). */
const ARCH_FIELDS = ['vocabSize', 'nLayer', 'nHead', 'nKvHead', 'nEmbd', 'headDim', 'intermediateSize', 'norm', 'normEps', 'positions', 'mlp', 'ropeBase', 'ropeScaling', 'tiedEmbeddings', 'qkvBias', 'oBias', 'mlpBias', 'qkNorm'] as const;

/** Throws, naming the first field, when `model` was not built for `arch`. */
function checkModelMatches(model: Transformer, arch: ArchConfig, who: string): void {
  const want = modelConfigFromArch(arch, { contextLength: model.config.contextLength });
  for (const k of ARCH_FIELDS) {
    if (k === 'ropeBase' && want.positions !== 'rope') continue;
    const got = JSON.stringify(model.config[k]), exp = JSON.stringify(want[k]);
    if (got !== exp) throw new Error(`${who}: the model's ${k} is ${got} but ${arch.hfArchitecture} needs ${exp}; build it with modelConfigFromArch(arch)`);
  }
}

/**
 * Reorder the rows of each of `nHeads` heads (hd rows of `cols` values each): HF's rotate-half pairs
 * (i, i + hd/2) ↔ the kernel's adjacent pairs (2i, 2i+1). `toEngine` maps HF order to the engine's,
 * otherwise back. Whatever maps q/k rows between the two (LoRA adapters on q_proj/k_proj) needs it.
 */
export function permuteRopeRows(src: Float32Array, nHeads: number, hd: number, cols: number, toEngine: boolean): Float32Array {
  const out = new Float32Array(src.length), half = hd / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (const [eng, hf] of [[2 * i, i], [2 * i + 1, i + half]] as const) {
        const e = (h * hd + eng) * cols, f = (h * hd + hf) * cols;
        if (toEngine) out.set(src.subarray(f, f + cols), e);
        else out.set(src.subarray(e, e + cols), f);
      }
    }
  }
  return out;
}

/** [rows, cols] → [cols, rows]. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * How one engine parameter is made of Hugging Face tensors: `parts` concatenated (in order, each
 * transformed by `toEngine`), and split back by `toHf`.
 */
interface ParamMapping {
  param: string;
  parts: { name: string; shape: number[]; toEngine: (d: Float32Array) => Float32Array; toHf: (d: Float32Array) => Float32Array }[];
}

/** The whole mapping of `arch` (HF names canonical: GPT-2 with the `transformer.` prefix). */
function mappings(arch: ArchConfig, contextLength: number): ParamMapping[] {
  const C = arch.hiddenSize, V = arch.vocabSize, I = arch.intermediateSize, hd = arch.headDim, NH = arch.nHead, NKV = arch.nKvHead;
  const id = (d: Float32Array) => d;
  const one = (param: string, name: string, shape: number[]): ParamMapping => ({ param, parts: [{ name, shape, toEngine: id, toHf: id }] });
  // Conv1D [in, out] ↔ engine [out, in].
  const conv = (param: string, name: string, inDim: number, outDim: number): ParamMapping => ({
    param, parts: [{ name, shape: [inDim, outDim], toEngine: (d) => transpose(d, inDim, outDim), toHf: (d) => transpose(d, outDim, inDim) }],
  });
  const rope = (name: string, heads: number, cols: number, shape: number[]) => ({
    name, shape, toEngine: (d: Float32Array) => permuteRopeRows(d, heads, hd, cols, true), toHf: (d: Float32Array) => permuteRopeRows(d, heads, hd, cols, false),
  });
  const part = (name: string, shape: number[]) => ({ name, shape, toEngine: id, toHf: id });
  const m: ParamMapping[] = [];

  if (arch.family === 'gpt2') {
    const p = 'transformer.';
    m.push(one('wte', `${p}wte.weight`, [V, C]));
    // The engine keeps the first contextLength position rows (all of them unless a shorter context was asked for).
    m.push({ param: 'wpe', parts: [{ name: `${p}wpe.weight`, shape: [arch.maxPositions, C], toEngine: (d) => d.slice(0, contextLength * C), toHf: id }] });
    for (let l = 0; l < arch.nLayer; l++) {
      const h = `${p}h.${l}.`, e = `h${l}.`;
      m.push(one(`${e}ln1.w`, `${h}ln_1.weight`, [C]), one(`${e}ln1.b`, `${h}ln_1.bias`, [C]));
      m.push(conv(`${e}attn.qkv.w`, `${h}attn.c_attn.weight`, C, 3 * C), one(`${e}attn.qkv.b`, `${h}attn.c_attn.bias`, [3 * C]));
      m.push(conv(`${e}attn.proj.w`, `${h}attn.c_proj.weight`, C, C), one(`${e}attn.proj.b`, `${h}attn.c_proj.bias`, [C]));
      m.push(one(`${e}ln2.w`, `${h}ln_2.weight`, [C]), one(`${e}ln2.b`, `${h}ln_2.bias`, [C]));
      m.push(conv(`${e}mlp.fc.w`, `${h}mlp.c_fc.weight`, C, I), one(`${e}mlp.fc.b`, `${h}mlp.c_fc.bias`, [I]));
      m.push(conv(`${e}mlp.proj.w`, `${h}mlp.c_proj.weight`, I, C), one(`${e}mlp.proj.b`, `${h}mlp.c_proj.bias`, [C]));
    }
    m.push(one('lnf.w', `${p}ln_f.weight`, [C]), one('lnf.b', `${p}ln_f.bias`, [C]));
  } else {
    m.push(one('wte', 'model.embed_tokens.weight', [V, C]));
    for (let l = 0; l < arch.nLayer; l++) {
      const h = `model.layers.${l}.`, a = `${h}self_attn.`, e = `h${l}.`;
      m.push(one(`${e}ln1.w`, `${h}input_layernorm.weight`, [C]));
      m.push({ param: `${e}attn.qkv.w`, parts: [rope(`${a}q_proj.weight`, NH, C, [NH * hd, C]), rope(`${a}k_proj.weight`, NKV, C, [NKV * hd, C]), part(`${a}v_proj.weight`, [NKV * hd, C])] });
      if (arch.qkvBias) m.push({ param: `${e}attn.qkv.b`, parts: [rope(`${a}q_proj.bias`, NH, 1, [NH * hd]), rope(`${a}k_proj.bias`, NKV, 1, [NKV * hd]), part(`${a}v_proj.bias`, [NKV * hd])] });
      if (arch.qkNorm) {
        m.push({ param: `${e}attn.qnorm.w`, parts: [rope(`${a}q_norm.weight`, 1, 1, [hd])] });
        m.push({ param: `${e}attn.knorm.w`, parts: [rope(`${a}k_norm.weight`, 1, 1, [hd])] });
      }
      m.push(one(`${e}attn.proj.w`, `${a}o_proj.weight`, [C, NH * hd]));
      if (arch.oBias) m.push(one(`${e}attn.proj.b`, `${a}o_proj.bias`, [C]));
      m.push(one(`${e}ln2.w`, `${h}post_attention_layernorm.weight`, [C]));
      m.push({ param: `${e}mlp.fc.w`, parts: [part(`${h}mlp.gate_proj.weight`, [I, C]), part(`${h}mlp.up_proj.weight`, [I, C])] });
      if (arch.mlpBias) m.push({ param: `${e}mlp.fc.b`, parts: [part(`${h}mlp.gate_proj.bias`, [I]), part(`${h}mlp.up_proj.bias`, [I])] });
      m.push(one(`${e}mlp.proj.w`, `${h}mlp.down_proj.weight`, [C, I]));
      if (arch.mlpBias) m.push(one(`${e}mlp.proj.b`, `${h}mlp.down_proj.bias`, [C]));
    }
    m.push(one('lnf.w', 'model.norm.weight', [C]));
  }
  if (!arch.tiedEmbeddings) m.push(one('lm_head.w', 'lm_head.weight', [V, C]));
  return m;
}

/** Buffers transformers writes beside the parameters (as src/engine/hf-weights.ts skips them). */
const isBuffer = (arch: ArchConfig, name: string) =>
  /(^|\.)rotary_emb\.inv_freq$/.test(name) || (arch.family === 'gpt2' && /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/.test(name));

/**
 * Copy Hugging Face weights (named as transformers saves them; GPT-2 with or without the
 * `transformer.` prefix) into `model`, which must have been built from `modelConfigFromArch(arch)`
 * (any contextLength). Every parameter is overwritten. Errors name the tensor: missing, wrong shape,
 * or not a parameter of `arch`.
 */
export function loadHfIntoModel(model: Transformer, arch: ArchConfig, tensors: HfTensors): void {
  const who = `loadHfIntoModel (${arch.hfArchitecture})`;
  checkModelMatches(model, arch, who);
  const byCanonical = new Map<string, { found: string; t: HfTensor }>();
  for (const [name, t] of tensors) {
    const canonical = arch.family === 'gpt2' && !name.startsWith('transformer.') && name !== 'lm_head.weight' ? `transformer.${name}` : name;
    const twin = byCanonical.get(canonical);
    if (twin) throw new Error(`${who}: tensor '${canonical}' is given twice (as '${twin.found}' and as '${name}')`);
    byCanonical.set(canonical, { found: name, t });
  }
  const used = new Set<string>();
  for (const { param, parts } of mappings(arch, model.config.contextLength)) {
    const dst = model.view(model.params, param);
    let offset = 0;
    for (const { name, shape, toEngine } of parts) {
      const got = byCanonical.get(name);
      if (!got) throw new Error(`${who}: missing tensor '${name}' [${shape.join(', ')}]`);
      const { found, t } = got;
      if (!sameShape(t.shape, shape)) throw new Error(`${who}: tensor '${found}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      if (t.data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`${who}: tensor '${found}' has ${t.data.length} values for shape [${shape.join(', ')}]`);
      const data = toEngine(t.data);
      dst.set(data, offset);
      offset += data.length;
      used.add(name);
    }
    if (offset !== dst.length) throw new Error(`${who}: parameter '${param}' got ${offset} values from ${parts.map((x) => `'${x.name}'`).join(', ')}, expected ${dst.length}`);
  }
  for (const [canonical, { found, t }] of byCanonical) {
    if (used.has(canonical) || isBuffer(arch, found)) continue;
    if (canonical === 'lm_head.weight' && arch.tiedEmbeddings) {
      // A tied model's saved head is accepted as a copy of the embedding (transformers may save both).
      const emb = model.view(model.params, 'wte');
      if (t.data.length === emb.length && t.data.every((v, i) => v === emb[i])) continue;
      throw new Error(`${who}: tensor '${found}' differs from the token embedding but the model ties them (tiedEmbeddings); set tie_word_embeddings: false to use a separate head`);
    }
    throw new Error(`${who}: unexpected tensor '${found}': not a parameter of ${arch.hfArchitecture} as the ArchConfig describes it (check nLayer, the bias flags, qkNorm and tiedEmbeddings)`);
  }
}

/**
 * The model's weights as Hugging Face tensors of `arch` (the exact inverse of `loadHfIntoModel`;
 * F32, names as `expectedHfTensors(arch)` lists them). With learned positions the model must keep
 * all of arch.maxPositions rows (export a shorter model with `{ ...arch, maxPositions: contextLength }`).
 */
export function modelToHfTensors(model: Transformer, arch: ArchConfig): HfTensors {
  const who = `modelToHfTensors (${arch.hfArchitecture})`;
  checkModelMatches(model, arch, who);
  if (arch.positions === 'learned' && model.config.contextLength !== arch.maxPositions) {
    throw new Error(`${who}: the model has ${model.config.contextLength} learned positions but arch.maxPositions is ${arch.maxPositions}; export with { ...arch, maxPositions: ${model.config.contextLength} }`);
  }
  const out: HfTensors = new Map();
  for (const { param, parts } of mappings(arch, model.config.contextLength)) {
    const src = model.view(model.params, param);
    let offset = 0;
    for (const { name, shape, toHf } of parts) {
      const n = shape.reduce((a, b) => a * b, 1);
      out.set(name, { shape: [...shape], data: toHf(src.slice(offset, offset + n)), dtype: 'F32' });
      offset += n;
    }
  }
  return out;
}

export interface LoadedHfModel {
  model: Transformer;
  arch: ArchConfig;
  /** From the directory's tokenizer.json (+ tokenizer_config.json), when it has one. */
  tokenizer?: HfTokenizer;
  /** generation_config.json, when present. */
  generationConfig?: Record<string, unknown>;
}

/** Read a Hugging Face model directory (src/engine/hf-weights.ts) into a new `Transformer` on `backend`. */
export async function loadHfModel(dir: string, backend: Backend, opts: HfModelOptions = {}): Promise<LoadedHfModel> {
  const { arch, tensors, generationConfig } = await readHfModelDir(dir);
  const model = new Transformer(modelConfigFromArch(arch, opts), backend, 0);
  loadHfIntoModel(model, arch, tensors);
  const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? HfTokenizer.fromDirectory(dir) : undefined;
  return { model, arch, ...(tokenizer ? { tokenizer } : {}), ...(generationConfig ? { generationConfig } : {}) };
}

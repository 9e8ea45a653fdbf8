/**
 * Exporting what the built-in engine trained, in the formats other tools load:
 *
 *   exportMergedHf      the model's current weights (LoRA merged in) as a Hugging Face directory —
 *                       the source model's tensor names, config.json, tokenizer files — that
 *                       transformers, vLLM and SGLang load like the original.
 *   exportPeftAdapter   a LoRA adapter as PEFT saves one (adapter_model.safetensors +
 *                       adapter_config.json), to serve with vLLM/SGLang's LoRA support or load with
 *                       `PeftModel.from_pretrained(base, dir)`.
 *   loadPeftAdapter     the inverse: a PEFT LoRA directory onto a loaded base model (merged).
 *
 * PEFT's conventions (peft/tuners/lora): tensors `base_model.model.<module path>.lora_A.weight`
 * [r, in] and `.lora_B.weight` [out, r] (the adapter name is stripped on save), the update is
 * (lora_alpha / r)·B·A added to the module's weight; GPT-2's Conv1D stores its weight [in, out], so
 * PEFT sets `fan_in_fan_out: true` and adds the transpose of B·A — A and B themselves have the same
 * shapes as for a Linear, which is also how the engine stores them (it keeps Conv1D weights
 * transposed to [out, in]).
 *
 * RoPE: the engine keeps q_proj/k_proj rows permuted per head for its interleaved-pair rotary
 * kernel (hf-model.ts `permuteRopeRows`). W_engine = P·W_hf, so an adapter W_engine += s·B·A is
 * W_hf += s·(P⁻¹B)·A: on export the rows of q/k `lora_B` are un-permuted (lora_A is unchanged), and
 * permuted again on load. GPT-2 has learned positions and no permutation; its c_attn adapter spans
 * the fused q | k | v rows, as PEFT's does.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchConfig, HfDType } from '../engine/arch.ts';
import { writeFileSynced } from '../engine/checkpoint.ts';
import { archToHfConfig } from '../engine/hf-config.ts';
import { modelToHfTensors, permuteRopeRows } from '../engine/hf-model.ts';
import type { HfTokenizer } from '../engine/hf-tokenizer.ts';
import { writeDirAtomically, writeHfModelDir } from '../engine/hf-weights.ts';
import type { ModelConfig, Transformer } from '../engine/model.ts';
import { readSafetensorsFileAsF32, writeSafetensorsFileAs } from '../engine/safetensors.ts';
import { LoraAdapter, type LoraModule, type LoraTarget } from './lora.ts';

export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
export const PEFT_CONFIG_FILE = 'adapter_config.json';

export interface ExportMergedOptions {
  /** F32 is exact; BF16 halves the size (round to nearest even), as most published checkpoints are stored. */
  dtype: Extract<HfDType, 'F32' | 'BF16'>;
  /**
   * Tokenizer files to ship: a Hugging Face directory (its tokenizer.json, tokenizer_config.json,
   * generation_config.json, … are copied) or a loaded HfTokenizer (tokenizer.json and
   * tokenizer_config.json are written from it, e.g. for a model loaded from GGUF or a checkpoint).
   */
  tokenizerFrom?: string | HfTokenizer;
  /** With an HfTokenizer: the chat template to store in tokenizer_config.json when its config has none. */
  chatTemplate?: string;
  /** Replace an existing non-empty directory (default: refuse). */
  overwrite?: boolean;
}

/**
 * The model's current weights (a LoRA adapter's update is already merged into them) as a Hugging
 * Face model directory of `arch`, written atomically (src/engine/hf-weights.ts). Returns the files
 * written.
 */
export async function exportMergedHf(model: Transformer, arch: ArchConfig, dir: string, opts: ExportMergedOptions): Promise<{ files: string[] }> {
  if (opts.dtype !== 'F32' && opts.dtype !== 'BF16') throw new Error(`exportMergedHf ${dir}: dtype must be 'F32' or 'BF16', got ${JSON.stringify(opts.dtype)}`);
  model.assertFiniteParams(`exportMergedHf ${dir}`);
  const tensors = modelToHfTensors(model, arch);
  if (typeof opts.tokenizerFrom !== 'object') {
    return writeHfModelDir(dir, arch, tensors, { dtype: opts.dtype, tokenizerFrom: opts.tokenizerFrom, overwrite: opts.overwrite });
  }
  // writeHfModelDir copies tokenizer files from a directory: stage them in a private one.
  const staging = await mkdtemp(join(tmpdir(), 'agentrl-export-tokenizer-'));
  try {
    const { tokenizer, config } = opts.tokenizerFrom.toJSON();
    const cfg = { ...(config as Record<string, unknown>) };
    if (opts.chatTemplate !== undefined && (cfg.chat_template === undefined || cfg.chat_template === null)) cfg.chat_template = opts.chatTemplate;
    await writeJson(join(staging, 'tokenizer.json'), tokenizer);
    await writeJson(join(staging, 'tokenizer_config.json'), cfg);
    return await writeHfModelDir(dir, arch, tensors, { dtype: opts.dtype, tokenizerFrom: staging, overwrite: opts.overwrite });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * An ArchConfig for a model known only by its engine config (e.g. a trainer checkpoint, which stores
 * `ModelConfig`, not the Hugging Face config it came from). The family follows from the features:
 * learned positions → GPT-2; q/k norms → Qwen3; q/k/v biases without o/MLP biases → Qwen2; else
 * Llama (attention_bias / mlp_bias as needed). What the engine config does not keep is filled in:
 * maxPositions = contextLength, the given bos/eos ids. Throws, naming the field, when no supported
 * config.json can express the model.
 */
export function archFromModelConfig(c: ModelConfig, ids: { eosTokenIds: number[]; bosTokenId?: number | null; maxPositions?: number }): ArchConfig {
  const family: ArchConfig['family'] = c.positions === 'learned' ? 'gpt2' : c.qkNorm ? 'qwen3' : c.qkvBias && !c.oBias && !c.mlpBias ? 'qwen2' : 'llama';
  const hfArchitecture = { gpt2: 'GPT2LMHeadModel', qwen3: 'Qwen3ForCausalLM', qwen2: 'Qwen2ForCausalLM', llama: 'LlamaForCausalLM' }[family];
  const arch: ArchConfig = {
    family, hfArchitecture, vocabSize: c.vocabSize, hiddenSize: c.nEmbd, intermediateSize: c.intermediateSize, nLayer: c.nLayer,
    nHead: c.nHead, nKvHead: c.nKvHead, headDim: c.headDim,
    maxPositions: c.positions === 'learned' ? c.contextLength : ids.maxPositions ?? c.contextLength,
    norm: c.norm, normEps: c.normEps, mlp: c.mlp, positions: c.positions,
    ropeTheta: c.positions === 'rope' ? c.ropeBase : 10000, ropeScaling: c.positions === 'rope' ? c.ropeScaling : null,
    tiedEmbeddings: c.tiedEmbeddings, qkvBias: c.qkvBias, oBias: c.oBias, mlpBias: c.mlpBias, qkNorm: c.qkNorm,
    bosTokenId: ids.bosTokenId ?? null, eosTokenIds: [...ids.eosTokenIds],
  };
  try {
    archToHfConfig(arch);
  } catch (e) {
    throw new Error(`this model config has no Hugging Face equivalent: ${(e as Error).message}`, { cause: e });
  }
  return arch;
}

// ---------------------------------------------------------------------------------------------
// PEFT

export interface ExportPeftOptions {
  /** `base_model_name_or_path` of adapter_config.json (a hub id or the base model's directory); default null. */
  baseModel?: string;
  /** Replace an existing non-empty directory (default: refuse). */
  overwrite?: boolean;
}

/** Where a LoRA target lives in the Hugging Face model (the module path PEFT names it by). */
function peftModulePath(arch: ArchConfig, t: LoraTarget): string {
  if (arch.family === 'gpt2') {
    const h = `transformer.h.${t.layer}`;
    if (t.module === 'c_attn') return `${h}.attn.c_attn`;
    if (t.module === 'c_fc') return `${h}.mlp.c_fc`;
    if (t.module === 'c_proj') return t.param.includes('.attn.') ? `${h}.attn.c_proj` : `${h}.mlp.c_proj`;
  } else {
    const h = `model.layers.${t.layer}`;
    if (t.module === 'q_proj' || t.module === 'k_proj' || t.module === 'v_proj' || t.module === 'o_proj') return `${h}.self_attn.${t.module}`;
    if (t.module === 'gate_proj' || t.module === 'up_proj' || t.module === 'down_proj') return `${h}.mlp.${t.module}`;
  }
  throw new Error(`LoRA module '${t.module}' has no place in a ${arch.hfArchitecture}`);
}

const peftName = (path: string, which: 'A' | 'B') => `base_model.model.${path}.lora_${which}.weight`;

/** lora_B rows between the engine's order and Hugging Face's: q/k rows of rotary models are permuted per head. */
function convertB(arch: ArchConfig, t: LoraTarget, B: Float32Array, rank: number, toEngine: boolean): Float32Array {
  if (arch.positions !== 'rope') return Float32Array.from(B);
  if (t.module === 'q_proj') return permuteRopeRows(B, arch.nHead, arch.headDim, rank, toEngine);
  if (t.module === 'k_proj') return permuteRopeRows(B, arch.nKvHead, arch.headDim, rank, toEngine);
  return Float32Array.from(B);
}

/** Throws, naming the field, when `model` was not built for `arch` (the shapes the adapter names depend on). */
function checkModelArch(model: Transformer, arch: ArchConfig, who: string): void {
  const c = model.config;
  const pairs: [string, unknown, unknown][] = [
    ['nLayer', c.nLayer, arch.nLayer], ['nHead', c.nHead, arch.nHead], ['nKvHead', c.nKvHead, arch.nKvHead], ['headDim', c.headDim, arch.headDim],
    ['nEmbd', c.nEmbd, arch.hiddenSize], ['intermediateSize', c.intermediateSize, arch.intermediateSize], ['mlp', c.mlp, arch.mlp], ['positions', c.positions, arch.positions],
  ];
  for (const [k, got, want] of pairs) {
    if (got !== want) throw new Error(`${who}: the model's ${k} is ${JSON.stringify(got)} but ${arch.hfArchitecture} as described has ${JSON.stringify(want)}; pass the ArchConfig the model was loaded with`);
  }
}

/** The modules a LoRA config adapts (its targetModules, or all of the family's linear layers). */
function adaptedModules(lora: LoraAdapter): string[] {
  return [...new Set(lora.targets.map((t) => t.module))].sort();
}

/** adapter_config.json of a LoRA adapter on `arch`, as PEFT's LoraConfig.save_pretrained writes it. */
export function peftAdapterConfig(lora: LoraAdapter, arch: ArchConfig, baseModel: string | null): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    revision: null,
    inference_mode: true,
    r: lora.config.rank,
    lora_alpha: lora.config.alpha,
    lora_dropout: 0.0,
    target_modules: adaptedModules(lora),
    bias: 'none',
    // GPT-2's Conv1D keeps its weight [in, out]; PEFT forces this to true for it anyway.
    fan_in_fan_out: arch.family === 'gpt2',
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
}

/**
 * Write a LoRA adapter as PEFT's `save_pretrained` does: adapter_model.safetensors (F32) and
 * adapter_config.json, atomically. `lora` must be attached to a model of `arch`.
 */
export async function exportPeftAdapter(lora: LoraAdapter, arch: ArchConfig, dir: string, opts: ExportPeftOptions = {}): Promise<{ files: string[] }> {
  const who = `exportPeftAdapter ${dir}`;
  checkModelArch(lora.model, arch, who);
  const r = lora.config.rank;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  lora.targets.forEach((t, i) => {
    const a = lora.layout[2 * i]!, b = lora.layout[2 * i + 1]!;
    const A = lora.params.subarray(a.offset, a.offset + a.size), B = lora.params.subarray(b.offset, b.offset + b.size);
    for (const [x, what] of [[A, 'lora_A'], [B, 'lora_B']] as const) {
      const bad = x.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`${who}: adapter ${what} of ${peftModulePath(arch, t)} holds ${x[bad]} at index ${bad}; refusing to write non-finite weights`);
    }
    const path = peftModulePath(arch, t);
    tensors.set(peftName(path, 'A'), { shape: [r, t.cols], data: Float32Array.from(A) });
    tensors.set(peftName(path, 'B'), { shape: [t.rows, r], data: convertB(arch, t, B, r, false) });
  });
  const config = peftAdapterConfig(lora, arch, opts.baseModel ?? null);
  return writeDirAtomically(dir, who, opts.overwrite ?? false, async (tmp) => {
    await writeSafetensorsFileAs(join(tmp, PEFT_WEIGHTS_FILE), tensors, 'F32', { format: 'pt' });
    await writeJson(join(tmp, PEFT_CONFIG_FILE), config);
    return [PEFT_WEIGHTS_FILE, PEFT_CONFIG_FILE];
  });
}

const ALL_MODULES: Record<'swiglu' | 'gelu', readonly LoraModule[]> = {
  swiglu: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  gelu: ['c_attn', 'c_proj', 'c_fc'],
};

/**
 * Load a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors) onto `model`, which
 * holds the base weights of `arch`: returns a LoraAdapter with the saved rank, alpha and modules
 * whose A/B are the saved ones (q/k lora_B rows permuted for the engine), merged into the model.
 * The adapter can be trained further. Settings the engine cannot reproduce (DoRA, rsLoRA, per-layer
 * ranks, a subset of layers, trained biases, extra saved modules) are refused by name.
 */
export async function loadPeftAdapter(dir: string, model: Transformer, arch: ArchConfig): Promise<LoraAdapter> {
  const cfgPath = join(dir, PEFT_CONFIG_FILE), wPath = join(dir, PEFT_WEIGHTS_FILE);
  const who = `loadPeftAdapter ${dir}`;
  checkModelArch(model, arch, who);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(cfgPath, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${who}: ${PEFT_CONFIG_FILE} is missing (not a PEFT adapter directory?)` : `${cfgPath}: cannot be read as JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${cfgPath}: must hold a JSON object`);
  const cfg = raw as Record<string, unknown>;
  const bad = (field: string, why: string): never => { throw new Error(`${cfgPath}: ${field} ${why}`); };
  if (cfg.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(cfg.peft_type)}; only LORA adapters are supported`);
  const rank = cfg.r;
  if (!Number.isInteger(rank) || (rank as number) < 1) bad('r', `must be an integer ≥ 1, got ${JSON.stringify(rank)}`);
  const alpha = cfg.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha)) bad('lora_alpha', `must be a positive number, got ${JSON.stringify(alpha)}`);
  if (cfg.use_dora) bad('use_dora', 'is true; DoRA adapters are not supported');
  if (cfg.use_rslora) bad('use_rslora', 'is true; rank-stabilised scaling (alpha/√r) is not supported');
  if (cfg.bias !== undefined && cfg.bias !== 'none') bad('bias', `is ${JSON.stringify(cfg.bias)}; only adapters without trained biases ("none") are supported`);
  for (const f of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = cfg[f];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v).length > 0)) bad(f, 'is not empty; per-module ranks/alphas are not supported');
  }
  if (cfg.layers_to_transform !== undefined && cfg.layers_to_transform !== null) bad('layers_to_transform', 'is set; adapters on a subset of layers are not supported');
  const saved = cfg.modules_to_save;
  if (saved !== undefined && saved !== null && !(Array.isArray(saved) && saved.length === 0)) bad('modules_to_save', `is ${JSON.stringify(saved)}; fully trained extra modules are not supported`);
  const family = arch.mlp === 'swiglu' ? 'swiglu' : 'gelu';
  let targetModules: LoraModule[] | undefined;
  const tm = cfg.target_modules;
  if (tm === 'all-linear') targetModules = undefined;
  else if (Array.isArray(tm) && tm.length > 0 && tm.every((m) => typeof m === 'string')) {
    const unknown = tm.filter((m) => !(ALL_MODULES[family] as readonly string[]).includes(m));
    if (unknown.length > 0) bad('target_modules', `names ${unknown.map((m) => `'${m}'`).join(', ')}, not a linear layer of ${arch.hfArchitecture} (supported: ${ALL_MODULES[family].join(', ')})`);
    targetModules = [...new Set(tm as LoraModule[])];
  } else bad('target_modules', `must be a list of module names (e.g. ["q_proj", "v_proj"]) or "all-linear", got ${JSON.stringify(tm)}`);

  let file;
  try {
    file = await readSafetensorsFileAsF32(wPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${who}: ${PEFT_WEIGHTS_FILE} is missing (only safetensors adapters are supported)`);
    throw e;
  }
  // GPT-2 adapters made on a bare GPT2Model lack the `transformer.` prefix.
  const found = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of file.tensors) {
    const canonical = arch.family === 'gpt2' ? name.replace(/^base_model\.model\.h\./, 'base_model.model.transformer.h.') : name;
    found.set(canonical, t);
  }
  const lora = new LoraAdapter(model, { rank: rank as number, alpha: alpha as number, ...(targetModules ? { targetModules } : {}) });
  const used = new Set<string>();
  lora.targets.forEach((t, i) => {
    const path = peftModulePath(arch, t);
    for (const [which, view, shape] of [['A', lora.layout[2 * i]!, [rank as number, t.cols]], ['B', lora.layout[2 * i + 1]!, [t.rows, rank as number]]] as const) {
      const name = peftName(path, which);
      const x = found.get(name);
      if (!x) throw new Error(`${wPath}: missing tensor '${name}' [${shape.join(', ')}] (${PEFT_CONFIG_FILE} adapts ${adaptedModules(lora).join(', ')} in every layer)`);
      if (x.shape.length !== 2 || x.shape[0] !== shape[0] || x.shape[1] !== shape[1]) throw new Error(`${wPath}: tensor '${name}' has shape [${x.shape.join(', ')}], expected [${shape.join(', ')}] (r = ${rank})`);
      const nonFinite = x.data.findIndex((v) => !Number.isFinite(v));
      if (nonFinite >= 0) throw new Error(`${wPath}: tensor '${name}' holds ${x.data[nonFinite]} at index ${nonFinite}; refusing non-finite weights`);
      const data = which === 'B' ? convertB(arch, t, x.data, rank as number, true) : x.data;
      lora.params.set(data, view.offset);
      used.add(name);
    }
  });
  const extra = [...found.keys()].filter((n) => !used.has(n));
  if (extra.length > 0) throw new Error(`${wPath}: unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 4).map((n) => `'${n}'`).join(', ')}${extra.length > 4 ? ` and ${extra.length - 4} more` : ''}: not a LoRA A/B of the modules ${PEFT_CONFIG_FILE} lists for ${arch.hfArchitecture}`);
  lora.merge();
  return lora;
}

// ---------------------------------------------------------------------------------------------

/** `value` as pretty JSON in a new file, fsynced. */
function writeJson(path: string, value: unknown): Promise<void> {
  return writeFileSynced(path, Buffer.from(JSON.stringify(value, null, 2) + '\n', 'utf8'));
}


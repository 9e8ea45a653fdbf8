/**
 * Hugging Face model directories, read and written:
 *
 *   config.json                          the architecture (src/engine/hf-config.ts)
 *   model.safetensors                    all weights, or
 *   model-00001-of-0000N.safetensors …   shards, listed by
 *   model.safetensors.index.json         {metadata: {total_size}, weight_map: {tensor: shard file}}
 *   generation_config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja
 *
 * `readHfModelDir` checks the headers of every weight file against the architecture before it
 * reads any data (the expected tensors and shapes are `expectedHfTensors(arch)`), then decodes
 * F32/F16/BF16 to F32 and refuses non-finite values: it returns a complete model or throws, naming
 * the file, the tensor and the expected and actual shapes. It tolerates what transformers writes
 * beside the parameters: GPT-2's `attn.bias` / `attn.masked_bias` buffers, `rotary_emb.inv_freq`,
 * and an `lm_head.weight` on a tied model when it equals the embedding. GPT-2 names may come with
 * or without the `transformer.` prefix; they are returned with it (as GPT2LMHeadModel saves them).
 * F64 and integer weights are refused (no supported checkpoint ships them).
 *
 * `writeHfModelDir` writes such a directory atomically: everything goes into `<dir>.tmp-<pid>-<rand>`
 * (files fsynced), which is then renamed to `dir`; an existing non-empty `dir` is only replaced with
 * `overwrite: true` (moved aside, the new one renamed in, the old one deleted).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { ArchConfig, HfDType, HfTensor, HfTensors } from './arch.ts';
import { fsyncDir, pathExists, writeFileSynced } from './checkpoint.ts';
import { archToHfConfig, parseHfConfig } from './hf-config.ts';
import { nonFiniteAt, numel, readSafetensorsFileAsF32, readSafetensorsFileHeader, writeSafetensorsFileAs } from './safetensors.ts';

export const HF_CONFIG_FILE = 'config.json';
export const HF_WEIGHTS_FILE = 'model.safetensors';
export const HF_INDEX_FILE = 'model.safetensors.index.json';
export const HF_GENERATION_CONFIG_FILE = 'generation_config.json';
/** Copied by `writeHfModelDir`'s `tokenizerFrom` when present (tokenizer.json must be). */
export const HF_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json', 'chat_template.jinja'] as const;
/** transformers' default `max_shard_size` ("5GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

const DTYPE_BYTES: Record<HfDType, number> = { F32: 4, F16: 2, BF16: 2 };
const TORCH_DTYPE: Record<HfDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export interface HfModelDir {
  arch: ArchConfig;
  /** Exactly the tensors of `expectedHfTensors(arch)`, in that order. */
  tensors: HfTensors;
  /** generation_config.json, when the directory has one. */
  generationConfig?: Record<string, unknown>;
}

export interface WriteHfOptions {
  /** Stored dtype: F32 is exact; BF16 and F16 round to nearest even. */
  dtype: HfDType;
  /** Shard when the weights exceed this many bytes (transformers' rule: greedy in model order; a larger tensor gets a shard of its own). Default 5 GB. */
  maxShardBytes?: number;
  /** A directory whose tokenizer files (HF_TOKENIZER_FILES) are copied alongside; it must have tokenizer.json. */
  tokenizerFrom?: string;
  /** Replace an existing non-empty `dir` (default: refuse). */
  overwrite?: boolean;
}

/**
 * Every tensor name and shape of `arch` under Hugging Face naming, in model order (GPT-2 with the
 * `transformer.` prefix). Linear weights are `[out, in]`; GPT-2's Conv1D weights are `[in, out]`.
 */
export function expectedHfTensors(arch: ArchConfig): Map<string, number[]> {
  const s = new Map<string, number[]>();
  const C = arch.hiddenSize, I = arch.intermediateSize, V = arch.vocabSize, hd = arch.headDim;
  const q = arch.nHead * hd, kv = arch.nKvHead * hd;
  if (arch.family === 'gpt2') {
    const p = 'transformer.';
    s.set(`${p}wte.weight`, [V, C]);
    s.set(`${p}wpe.weight`, [arch.maxPositions, C]);
    for (let l = 0; l < arch.nLayer; l++) {
      const h = `${p}h.${l}.`;
      s.set(`${h}ln_1.weight`, [C]); s.set(`${h}ln_1.bias`, [C]);
      s.set(`${h}attn.c_attn.weight`, [C, 3 * C]); s.set(`${h}attn.c_attn.bias`, [3 * C]); // Conv1D: [in, out]
      s.set(`${h}attn.c_proj.weight`, [C, C]); s.set(`${h}attn.c_proj.bias`, [C]);
      s.set(`${h}ln_2.weight`, [C]); s.set(`${h}ln_2.bias`, [C]);
      s.set(`${h}mlp.c_fc.weight`, [C, I]); s.set(`${h}mlp.c_fc.bias`, [I]);
      s.set(`${h}mlp.c_proj.weight`, [I, C]); s.set(`${h}mlp.c_proj.bias`, [C]);
    }
    s.set(`${p}ln_f.weight`, [C]); s.set(`${p}ln_f.bias`, [C]);
    if (!arch.tiedEmbeddings) s.set('lm_head.weight', [V, C]);
    return s;
  }
  s.set('model.embed_tokens.weight', [V, C]);
  for (let l = 0; l < arch.nLayer; l++) {
    const h = `model.layers.${l}.`;
    s.set(`${h}input_layernorm.weight`, [C]);
    s.set(`${h}self_attn.q_proj.weight`, [q, C]);
    s.set(`${h}self_attn.k_proj.weight`, [kv, C]);
    s.set(`${h}self_attn.v_proj.weight`, [kv, C]);
    if (arch.qkvBias) {
      s.set(`${h}self_attn.q_proj.bias`, [q]); s.set(`${h}self_attn.k_proj.bias`, [kv]); s.set(`${h}self_attn.v_proj.bias`, [kv]);
    }
    if (arch.qkNorm) { s.set(`${h}self_attn.q_norm.weight`, [hd]); s.set(`${h}self_attn.k_norm.weight`, [hd]); }
    s.set(`${h}self_attn.o_proj.weight`, [C, q]);
    if (arch.oBias) s.set(`${h}self_attn.o_proj.bias`, [C]);
    s.set(`${h}post_attention_layernorm.weight`, [C]);
    s.set(`${h}mlp.gate_proj.weight`, [I, C]);
    s.set(`${h}mlp.up_proj.weight`, [I, C]);
    s.set(`${h}mlp.down_proj.weight`, [C, I]);
    if (arch.mlpBias) { s.set(`${h}mlp.gate_proj.bias`, [I]); s.set(`${h}mlp.up_proj.bias`, [I]); s.set(`${h}mlp.down_proj.bias`, [C]); }
  }
  s.set('model.norm.weight', [C]);
  if (!arch.tiedEmbeddings) s.set('lm_head.weight', [V, C]);
  return s;
}

/** The embedding matrix's name (what a tied `lm_head.weight` must equal). */
export function embeddingName(arch: ArchConfig): string {
  return arch.family === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
}

/** `name` as `expectedHfTensors` spells it: GPT-2 names get the `transformer.` prefix (except lm_head). */
export function canonicalHfName(arch: ArchConfig, name: string): string {
  return arch.family === 'gpt2' && !name.startsWith('transformer.') && name !== 'lm_head.weight' ? `transformer.${name}` : name;
}

/** Buffers (not parameters) that transformers versions write into checkpoints: skipped. */
function isIgnoredBuffer(arch: ArchConfig, name: string): boolean {
  if (/(^|\.)rotary_emb\.inv_freq$/.test(name)) return true;
  return arch.family === 'gpt2' && /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/.test(name);
}

/** Read, check and decode a Hugging Face model directory (see the file comment). */
export async function readHfModelDir(dir: string): Promise<HfModelDir> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${dir}: model directory does not exist`);
    throw e;
  }
  if (!st.isDirectory()) throw new Error(`${dir}: is not a directory (pass the Hugging Face model directory, the one holding config.json)`);

  const configPath = join(dir, HF_CONFIG_FILE);
  const configJson = await readJson(configPath, `${dir}: ${HF_CONFIG_FILE} is missing (not a Hugging Face model directory?)`);
  const arch = parseHfConfig(configJson, configPath);

  // 1. Headers only: names, dtypes and shapes, checked against the architecture before any data is read.
  const files = await weightFileHeaders(dir);
  const found = new Map<string, { shape: number[]; file: string }>();
  for (const f of files) for (const [name, t] of f.tensors) found.set(name, { shape: t.shape, file: f.path });
  const plan = planTensors(arch, found, configPath, dir);

  // 2. Data, one file at a time, keeping only the model's tensors.
  const wanted = new Set([...plan.keep.values(), ...(plan.tiedHead !== null ? [plan.tiedHead] : [])]);
  const byFoundName = new Map<string, HfTensor>();
  for (const f of files) {
    const { tensors } = await readSafetensorsFileAsF32(f.path);
    for (const [name, t] of tensors) if (wanted.has(name)) byFoundName.set(name, t);
  }
  const tensors: HfTensors = new Map();
  for (const [canonical, name] of plan.keep) {
    const t = byFoundName.get(name)!;
    const bad = nonFiniteAt({ dtype: 'F32', shape: t.shape, data: t.data });
    if (bad) throw new Error(`${found.get(name)!.file}: tensor '${name}' ${bad}; refusing to load non-finite weights (the file is corrupt or the model diverged)`);
    tensors.set(canonical, t);
  }
  if (plan.tiedHead !== null) checkTiedHead(arch, byFoundName.get(plan.tiedHead)!, tensors, `${found.get(plan.tiedHead)!.file}: tensor '${plan.tiedHead}'`, configPath);

  const genPath = join(dir, HF_GENERATION_CONFIG_FILE);
  let generationConfig: Record<string, unknown> | undefined;
  if (await pathExists(genPath)) {
    const g = await readJson(genPath, '');
    if (typeof g !== 'object' || g === null || Array.isArray(g)) throw new Error(`${genPath}: is not a JSON object`);
    generationConfig = g as Record<string, unknown>;
  }
  return { arch, tensors, ...(generationConfig !== undefined ? { generationConfig } : {}) };
}

/**
 * Write `tensors` (named as `expectedHfTensors(arch)` lists them; GPT-2 names with or without the
 * `transformer.` prefix) as a Hugging Face model directory that transformers loads. Atomic (see the
 * file comment). Returns the files written, relative to `dir`.
 */
export async function writeHfModelDir(dir: string, arch: ArchConfig, tensors: HfTensors, opts: WriteHfOptions): Promise<{ files: string[] }> {
  const who = `writeHfModelDir ${dir}`;
  if (!Object.hasOwn(DTYPE_BYTES, opts.dtype)) throw new Error(`${who}: dtype must be one of ${Object.keys(DTYPE_BYTES).join(', ')}, got ${JSON.stringify(opts.dtype)}`);
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShard) || maxShard <= 0) throw new Error(`${who}: maxShardBytes must be a positive integer, got ${maxShard}`);
  const config = { ...archToHfConfig(arch), torch_dtype: TORCH_DTYPE[opts.dtype] };

  const found = new Map<string, { shape: number[]; file: string }>();
  for (const [name, t] of tensors) {
    if (t.data.length !== numel(t.shape)) throw new Error(`${who}: tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    found.set(name, { shape: t.shape, file: who });
  }
  const plan = planTensors(arch, found, 'the ArchConfig', who);
  const ordered: [string, HfTensor][] = [];
  for (const [canonical, name] of plan.keep) {
    const t = tensors.get(name)!;
    const bad = nonFiniteAt({ dtype: 'F32', shape: t.shape, data: t.data });
    if (bad) throw new Error(`${who}: tensor '${name}' ${bad}; refusing to write non-finite weights`);
    ordered.push([canonical, t]);
  }
  if (plan.tiedHead !== null) checkTiedHead(arch, tensors.get(plan.tiedHead)!, new Map(ordered), `${who}: tensor '${plan.tiedHead}'`, 'the ArchConfig');

  const tokenizerFiles: string[] = [];
  if (opts.tokenizerFrom !== undefined) {
    for (const f of HF_TOKENIZER_FILES) if (await pathExists(join(opts.tokenizerFrom, f))) tokenizerFiles.push(f);
    if (!tokenizerFiles.includes('tokenizer.json')) throw new Error(`${who}: tokenizerFrom ${opts.tokenizerFrom} has no tokenizer.json`);
  }
  try {
    return await writeDirAtomically(dir, who, !!opts.overwrite, async (tmp) => {
      const written: string[] = [];
      const shards = splitShards(ordered, DTYPE_BYTES[opts.dtype], maxShard);
      const metadata = { format: 'pt' };
      if (shards.length === 1) {
        await writeSafetensorsFileAs(join(tmp, HF_WEIGHTS_FILE), shards[0]!, opts.dtype, metadata);
        written.push(HF_WEIGHTS_FILE);
      } else {
        const weightMap: Record<string, string> = {};
        let totalSize = 0;
        for (const [i, shard] of shards.entries()) {
          const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
          await writeSafetensorsFileAs(join(tmp, file), shard, opts.dtype, metadata);
          written.push(file);
          for (const [name, t] of shard) {
            weightMap[name] = file;
            totalSize += t.data.length * DTYPE_BYTES[opts.dtype];
          }
        }
        const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]!]));
        await writeFileSynced(join(tmp, HF_INDEX_FILE), jsonBytes({ metadata: { total_size: totalSize }, weight_map: sortedMap }));
        written.push(HF_INDEX_FILE);
      }
      for (const f of tokenizerFiles) {
        await writeFileSynced(join(tmp, f), await readFile(join(opts.tokenizerFrom!, f)));
        written.push(f);
      }
      await writeFileSynced(join(tmp, HF_CONFIG_FILE), jsonBytes(config));
      written.push(HF_CONFIG_FILE);
      return written;
    });
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(who) ? msg : `${who}: ${msg}`, { cause: e });
  }
}

/**
 * Fill `<dir>.tmp-*` with `write` (which returns the file names it wrote), then put it in place of
 * `dir`: an existing non-empty `dir` only with `overwrite` (moved aside first, deleted after), so
 * `dir` is never half written; on failure the temporary directory is removed and an old `dir`
 * restored. Errors of the directory checks start with `who`.
 */
export async function writeDirAtomically(dir: string, who: string, overwrite: boolean, write: (tmp: string) => Promise<string[]>): Promise<{ files: string[] }> {
  if ((await dirState(dir, who)) === 'non-empty' && !overwrite) throw new Error(`${who}: the directory exists and is not empty; pass overwrite: true to replace it`);
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${dir}.tmp-${tag}`, aside = `${dir}.old-${tag}`;
  let movedAside = false;
  try {
    await mkdir(tmp);
    const files = await write(tmp);
    await fsyncDir(tmp);
    const now = await dirState(dir, who); // re-checked: it may have changed while we wrote
    if (now === 'non-empty' && !overwrite) throw new Error(`${who}: the directory was filled while it was being written; pass overwrite: true to replace it`);
    if (now === 'empty') await rmdir(dir);
    if (now === 'non-empty') {
      await rename(dir, aside);
      movedAside = true;
    }
    await rename(tmp, dir);
    await fsyncDir(parent);
    if (movedAside) await rm(aside, { recursive: true, force: true });
    return { files };
  } catch (e) {
    if (movedAside && !(await pathExists(dir))) await rename(aside, dir).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------

const IndexSchema = z.object({
  metadata: z.record(z.unknown(), { invalid_type_error: 'must be an object' }).nullish(),
  weight_map: z.record(z.string({ invalid_type_error: 'must be a shard file name' }), { required_error: 'is missing (it maps each tensor to its shard file)', invalid_type_error: 'must be an object mapping tensor names to shard files' }),
});

interface WeightFile {
  path: string;
  tensors: Map<string, { dtype: HfDType; shape: number[] }>;
}

/** Headers of model.safetensors, or of every shard of the index (checked against the index both ways). */
async function weightFileHeaders(dir: string): Promise<WeightFile[]> {
  const single = join(dir, HF_WEIGHTS_FILE);
  if (await pathExists(single)) return [{ path: single, tensors: (await readSafetensorsFileHeader(single)).tensors }];
  const indexPath = join(dir, HF_INDEX_FILE);
  if (!(await pathExists(indexPath))) {
    const bin = (await readdir(dir)).find((f) => /^pytorch_model.*\.bin$|\.pt$|\.pth$/.test(f));
    if (bin !== undefined) throw new Error(`${dir}: has ${bin} but no ${HF_WEIGHTS_FILE}; only safetensors weights are supported (convert with transformers: model.save_pretrained(dir, safe_serialization=True))`);
    throw new Error(`${dir}: has neither ${HF_WEIGHTS_FILE} nor ${HF_INDEX_FILE} (no weights)`);
  }
  const r = IndexSchema.safeParse(await readJson(indexPath, ''));
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new Error(`${indexPath}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const weightMap = r.data.weight_map;
  const names = Object.keys(weightMap);
  if (names.length === 0) throw new Error(`${indexPath}: weight_map is empty`);
  const shards = [...new Set(Object.values(weightMap))];
  for (const shard of shards) {
    if (shard === '' || /[/\\]/.test(shard) || shard === '.' || shard === '..') throw new Error(`${indexPath}: weight_map names shard ${JSON.stringify(shard)}, which is not a file name in the model directory`);
  }
  for (const shard of shards) {
    if (!(await pathExists(join(dir, shard)))) {
      const users = names.filter((n) => weightMap[n] === shard);
      throw new Error(`${indexPath}: shard ${shard} does not exist in ${dir} (the index maps ${users.length} tensor(s) to it, e.g. '${users[0]}'); the download is incomplete`);
    }
  }
  const files: WeightFile[] = [];
  for (const shard of shards) {
    const path = join(dir, shard);
    const { tensors } = await readSafetensorsFileHeader(path);
    for (const name of tensors.keys()) {
      const mapped = weightMap[name];
      if (mapped === undefined) throw new Error(`${path}: tensor '${name}' is not listed in ${HF_INDEX_FILE}`);
      if (mapped !== shard) throw new Error(`${path}: tensor '${name}' is also stored here, but ${HF_INDEX_FILE} maps it to ${mapped} (every tensor must appear once)`);
    }
    files.push({ path, tensors });
  }
  for (const name of names) {
    const file = files.find((f) => f.path === join(dir, weightMap[name]!))!;
    if (!file.tensors.has(name)) throw new Error(`${indexPath}: tensor '${name}' is listed in shard ${weightMap[name]} but that file does not contain it`);
  }
  return files;
}

interface TensorPlan {
  /** Canonical name → name as found, in `expectedHfTensors` order. */
  keep: Map<string, string>;
  /** The found name of an `lm_head.weight` on a tied model (must equal the embedding), or null. */
  tiedHead: string | null;
}

/**
 * Match the found tensors (name → shape, and `file`: what to name in an error about it) against
 * `arch`: every expected tensor once with its shape; ignorable buffers skipped; anything else is an
 * error. `configName` says where the architecture came from; `missingWhere` prefixes the error
 * about missing tensors.
 */
function planTensors(arch: ArchConfig, found: Map<string, { shape: number[]; file: string }>, configName: string, missingWhere: string): TensorPlan {
  const expected = expectedHfTensors(arch);
  const cls = arch.hfArchitecture;
  const byCanonical = new Map<string, string>();
  let tiedHead: string | null = null;
  for (const [name, { shape, file }] of found) {
    if (isIgnoredBuffer(arch, name)) continue;
    const canonical = canonicalHfName(arch, name);
    const twin = byCanonical.get(canonical) ?? (canonical === 'lm_head.weight' ? tiedHead ?? undefined : undefined);
    if (twin !== undefined) {
      const twinFile = found.get(twin)!.file;
      const places = twinFile === file ? `as '${twin}' and as '${name}'` : `as '${twin}' in ${twinFile} and as '${name}' in ${file}`;
      throw new Error(`${file}: tensor '${canonical}' appears twice (${places})`);
    }
    if (canonical === 'lm_head.weight' && arch.tiedEmbeddings) {
      const want = expected.get(embeddingName(arch))!;
      if (!sameShape(shape, want)) throw new Error(`${file}: tensor '${name}' has shape [${shape.join(', ')}], expected [${want.join(', ')}] (the tied embedding's shape, from ${configName})`);
      tiedHead = name;
      continue;
    }
    const want = expected.get(canonical);
    if (want === undefined) {
      throw new Error(`${file}: unexpected tensor '${name}': not a parameter of ${cls} as ${configName} describes it (check num_hidden_layers, attention_bias, mlp_bias, tie_word_embeddings and the architecture)`);
    }
    if (!sameShape(shape, want)) throw new Error(`${file}: tensor '${name}' has shape [${shape.join(', ')}], expected [${want.join(', ')}] from ${configName}`);
    byCanonical.set(canonical, name);
  }
  const missing = [...expected.keys()].filter((n) => !byCanonical.has(n));
  if (missing.length > 0) {
    const list = missing.slice(0, 3).map((n) => `'${n}' [${expected.get(n)!.join(', ')}]`).join(', ');
    const more = missing.length > 3 ? ` and ${missing.length - 3} more` : '';
    const hint = missing.length === 1 && missing[0] === 'lm_head.weight' ? ` (${configName} says tie_word_embeddings: false)` : '';
    throw new Error(`${missingWhere}: missing tensor${missing.length > 1 ? 's' : ''} ${list}${more}: ${cls} as ${configName} describes it has ${missing.length > 1 ? 'them' : 'it'}${hint}`);
  }
  const keep = new Map<string, string>();
  for (const n of expected.keys()) keep.set(n, byCanonical.get(n)!);
  return { keep, tiedHead };
}

/** A tied model's stored `lm_head.weight` is accepted only as a copy of the embedding. */
function checkTiedHead(arch: ArchConfig, head: HfTensor, tensors: HfTensors, what: string, configName: string): void {
  const emb = tensors.get(embeddingName(arch))!;
  for (let i = 0; i < emb.data.length; i++) {
    if (head.data[i] !== emb.data[i]) {
      const fix = arch.family === 'gpt2' ? 'GPT2LMHeadModel always ties them, so this head cannot be loaded' : 'set tie_word_embeddings: false to use a separate head';
      throw new Error(`${what} differs from '${embeddingName(arch)}' (first at element ${i}: ${head.data[i]} vs ${emb.data[i]}) but ${configName} ties them (tie_word_embeddings); ${fix}`);
    }
  }
}

/** transformers' sharding: greedy in model order; a tensor larger than the limit gets a shard of its own. */
function splitShards(tensors: [string, HfTensor][], width: number, maxBytes: number): [string, HfTensor][][] {
  const shards: [string, HfTensor][][] = [];
  let current: [string, HfTensor][] = [];
  let size = 0;
  for (const entry of tensors) {
    const bytes = entry[1].data.length * width;
    if (bytes > maxBytes) {
      shards.push([entry]);
      continue;
    }
    if (size + bytes > maxBytes && current.length > 0) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(entry);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

async function readJson(path: string, missingMessage: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && missingMessage !== '') throw new Error(missingMessage);
    throw new Error(`${path}: cannot be read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: is not valid JSON (${(e as Error).message})`);
  }
}

async function dirState(dir: string, who: string): Promise<'absent' | 'empty' | 'non-empty'> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw e;
  }
  if (!st.isDirectory()) throw new Error(`${who}: exists and is not a directory`);
  return (await readdir(dir)).length === 0 ? 'empty' : 'non-empty';
}

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2) + '\n', 'utf8');
}


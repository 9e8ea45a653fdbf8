/**
 * The weight directory through which a trainer publishes new weights to inference servers (disk-based
 * weight sync, as AReaL and slime do for SGLang's `/update_weights_from_disk`):
 *
 *   model.safetensors          F32 weights: under their Hugging Face names when the model config has
 *                              a Hugging Face equivalent (`archFromModelConfig`), so vLLM/SGLang can
 *                              load the directory; otherwise under agentrl's parameter names
 *   config.json                the Hugging Face config (plus `agentrl_model`, the engine's exact model
 *                              config), or `{"agentrl_model": {...}}` alone
 *   agentrl_weights.json       `{"agentrl_weight_version": N}`
 *   tokenizer.json, tokenizer_config.json   when a Hugging Face tokenizer is given (a server started
 *                              from the directory needs it); agentrl_tokenizer.json for a word tokenizer
 *
 * The directory is written atomically (temporary directory + rename, src/engine/hf-weights.ts
 * `writeDirAtomically`) and replaces an older one of the same name: a server never reads half a
 * version. Loading checks every tensor's name and shape against the model and names the mismatch.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileSynced, pathExists } from '../checkpoint.ts';
import { archToHfConfig, parseHfConfig } from '../hf-config.ts';
import { loadHfIntoModel, modelToHfTensors } from '../hf-model.ts';
import { HfTokenizer } from '../hf-tokenizer.ts';
import { HF_CONFIG_FILE, HF_WEIGHTS_FILE, readHfModelDir, writeDirAtomically } from '../hf-weights.ts';
import type { ArchConfig } from '../arch.ts';
import type { Transformer } from '../model.ts';
import { readSafetensorsFile, writeSafetensorsFileAs } from '../safetensors.ts';
import type { Tokenizer } from '../types.ts';
import { archFromModelConfig } from '../../train/export.ts';
import { modelConfigMismatch, paramsToTensors, tensorsToParams } from '../../train/trainer-checkpoint.ts';

export const WEIGHT_VERSION_FILE = 'agentrl_weights.json';
export const AGENTRL_TOKENIZER_FILE = 'agentrl_tokenizer.json';

/** The Hugging Face architecture of `model`, or null when no supported config.json expresses it. */
function hfArchOf(model: Transformer, tokenizer: Tokenizer | undefined): ArchConfig | null {
  try {
    return archFromModelConfig(model.config, { eosTokenIds: tokenizer ? [tokenizer.eosId] : [] });
  } catch {
    return null;
  }
}

const jsonBytes = (x: unknown) => Buffer.from(JSON.stringify(x, null, 2) + '\n', 'utf8');

/**
 * Write `model`'s current weights to `dir` (see the file comment), replacing what is there. F32, so a
 * server loading them samples with exactly the trainer's weights.
 */
export async function writeWeightsDir(dir: string, model: Transformer, opts: { version: number; tokenizer?: Tokenizer }): Promise<void> {
  const who = `writeWeightsDir ${dir}`;
  if (!Number.isInteger(opts.version)) throw new Error(`${who}: version must be an integer, got ${opts.version}`);
  model.assertFiniteParams(who);
  const arch = hfArchOf(model, opts.tokenizer);
  await writeDirAtomically(dir, who, true, async (tmp) => {
    const files: string[] = [];
    if (arch) {
      await writeSafetensorsFileAs(join(tmp, HF_WEIGHTS_FILE), modelToHfTensors(model, arch), 'F32', { format: 'pt' });
      await writeFileSynced(join(tmp, HF_CONFIG_FILE), jsonBytes({ ...archToHfConfig(arch), torch_dtype: 'float32', agentrl_model: model.config }));
    } else {
      const named = Object.entries(paramsToTensors(model, model.params)).map(([name, t]) => [name, { shape: t.shape, data: t.data as Float32Array }] as [string, { shape: number[]; data: Float32Array }]);
      await writeSafetensorsFileAs(join(tmp, HF_WEIGHTS_FILE), named, 'F32', { format: 'agentrl' });
      await writeFileSynced(join(tmp, HF_CONFIG_FILE), jsonBytes({ agentrl_model: model.config }));
    }
    files.push(HF_WEIGHTS_FILE, HF_CONFIG_FILE);
    await writeFileSynced(join(tmp, WEIGHT_VERSION_FILE), jsonBytes({ agentrl_weight_version: opts.version }));
    files.push(WEIGHT_VERSION_FILE);
    const tok = opts.tokenizer;
    if (tok instanceof HfTokenizer) {
      const { tokenizer, config } = tok.toJSON();
      await writeFileSynced(join(tmp, 'tokenizer.json'), jsonBytes(tokenizer));
      await writeFileSynced(join(tmp, 'tokenizer_config.json'), jsonBytes(config));
      files.push('tokenizer.json', 'tokenizer_config.json');
    } else if (tok && typeof (tok as { toJSON?: unknown }).toJSON === 'function') {
      await writeFileSynced(join(tmp, AGENTRL_TOKENIZER_FILE), jsonBytes((tok as unknown as { toJSON(): unknown }).toJSON()));
      files.push(AGENTRL_TOKENIZER_FILE);
    }
    return files;
  });
}

/**
 * Read the weights of `dir` into a new buffer in `model`'s parameter layout, without touching the
 * model (a server hands the buffer to `BuiltinEngine.setWeights`, which swaps it in between two
 * decode steps). `version` is the directory's agentrl_weight_version, or null when it has none (e.g.
 * a plain Hugging Face export).
 */
export async function readWeightsDir(dir: string, model: Transformer): Promise<{ params: Float32Array; version: number | null }> {
  const who = `loadWeightsDir ${dir}`;
  const configPath = join(dir, HF_CONFIG_FILE);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${who}: ${HF_CONFIG_FILE} is missing (not a weight directory written by writeWeightsDir or a Hugging Face export)` : `${configPath}: cannot be read as JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error(`${configPath}: must hold a JSON object`);
  const problem = configMismatch(model, config.agentrl_model);
  if (problem) throw new Error(`${who}: the weights were written for another model than this one: ${problem} (this model's value first, the directory's second)`);
  const params = new Float32Array(model.params.length);
  if (config.architectures !== undefined || config.model_type !== undefined) {
    const arch = parseHfConfig(config, configPath);
    const { tensors } = await readHfModelDir(dir);
    // loadHfIntoModel writes into `model.params`: give it a view of the model whose params are the new buffer.
    const target = Object.create(model, { params: { value: params } }) as Transformer;
    try {
      loadHfIntoModel(target, arch, tensors);
    } catch (e) {
      throw new Error(`${who}: ${(e as Error).message}`, { cause: e });
    }
  } else if (config.agentrl_model !== undefined) {
    const { tensors } = await readSafetensorsFile(join(dir, HF_WEIGHTS_FILE)).catch((e: NodeJS.ErrnoException) => {
      throw e.code === 'ENOENT' ? new Error(`${who}: ${HF_WEIGHTS_FILE} is missing`) : e;
    });
    tensorsToParams(model, tensors, params, who);
  } else {
    throw new Error(`${configPath}: has neither 'architectures' (a Hugging Face config) nor 'agentrl_model'; not a weight directory`);
  }
  return { params, version: await readVersion(dir) };
}

/** Fields that decide the weights' shapes and meaning (contextLength only with learned positions). */
const SHAPE_FIELDS = ['vocabSize', 'nLayer', 'nHead', 'nKvHead', 'headDim', 'nEmbd', 'intermediateSize', 'mlp', 'norm', 'normEps', 'positions', 'ropeBase', 'ropeScaling', 'tiedEmbeddings', 'qkvBias', 'oBias', 'mlpBias', 'qkNorm'] as const;

/** 'nEmbd is 24, expected 16' when the directory's agentrl_model differs from `model`'s config, else null. */
function configMismatch(model: Transformer, saved: unknown): string | null {
  if (typeof saved !== 'object' || saved === null) return null; // a plain Hugging Face export: the tensor checks decide
  const fields: string[] = [...SHAPE_FIELDS];
  if (model.config.positions === 'learned') fields.push('contextLength');
  const expected = Object.fromEntries(fields.filter((k) => k in saved).map((k) => [k, (saved as Record<string, unknown>)[k]]));
  const problem = modelConfigMismatch(model.config, expected);
  return problem && problem.replace(/^model config differs: /, '');
}

/** Load the weights of `dir` into `model.params` (checked as `readWeightsDir` does). */
export async function loadWeightsDir(dir: string, model: Transformer): Promise<{ version: number | null }> {
  const { params, version } = await readWeightsDir(dir, model);
  model.params.set(params);
  return { version };
}

async function readVersion(dir: string): Promise<number | null> {
  const path = join(dir, WEIGHT_VERSION_FILE);
  if (!(await pathExists(path))) return null;
  const raw = JSON.parse(await readFile(path, 'utf8')) as { agentrl_weight_version?: unknown };
  const v = raw?.agentrl_weight_version;
  if (v === undefined || v === null) return null;
  if (!Number.isInteger(v)) throw new Error(`${path}: agentrl_weight_version must be an integer, got ${JSON.stringify(v)}`);
  return v as number;
}

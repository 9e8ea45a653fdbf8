/**
 * Checkpointing a BuiltinTrainer: weights and AdamW moments as named safetensors tensors (one per
 * parameter view), plus step, model config, tokenizer and RNG states in the manifest, written
 * atomically by src/engine/checkpoint.ts. Restoring gives an exact resume.
 *
 * With LoRA the model tensors are the merged weights (so evaluation loads a checkpoint as a plain
 * model), and beside them `lora.<adapter tensor>` (A and B) and `lora.base.<target>` (the frozen W₀
 * rows); the moments are the adapter's; the manifest config carries `lora`.
 */
import { canonicalJson, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from '../engine/checkpoint.ts';
import { f32Tensor, type TensorMap } from '../engine/safetensors.ts';
import { tokenizerFromJSON, type SerializableTokenizer } from '../engine/tokenizer.ts';
import { Transformer, type ModelConfig, type ModelConfigInput, type ParamView } from '../engine/model.ts';
import type { Backend } from '../engine/backend.ts';
import { BuiltinTrainer } from './builtin-trainer.ts';
import { LoraAdapter, type LoraConfig } from './lora.ts';

const LORA_PREFIX = 'lora.';
const LORA_BASE_PREFIX = 'lora.base.';

/** One tensor per parameter view of `model` (or of a LoRA adapter), holding the values of `buf` (same layout). */
export function paramsToTensors(model: { layout: readonly ParamView[] }, buf: Float32Array, prefix = ''): TensorMap {
  const out: TensorMap = {};
  for (const v of model.layout) out[prefix + v.name] = f32Tensor(v.shape, buf.slice(v.offset, v.offset + v.size));
  return out;
}

/** The LoRA tensors of a trainer: adapter A/B and the frozen base rows. */
function loraTensors(lora: LoraAdapter): TensorMap {
  const out = paramsToTensors(lora, lora.params, LORA_PREFIX);
  lora.baseWeights().forEach((w, i) => {
    const a = lora.layout[2 * i]!;
    out[LORA_BASE_PREFIX + a.name.replace(/\.lora_A$/, '')] = f32Tensor([lora.targets[i]!.rows, lora.targets[i]!.cols], Float32Array.from(w));
  });
  return out;
}

/**
 * Fill `buf` (model layout) from named tensors. The tensors must be exactly the model's parameters:
 * a missing, extra, wrongly shaped or non-float tensor is an error naming it (a checkpoint written
 * by another model config is refused here, not a step later).
 */
export function tensorsToParams(model: { layout: readonly ParamView[] }, t: TensorMap, buf: Float32Array, what: string): void {
  const known = new Set<string>();
  for (const v of model.layout) {
    known.add(v.name);
    const x = t[v.name];
    if (!x) throw new Error(`${what}: missing tensor '${v.name}' (was it written by a different model config?)`);
    if (x.dtype !== 'F32') throw new Error(`${what}: tensor '${v.name}' has dtype ${x.dtype}, the model needs F32`);
    if (x.shape.length !== v.shape.length || x.shape.some((d, i) => d !== v.shape[i])) {
      throw new Error(`${what}: tensor '${v.name}' has shape [${x.shape.join(', ')}], the model config needs [${v.shape.join(', ')}]`);
    }
  }
  const extra = Object.keys(t).filter((n) => !known.has(n));
  if (extra.length > 0) {
    throw new Error(`${what}: unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).map((n) => `'${n}'`).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''} that the model config does not have (was it written by a different model config?)`);
  }
  for (const v of model.layout) buf.set(t[v.name]!.data as Float32Array, v.offset);
}

export interface TrainerCheckpointExtras {
  tokenizer: SerializableTokenizer | null;
  rng: Record<string, number[]>;
  trainerState: unknown;
}

export async function saveTrainerCheckpoint(dir: string, trainer: BuiltinTrainer, extras: TrainerCheckpointExtras): Promise<void> {
  const model = trainer.model;
  await saveCheckpoint(dir, {
    step: trainer.step,
    weightVersion: trainer.version(),
    config: { model: model.config, optimizer: trainer.opt, ...(trainer.lora ? { lora: trainer.lora.config } : {}) },
    tokenizer: extras.tokenizer ? extras.tokenizer.toJSON() : null,
    rng: extras.rng,
    trainerState: extras.trainerState,
    model: { ...paramsToTensors(model, model.params), ...(trainer.lora ? loraTensors(trainer.lora) : {}) },
    optimizer: trainer.lora
      ? { m: paramsToTensors(trainer.lora, trainer.m, LORA_PREFIX), v: paramsToTensors(trainer.lora, trainer.v, LORA_PREFIX) }
      : { m: paramsToTensors(model, trainer.m), v: paramsToTensors(model, trainer.v) },
  });
}

export interface RestoredTrainer {
  trainer: BuiltinTrainer;
  tokenizer: SerializableTokenizer | null;
  checkpoint: LoadedCheckpoint;
}

export interface LoadTrainerOptions {
  /**
   * Model config fields the checkpoint must have (e.g. the other members' config when loading a
   * population): any field given here that differs is an error naming it.
   */
  expectModel?: Partial<ModelConfigInput>;
}

/**
 * Rebuild model + trainer (weights, moments, step) from a checkpoint directory. The manifest's
 * model config must parse, and the tensors must be exactly that config's parameters.
 */
export async function loadTrainerCheckpoint(dir: string, backend: Backend, opts: LoadTrainerOptions = {}): Promise<RestoredTrainer> {
  const ck = await loadCheckpoint(dir);
  const cfg = ck.config as { model?: unknown; optimizer?: unknown; lora?: LoraConfig };
  if (!cfg || typeof cfg !== 'object' || !cfg.model) throw new Error(`checkpoint ${dir}: manifest config has no 'model' section (not a trainer checkpoint)`);
  let model: Transformer;
  try {
    model = new Transformer(cfg.model as never, backend, 0);
  } catch (e) {
    throw new Error(`checkpoint ${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (opts.expectModel) {
    const problem = modelConfigMismatch(model.config, opts.expectModel);
    if (problem) throw new Error(`checkpoint ${dir}: ${problem}`);
  }
  const modelTensors: TensorMap = {}, loraPart: TensorMap = {};
  for (const [name, t] of Object.entries(ck.model)) (cfg.lora && name.startsWith(LORA_PREFIX) ? loraPart : modelTensors)[name] = t;
  tensorsToParams(model, modelTensors, model.params, `checkpoint ${dir} model`);
  let trainer: BuiltinTrainer;
  try {
    const lora = cfg.lora ? restoreLora(model, cfg.lora, loraPart, dir) : undefined;
    trainer = new BuiltinTrainer(model, (cfg.optimizer ?? {}) as never, { lora });
  } catch (e) {
    throw new Error(`checkpoint ${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (ck.optimizer) {
    const unprefix = (t: TensorMap) => (trainer.lora ? Object.fromEntries(Object.entries(t).map(([n, x]) => [n.startsWith(LORA_PREFIX) ? n.slice(LORA_PREFIX.length) : n, x])) : t);
    const trained = trainer.trainedParameters();
    tensorsToParams(trained, unprefix(ck.optimizer.m), trainer.m, `checkpoint ${dir} optimizer m`);
    tensorsToParams(trained, unprefix(ck.optimizer.v), trainer.v, `checkpoint ${dir} optimizer v`);
  }
  trainer.step = ck.step;
  return { trainer, tokenizer: ck.tokenizer ? tokenizerFromJSON(ck.tokenizer) : null, checkpoint: ck };
}

/** The adapter of a LoRA checkpoint: A/B from `lora.*`, W₀ from `lora.base.*`, merged again (giving the saved merged weights). */
function restoreLora(model: Transformer, config: LoraConfig, t: TensorMap, dir: string): LoraAdapter {
  const lora = new LoraAdapter(model, config);
  const adapter: TensorMap = {}, base: TensorMap = {};
  for (const [name, x] of Object.entries(t)) {
    if (name.startsWith(LORA_BASE_PREFIX)) base[name.slice(LORA_BASE_PREFIX.length)] = x;
    else adapter[name.slice(LORA_PREFIX.length)] = x;
  }
  tensorsToParams(lora, adapter, lora.params, `checkpoint ${dir} LoRA adapter`);
  lora.setBaseWeights(lora.targets.map((_, i) => {
    const name = lora.layout[2 * i]!.name.replace(/\.lora_A$/, '');
    const x = base[name];
    if (!x || x.dtype !== 'F32' || x.data.length !== lora.baseWeights()[i]!.length) throw new Error(`checkpoint ${dir}: LoRA base tensor 'lora.base.${name}' is missing or has the wrong size`);
    return x.data as Float32Array;
  }));
  return lora;
}

/** 'model config differs: nLayer is 4, expected 2' for the first field of `expected` that differs, or null. */
export function modelConfigMismatch(actual: ModelConfig, expected: Partial<ModelConfigInput>): string | null {
  const diffs: string[] = [];
  for (const [k, want] of Object.entries(expected)) {
    if (want === undefined) continue;
    const got = (actual as Record<string, unknown>)[k];
    // Canonical JSON, not ===: fields such as ropeScaling are objects.
    if (canonicalJson(got) !== canonicalJson(want)) diffs.push(`${k} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  return diffs.length > 0 ? `model config differs: ${diffs.join(', ')}` : null;
}

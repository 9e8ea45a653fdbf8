/**
 * Checkpointing a BuiltinTrainer: weights and AdamW moments as named safetensors tensors (one per
 * parameter view), plus step, model config, tokenizer and RNG states in the manifest, written
 * atomically by src/engine/checkpoint.ts. Restoring gives an exact resume.
 */
import { loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from '../engine/checkpoint.ts';
import { f32Tensor, type TensorMap } from '../engine/safetensors.ts';
import { tokenizerFromJSON, type SerializableTokenizer } from '../engine/tokenizer.ts';
import { Transformer } from '../engine/model.ts';
import type { Backend } from '../engine/backend.ts';
import { BuiltinTrainer } from './builtin-trainer.ts';

/** One tensor per parameter view of `model`, holding the values of `buf` (same layout as model.params). */
export function paramsToTensors(model: Transformer, buf: Float32Array): TensorMap {
  const out: TensorMap = {};
  for (const v of model.layout) out[v.name] = f32Tensor(v.shape, buf.slice(v.offset, v.offset + v.size));
  return out;
}

/** Fill `buf` (model layout) from named tensors; errors name the missing or mis-sized tensor. */
export function tensorsToParams(model: Transformer, t: TensorMap, buf: Float32Array, what: string): void {
  for (const v of model.layout) {
    const x = t[v.name];
    if (!x) throw new Error(`${what}: missing tensor '${v.name}' (was it written by a different model config?)`);
    if (x.data.length !== v.size) throw new Error(`${what}: tensor '${v.name}' has ${x.data.length} values, the model expects ${v.size}`);
    buf.set(x.data as Float32Array, v.offset);
  }
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
    config: { model: model.config, optimizer: trainer.opt },
    tokenizer: extras.tokenizer ? extras.tokenizer.toJSON() : null,
    rng: extras.rng,
    trainerState: extras.trainerState,
    model: paramsToTensors(model, model.params),
    optimizer: { m: paramsToTensors(model, trainer.m), v: paramsToTensors(model, trainer.v) },
  });
}

export interface RestoredTrainer {
  trainer: BuiltinTrainer;
  tokenizer: SerializableTokenizer | null;
  checkpoint: LoadedCheckpoint;
}

/** Rebuild model + trainer (weights, moments, step) from a checkpoint directory. */
export async function loadTrainerCheckpoint(dir: string, backend: Backend): Promise<RestoredTrainer> {
  const ck = await loadCheckpoint(dir);
  const cfg = ck.config as { model?: unknown; optimizer?: unknown };
  if (!cfg || typeof cfg !== 'object' || !cfg.model) throw new Error(`checkpoint ${dir}: manifest config has no 'model' section (not a trainer checkpoint)`);
  const model = new Transformer(cfg.model as never, backend, 0);
  tensorsToParams(model, ck.model, model.params, `checkpoint ${dir} model`);
  const trainer = new BuiltinTrainer(model, (cfg.optimizer ?? {}) as never);
  if (ck.optimizer) {
    tensorsToParams(model, ck.optimizer.m, trainer.m, `checkpoint ${dir} optimizer m`);
    tensorsToParams(model, ck.optimizer.v, trainer.v, `checkpoint ${dir} optimizer v`);
  }
  trainer.step = ck.step;
  return { trainer, tokenizer: ck.tokenizer ? tokenizerFromJSON(ck.tokenizer) : null, checkpoint: ck };
}

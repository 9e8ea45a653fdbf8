/**
 * A policy checkpoint written by `agentrl train`, ready to evaluate: its run config (checked against
 * what the caller evaluates) and a built-in engine serving its weights. Shared by `agentrl eval` and
 * `agentrl eval search`.
 */
import { defaultBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { Transformer } from '../engine/model.ts';
import { engineTokenizer } from '../engine/load-model.ts';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { parseRunConfig, type RunConfig } from '../run/run-config.ts';

export interface CheckpointPolicy {
  run: RunConfig;
  engine: BuiltinEngine;
  /** The checkpoint's optimizer step. */
  step: number;
}

/**
 * Load `dir`; `whyTokenizer` says what needs the tokenizer (for the error when there is none) and
 * `checkTask` returns an error message for a run of the wrong kind, or null.
 */
export async function loadCheckpointPolicy(dir: string, o: { whyTokenizer: string; checkTask: (run: RunConfig) => string | null; maxBatch: number; seed: number }): Promise<CheckpointPolicy> {
  const { trainer, tokenizer, checkpoint } = await loadTrainerCheckpoint(dir, defaultBackend());
  if (!tokenizer) throw new Error(`checkpoint ${dir} has no tokenizer; ${o.whyTokenizer}`);
  const state = checkpoint.trainerState as { config?: unknown } | null;
  if (!state?.config) throw new Error(`checkpoint ${dir} was not written by agentrl train (its trainerState has no run config)`);
  const run = parseRunConfig(state.config);
  const wrong = o.checkTask(run);
  if (wrong) throw new Error(wrong);
  const model = new Transformer(trainer.model.config, trainer.model.backend, 0);
  model.params.set(trainer.model.params);
  // A pretrained model's embedding may have more rows than its tokenizer has tokens (Qwen2.5 pads 151,665 to 151,936).
  const engineTok = engineTokenizer({ tokenizer, model, path: dir });
  return { run, engine: new BuiltinEngine(model, engineTok, { maxBatch: o.maxBatch, seed: o.seed }), step: checkpoint.step };
}

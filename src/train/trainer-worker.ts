/**
 * Worker-thread side of the built-in trainer: owns a Transformer + BuiltinTrainer, trains on batches
 * posted by the main thread (one at a time), and publishes each new version's weights into a
 * SharedArrayBuffer (two slots, alternating), so weights cross threads without serialisation.
 *
 * Loaded by worker-trainer.ts through tsx's `tsImport` (Node 20 does not apply `--import tsx` from a
 * worker's execArgv to the worker's own ESM loader).
 *
 * The model is rebuilt from its config (a complete ModelConfig for a pretrained model) and takes its
 * weights from `initialState`, so a model loaded from disk reaches the worker as its parameters.
 * With LoRA the adapter's frozen base rows come along (`lora.base`): the state's parameters are the
 * merged weights, from which the base cannot be recovered.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { selectBackend } from '../engine/backends.ts';
import { BuiltinTrainer, type OptimizerConfigSchema } from './builtin-trainer.ts';
import { LoraAdapter, type LoraConfigInput } from './lora.ts';
import { exportState, importState, policyStep, type TrainerState } from './policy-trainer.ts';
import type { LossConfigInput } from '../rl/losses.ts';
import type { Sample } from '../core/types.ts';
import type { z } from 'zod';

export interface TrainerWorkerInit {
  model: ModelConfigInput;
  optimizer: z.input<typeof OptimizerConfigSchema>;
  /** Seed of the model's initialisation (same seed → same initial weights as an in-process model). */
  seed: number;
  /** 2 × numParams floats. */
  weights: SharedArrayBuffer;
  /** 'js' or 'native' (default: what selectBackend picks). */
  backend?: string;
  /** Native kernel threads in the worker (default AGENTRL_THREADS, else 2). */
  threads?: number;
  /** Start from this state (resume, or a pretrained model's weights) instead of the seed's initial weights. */
  initialState?: TrainerState;
  /** Train a LoRA adapter: its config and the frozen base rows of its targets (`LoraAdapter.baseWeights()`); needs initialState. */
  lora?: { config: LoraConfigInput; base: Float32Array[] };
}

export type TrainerRequest = { kind: 'train'; id: number; minibatches: Sample[][]; loss: LossConfigInput } | { kind: 'state'; id: number };
export type TrainerReply =
  | { kind: 'ready'; numParams: number; backend: string }
  | { kind: 'trained'; id: number; version: number; slot: number; metrics: Record<string, number>; busySeconds: number }
  | { kind: 'state'; id: number; state: TrainerState }
  | { kind: 'error'; id: number; message: string };

const port = parentPort;
if (!port) throw new Error('trainer-worker.ts runs inside a worker thread; use WorkerTrainer from worker-trainer.ts');
const init = workerData as TrainerWorkerInit;
const model = new Transformer(init.model, selectBackend(init.backend), init.seed);
if (init.lora && !init.initialState) throw new Error('trainer worker: a LoRA adapter needs initialState (the weights it adapts)');
let lora: LoraAdapter | undefined;
if (init.lora) {
  lora = new LoraAdapter(model, init.lora.config);
  lora.setBaseWeights(init.lora.base);
}
const trainer = new BuiltinTrainer(model, init.optimizer, lora ? { lora } : {});
if (init.initialState) importState(trainer, init.initialState);
if (init.weights.byteLength < 2 * model.numParams * 4) {
  throw new Error(`trainer worker: shared weight buffer holds ${init.weights.byteLength} bytes, needs ${2 * model.numParams * 4}`);
}
const slots = [0, 1].map((i) => new Float32Array(init.weights, i * model.numParams * 4, model.numParams));
slots[0]!.set(model.params);
port.postMessage({ kind: 'ready', numParams: model.numParams, backend: model.backend.name } satisfies TrainerReply);

port.on('message', (msg: TrainerRequest) => {
  const t0 = performance.now();
  try {
    if (msg.kind === 'state') {
      port.postMessage({ kind: 'state', id: msg.id, state: exportState(trainer) } satisfies TrainerReply);
      return;
    }
    const { version, metrics } = policyStep(trainer, msg.minibatches, msg.loss);
    const slot = version % 2;
    slots[slot]!.set(model.params);
    port.postMessage({ kind: 'trained', id: msg.id, version, slot, metrics, busySeconds: (performance.now() - t0) / 1000 } satisfies TrainerReply);
  } catch (e) {
    port.postMessage({ kind: 'error', id: msg.id, message: e instanceof Error ? e.message : String(e) } satisfies TrainerReply);
  }
});

/**
 * The trainer side of an RL loop as the asynchronous trainer sees it: "train on these samples,
 * give me the new weights". Two implementations: `InProcessTrainer` (a BuiltinTrainer on the calling
 * thread; training blocks the event loop, so nothing overlaps: handy in tests) and `WorkerTrainer`
 * (worker-trainer.ts: the same step in a worker thread while the main thread keeps generating).
 *
 * Both run `policyStep`, so given the same seed, weights and batch they produce the same weights.
 */
import type { Sample } from '../core/types.ts';
import type { LossConfigInput } from '../rl/losses.ts';
import type { BuiltinTrainer } from './builtin-trainer.ts';
import { rlLoss } from './rl-loss.ts';

export interface TrainedStep {
  /** The version of the new weights (the trainer's optimizer step count). */
  version: number;
  /** The new weights, same layout as model.params; owned by the caller. */
  weights: Float32Array;
  metrics: Record<string, number>;
  /** Seconds the trainer spent computing this step (proximal logprobs + forward/backward + AdamW). */
  busySeconds: number;
}

export interface PolicyTrainer {
  /** Version of the weights the trainer holds now (0 before the first step). */
  version(): number;
  /**
   * Train on one batch: one optimizer step per minibatch, in order (advantages filled in). With
   * decoupled PPO every minibatch's proximal logprobs are those of the weights before the batch.
   */
  train(minibatches: Sample[][], loss: LossConfigInput): Promise<TrainedStep>;
  /** Release threads/memory. */
  close(): Promise<void>;
}

/**
 * Policy-gradient steps on one batch, one per minibatch. Decoupled PPO needs proximal logprobs: those
 * of the weights *before* this batch's updates, recomputed here on the trainer (AReaL); PPO uses the
 * behaviour logprobs as π_old. Metrics are the minibatches' means (tokens: their sum), plus
 * `minibatches` and the largest clip fraction seen (`clipFracMax`).
 */
export function policyStep(trainer: BuiltinTrainer, minibatches: Sample[][], loss: LossConfigInput): { version: number; metrics: Record<string, number> } {
  if (minibatches.length === 0 || minibatches.some((mb) => mb.length === 0)) throw new Error('policyStep: every minibatch needs at least one sample');
  const lossFn = rlLoss(loss);
  const prox = loss.kind === 'decoupled_ppo' ? minibatches.map((mb) => trainer.computeLogprobs(mb)) : undefined;
  const per = minibatches.map((mb, i) => ({ ...trainer.trainStep(mb, lossFn, { proxLogprobs: prox?.[i] }) }) as Record<string, number>);
  return { version: trainer.version(), metrics: mergeMinibatchMetrics(per) };
}

/** Means of the minibatches' metrics; `tokens` summed; `clipFracMax` the largest clip fraction. */
export function mergeMinibatchMetrics(per: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(per[0] ?? {})) {
    const xs = per.map((m) => m[key] ?? Number.NaN);
    out[key] = key === 'tokens' ? xs.reduce((a, b) => a + b, 0) : xs.reduce((a, b) => a + b, 0) / xs.length;
  }
  if ('clipFrac' in out) out.clipFracMax = Math.max(...per.map((m) => m.clipFrac ?? 0));
  out.minibatches = per.length;
  return out;
}

/** A BuiltinTrainer on the calling thread behind the PolicyTrainer interface. */
export class InProcessTrainer implements PolicyTrainer {
  constructor(readonly trainer: BuiltinTrainer) {}

  version(): number {
    return this.trainer.version();
  }

  async train(minibatches: Sample[][], loss: LossConfigInput): Promise<TrainedStep> {
    const t0 = performance.now();
    const { version, metrics } = policyStep(this.trainer, minibatches, loss);
    const weights = Float32Array.from(this.trainer.model.params);
    return { version, weights, metrics, busySeconds: (performance.now() - t0) / 1000 };
  }

  async close(): Promise<void> {}
}

/**
 * Everything a trainer needs to continue: weights, AdamW moments, optimizer step; with LoRA also the
 * adapter (A, B; `params` are then the merged weights, and both trainers share the frozen base).
 */
export interface TrainerState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  step: number;
  adapter?: Float32Array;
}

export function exportState(t: BuiltinTrainer): TrainerState {
  const state: TrainerState = { params: Float32Array.from(t.model.params), m: Float32Array.from(t.m), v: Float32Array.from(t.v), step: t.step };
  if (t.lora) state.adapter = Float32Array.from(t.lora.params);
  return state;
}

export function importState(t: BuiltinTrainer, s: TrainerState): void {
  if (s.params.length !== t.model.params.length || s.m.length !== t.m.length || s.v.length !== t.v.length) {
    throw new Error(`importState: state has ${s.params.length} parameters, the model ${t.model.params.length}`);
  }
  if (!!t.lora !== !!s.adapter || (t.lora && s.adapter!.length !== t.lora.numParams)) {
    throw new Error('importState: the state and the trainer differ in their LoRA adapters');
  }
  t.model.params.set(s.params);
  if (t.lora) t.lora.params.set(s.adapter!);
  t.m.set(s.m);
  t.v.set(s.v);
  t.step = s.step;
}

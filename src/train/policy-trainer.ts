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
  /** One optimizer step on `samples` (advantages filled in). */
  train(samples: Sample[], loss: LossConfigInput): Promise<TrainedStep>;
  /** Release threads/memory. */
  close(): Promise<void>;
}

/**
 * One policy-gradient step. Decoupled PPO needs proximal logprobs: those of the weights *before*
 * this update, recomputed here on the trainer (AReaL); PPO uses the behaviour logprobs as π_old.
 */
export function policyStep(trainer: BuiltinTrainer, samples: Sample[], loss: LossConfigInput): { version: number; metrics: Record<string, number> } {
  const lossFn = rlLoss(loss);
  const proxLogprobs = loss.kind === 'decoupled_ppo' ? trainer.computeLogprobs(samples) : undefined;
  const metrics = trainer.trainStep(samples, lossFn, { proxLogprobs });
  return { version: trainer.version(), metrics: { ...metrics } };
}

/** A BuiltinTrainer on the calling thread behind the PolicyTrainer interface. */
export class InProcessTrainer implements PolicyTrainer {
  constructor(readonly trainer: BuiltinTrainer) {}

  version(): number {
    return this.trainer.version();
  }

  async train(samples: Sample[], loss: LossConfigInput): Promise<TrainedStep> {
    const t0 = performance.now();
    const { version, metrics } = policyStep(this.trainer, samples, loss);
    const weights = Float32Array.from(this.trainer.model.params);
    return { version, weights, metrics, busySeconds: (performance.now() - t0) / 1000 };
  }

  async close(): Promise<void> {}
}

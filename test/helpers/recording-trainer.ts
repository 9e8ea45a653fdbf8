import type { PolicyTrainer, TrainedStep } from '../../src/train/policy-trainer.ts';

/**
 * Wraps `inner` and keeps every published version's weights (version 0 = `initial`), so a test can
 * recompute a token's logprob with the weights of the version it claims. `after` runs once a
 * version is published, before `train` returns (tests use it to land an update mid-generation).
 */
export function recording(inner: PolicyTrainer, initial: Float32Array, after?: (version: number) => Promise<void>): { trainer: PolicyTrainer; weights: Map<number, Float32Array> } {
  const weights = new Map<number, Float32Array>([[0, Float32Array.from(initial)]]);
  return {
    weights,
    trainer: {
      version: () => inner.version(),
      close: () => inner.close(),
      train: async (s, l): Promise<TrainedStep> => {
        const r = await inner.train(s, l);
        weights.set(r.version, Float32Array.from(r.weights));
        await after?.(r.version);
        return r;
      },
    },
  };
}

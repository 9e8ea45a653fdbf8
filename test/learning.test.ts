/**
 * The engine learns: GRPO raises the reward of a toy text task from chance to ≥ 0.9, and supervised
 * fine-tuning drives cross-entropy down. Fixed seeds, bounded steps.
 */
import { describe, expect, it } from 'vitest';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { rlLoss } from '../src/train/rl-loss.ts';
import type { Sample } from '../src/core/types.ts';
import { fastBackend } from './helpers/backends.ts';
import { grpoTargetRun } from './helpers/grpo-target-run.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const V = 16;
const CFG = { vocabSize: V, contextLength: 16, nLayer: 2, nHead: 2, nEmbd: 32 };

describe('learning on the built-in engine', () => {
  it('GRPO through the training loop takes a target-sequence reward from chance to ≥ 0.9', async () => {
    const backend = fastBackend();
    const trainModel = new Transformer(CFG, backend, 1);
    const trainer = new BuiltinTrainer(trainModel, { lr: 3e-3, weightDecay: 0 });
    const engine = new BuiltinEngine(new Transformer(CFG, backend, 1), idTokenizer(V), { maxBatch: 64, seed: 3 });
    // Evaluation: fresh samples at temperature 1.
    const { firstReward, steps, meanEval } = await grpoTargetRun({
      engine, trainer, prompts: [[14, 0], [14, 1]], targets: [[3, 7, 2, 9], [5, 5, 1, 12]],
      sampling: { maxTokens: 4, temperature: 1 }, evalSampling: { maxTokens: 4 },
    });
    expect(firstReward).toBeLessThan(0.3); // chance is 1/16 per position
    expect(meanEval, `after ${steps} steps`).toBeGreaterThanOrEqual(0.9);
  });

  it('supervised fine-tuning drives cross-entropy down', () => {
    const trainer = new BuiltinTrainer(new Transformer(CFG, fastBackend(), 2), { lr: 3e-3 });
    const seqs = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [1, 3, 5, 7, 9, 11, 13, 15]];
    const samples: Sample[] = seqs.map((ids) => ({ seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i ? 1 : 0)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} }));
    const first = trainer.trainStep(samples, sftLoss).loss;
    let last = first;
    for (let i = 0; i < 60; i++) last = trainer.trainStep(samples, sftLoss).loss;
    expect(first).toBeGreaterThan(2.3); // ≈ ln 16 at init
    expect(last).toBeLessThan(0.3);
  });

  it('a NaN advantage gives a clear error and leaves the weights unchanged', () => {
    const model = new Transformer(CFG, fastBackend(), 4);
    const trainer = new BuiltinTrainer(model);
    const before = Float32Array.from(model.params);
    const ids = [1, 2, 3];
    const s: Sample = { seq: { ids, logprobs: [0, -2, -2], versions: [-1, 0, 0], mask: [0, 1, 1], source: [0, 1, 1] }, reward: 0, advantage: Number.NaN, keys: {} };
    expect(() => trainer.trainStep([s], rlLoss({ kind: 'ppo' }))).toThrow(/non-finite|NaN/);
    expect(model.params).toEqual(before);
  });
});

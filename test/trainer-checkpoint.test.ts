import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { Rng } from '../src/core/rng.ts';
import type { Sample } from '../src/core/types.ts';
import { fastBackend } from './helpers/backends.ts';

const CFG = { vocabSize: 20, contextLength: 12, nLayer: 1, nHead: 2, nEmbd: 16 };

function batch(rng: Rng): Sample[] {
  return Array.from({ length: 4 }, () => {
    const ids = Array.from({ length: 9 }, () => rng.int(20));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i ? 1 : 0)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

describe('trainer checkpoints', () => {
  it('resume is exact: weights, AdamW moments, step and RNG', async () => {
    const be = fastBackend();
    const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-ck-')), 'step-3');
    const trainer = new BuiltinTrainer(new Transformer(CFG, be, 1), { lr: 1e-2, schedule: 'cosine', totalSteps: 10, warmupSteps: 2 });
    const rng = new Rng(5);
    for (let i = 0; i < 3; i++) trainer.trainStep(batch(rng), sftLoss);
    const tok = WordTokenizer.fromVocabulary(['a', 'b']);
    await saveTrainerCheckpoint(dir, trainer, { tokenizer: tok, rng: { data: rng.state() }, trainerState: { cursor: 3 } });
    for (let i = 0; i < 2; i++) trainer.trainStep(batch(rng), sftLoss);
    const restored = await loadTrainerCheckpoint(dir, be);
    expect(restored.trainer.step).toBe(3);
    expect(restored.checkpoint.trainerState).toEqual({ cursor: 3 });
    expect(restored.tokenizer?.encode('a b')).toEqual(tok.encode('a b'));
    const rng2 = new Rng(restored.checkpoint.rng.data!);
    for (let i = 0; i < 2; i++) restored.trainer.trainStep(batch(rng2), sftLoss);
    expect(Array.from(restored.trainer.model.params)).toEqual(Array.from(trainer.model.params));
    expect(Array.from(restored.trainer.v)).toEqual(Array.from(trainer.v));
  });

  it('a truncated weights file gives an error naming the file', async () => {
    const be = fastBackend();
    const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-ck-')), 'step-1');
    const trainer = new BuiltinTrainer(new Transformer(CFG, be, 1));
    await saveTrainerCheckpoint(dir, trainer, { tokenizer: null, rng: {}, trainerState: null });
    expect(readdirSync(dir)).toContain('model.safetensors');
    const f = join(dir, 'model.safetensors');
    truncateSync(f, Math.floor(statSync(f).size / 2));
    await expect(loadTrainerCheckpoint(dir, be)).rejects.toThrow(/model\.safetensors.*truncated/);
  });
});

/**
 * Trainer checkpoints that do not match their config are refused at load, naming the tensor or
 * field (issue 16, items 1, 8, 9): extra or missing tensors, wrong shapes with the right size, a
 * manifest edited to another architecture, step or optimizer setting, and non-finite weights.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../src/engine/checkpoint.ts';
import { f32Tensor } from '../src/engine/safetensors.ts';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { loadTrainerCheckpoint, paramsToTensors, saveTrainerCheckpoint, tensorsToParams } from '../src/train/trainer-checkpoint.ts';
import { fastBackend } from './helpers/backends.ts';

const CFG = { vocabSize: 20, contextLength: 12, nLayer: 2, nHead: 2, nEmbd: 16 };
const be = fastBackend();
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-validation-ck-'));
let n = 0;
const fresh = () => join(scratch, `ck-${n++}`);

async function savedTrainer(): Promise<{ dir: string; trainer: BuiltinTrainer }> {
  const dir = fresh();
  const trainer = new BuiltinTrainer(new Transformer(CFG, be, 1), { lr: 1e-3 });
  trainer.step = 7;
  await saveTrainerCheckpoint(dir, trainer, { tokenizer: null, rng: { data: [1, 2, 3, 4] }, trainerState: { cursor: 7 } });
  return { dir, trainer };
}

function editManifest(dir: string, f: (m: any) => void): void {
  const p = join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(p, 'utf8'));
  f(m);
  writeFileSync(p, JSON.stringify(m, null, 1));
}

describe('a checkpoint\'s tensors must be exactly its model config\'s parameters (item 8)', () => {
  it('a 4-layer checkpoint whose manifest says 2 layers: the extra tensors are named', async () => {
    const big = new Transformer({ ...CFG, nLayer: 4 }, be, 1);
    const dir = fresh();
    await saveCheckpoint(dir, {
      step: 1, weightVersion: 1, config: { model: { ...CFG, nLayer: 2 } }, tokenizer: null, rng: {}, trainerState: null,
      model: paramsToTensors(big, big.params), optimizer: null,
    });
    await expect(loadTrainerCheckpoint(dir, be)).rejects.toThrow(/checkpoint .* model: unexpected tensors 'h2\.[a-z.]+', .* and 19 more that the model config does not have/);
  });

  it('a tensor with the right number of values but another shape', async () => {
    const m = new Transformer(CFG, be, 1);
    const tensors = paramsToTensors(m, m.params);
    tensors['h0.attn.qkv.w'] = f32Tensor([16, 48], tensors['h0.attn.qkv.w']!.data as Float32Array);
    const dir = fresh();
    await saveCheckpoint(dir, { step: 1, weightVersion: 1, config: { model: CFG }, tokenizer: null, rng: {}, trainerState: null, model: tensors, optimizer: null });
    await expect(loadTrainerCheckpoint(dir, be)).rejects.toThrow(/tensor 'h0\.attn\.qkv\.w' has shape \[16, 48\], the model config needs \[48, 16\]/);
  });

  it('tensorsToParams refuses missing, extra, reshaped and non-float tensors', () => {
    const m = new Transformer(CFG, be, 1);
    const buf = new Float32Array(m.numParams);
    const t = paramsToTensors(m, m.params);
    expect(() => tensorsToParams(m, { ...t, extra: f32Tensor([1]) }, buf, 'snapshot x')).toThrow(/^snapshot x: unexpected tensor 'extra'/);
    const { wte: _wte, ...noWte } = t;
    expect(() => tensorsToParams(m, noWte, buf, 'snapshot x')).toThrow(/missing tensor 'wte'/);
    expect(() => tensorsToParams(m, { ...t, 'lnf.w': { dtype: 'I32', shape: [16], data: new Int32Array(16) } }, buf, 's')).toThrow(/tensor 'lnf\.w' has dtype I32/);
    tensorsToParams(m, t, buf, 'ok');
    expect(Array.from(buf)).toEqual(Array.from(m.params));
  });

  it('expectModel: a member checkpoint with another model config is refused naming the field', async () => {
    const { dir } = await savedTrainer();
    await expect(loadTrainerCheckpoint(dir, be, { expectModel: { ...CFG, nLayer: 1 } })).rejects.toThrow(/model config differs: nLayer is 2, expected 1/);
    const ok = await loadTrainerCheckpoint(dir, be, { expectModel: CFG });
    expect(ok.trainer.step).toBe(7);
  });
});

describe('an edited trainer manifest is refused, naming the field (item 9)', () => {
  it('architecture edited with the same tensor shapes (nHead 2 → 4)', async () => {
    const { dir } = await savedTrainer();
    editManifest(dir, (m) => { m.config.model.nHead = 4; });
    await expect(loadTrainerCheckpoint(dir, be)).rejects.toThrow(/manifest\.json does not match its checksum \(field 'config\.model' changed after the checkpoint was written\)/);
  });

  it('edited step, RNG state and optimizer setting', async () => {
    for (const [edit, field] of [
      [(m: any) => { m.step = 8; }, 'step'],
      [(m: any) => { m.rng.data[0] = 9; }, 'rng\\.data'],
      [(m: any) => { m.config.optimizer.lr = 1; }, 'config\\.optimizer'],
    ] as const) {
      const { dir } = await savedTrainer();
      editManifest(dir, edit);
      await expect(loadTrainerCheckpoint(dir, be)).rejects.toThrow(new RegExp(`field '${field}' changed`));
    }
  });

  it('an unedited checkpoint still loads exactly', async () => {
    const { dir, trainer } = await savedTrainer();
    const back = await loadTrainerCheckpoint(dir, be);
    expect(back.trainer.step).toBe(7);
    expect(Array.from(back.trainer.model.params)).toEqual(Array.from(trainer.model.params));
  });
});

describe('non-finite weights and moments (item 1)', () => {
  it('saveTrainerCheckpoint refuses NaN weights naming the tensor; nothing is written', async () => {
    const trainer = new BuiltinTrainer(new Transformer(CFG, be, 1));
    trainer.model.view(trainer.model.params, 'h1.mlp.proj.b')[3] = NaN;
    const dir = fresh();
    await expect(saveTrainerCheckpoint(dir, trainer, { tokenizer: null, rng: {}, trainerState: null }))
      .rejects.toThrow(/model tensor 'h1\.mlp\.proj\.b' holds NaN at \[3\]; refusing to save non-finite weights/);
    trainer.model.view(trainer.model.params, 'h1.mlp.proj.b')[3] = 0;
    trainer.v[10] = Infinity;
    await expect(saveTrainerCheckpoint(dir, trainer, { tokenizer: null, rng: {}, trainerState: null })).rejects.toThrow(/optimizer\.v tensor 'wte' holds Infinity at \[0, 10\]/);
  });
});

/**
 * LoRA: adapter gradients derived from the merged weight's gradient match finite differences; an
 * untrained adapter leaves the model bit-identical; training moves only the adapted rows and keeps
 * AdamW state adapter-sized; a LoRA checkpoint resumes exactly; the sampler scores with the same
 * merged weights the trainer uses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { LoraAdapter, loraTargets } from '../src/train/lora.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import type { Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';

const be = new JsBackend();
const MODEL: ModelConfigInput = { vocabSize: 20, contextLength: 12, nLayer: 2, nHead: 2, nEmbd: 16, initStd: 0.3 };
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function samples(n: number, seed: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const ids = Array.from({ length: 9 }, () => rng.int(20));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

describe('LoRA targets', () => {
  it('maps Hugging Face module names to row blocks of the fused matrices', () => {
    const gelu = loraTargets({ nLayer: 1, nHead: 2, nEmbd: 16, mlpRatio: 4 }, undefined);
    expect(gelu.map((t) => `${t.module}:${t.param}:${t.rowStart}+${t.rows}x${t.cols}`)).toEqual([
      'c_attn:h0.attn.qkv.w:0+48x16', 'c_proj:h0.attn.proj.w:0+16x16', 'c_fc:h0.mlp.fc.w:0+64x16', 'c_proj:h0.mlp.proj.w:0+16x64',
    ]);
    const swiglu = loraTargets({ nLayer: 1, nHead: 4, nKvHead: 2, headDim: 8, nEmbd: 24, mlp: 'swiglu', intermediateSize: 40, mlpRatio: 4 }, ['q_proj', 'k_proj', 'v_proj', 'up_proj', 'down_proj']);
    expect(swiglu.map((t) => `${t.module}:${t.param}:${t.rowStart}+${t.rows}x${t.cols}`)).toEqual([
      'q_proj:h0.attn.qkv.w:0+32x24', 'k_proj:h0.attn.qkv.w:32+16x24', 'v_proj:h0.attn.qkv.w:48+16x24', 'up_proj:h0.mlp.fc.w:40+40x24', 'down_proj:h0.mlp.proj.w:0+24x40',
    ]);
  });

  it('names a module the model does not have', () => {
    expect(() => loraTargets({ nLayer: 1, nHead: 2, nEmbd: 16, mlpRatio: 4 }, ['q_proj'])).toThrow(/lora\.targetModules: 'q_proj' is not a module of this model.*c_attn, c_proj, c_fc/);
    const model = new Transformer(MODEL, be, 1);
    expect(() => new LoraAdapter(model, { rank: 0 })).toThrow(/lora\.rank/);
  });
});

describe('LoRA adapter', () => {
  it('an untrained adapter merges to the base weights bit for bit', () => {
    const model = new Transformer(MODEL, be, 1);
    const before = Float32Array.from(model.params);
    const lora = new LoraAdapter(model, { rank: 4, seed: 3 });
    lora.merge();
    expect(Buffer.from(model.params.buffer).equals(Buffer.from(before.buffer))).toBe(true);
  });

  it('dA and dB from the merged weight gradient match finite differences of the loss', () => {
    // A gentler model than the others here, so the loss is close to quadratic over ±eps in float32.
    const model = new Transformer({ ...MODEL, initStd: 0.1 }, be, 2);
    const lora = new LoraAdapter(model, { rank: 3, alpha: 6, seed: 4 });
    const rng = new Rng(9);
    for (let i = 0; i < lora.params.length; i++) lora.params[i] = 0.1 * rng.normal(); // B ≠ 0 so dA is not trivially 0
    lora.merge();
    const batch = samples(2, 5);
    const tokens = Int32Array.from(batch.flatMap((s) => s.seq.ids.slice(0, -1)));
    const targets = Int32Array.from(batch.flatMap((s) => s.seq.ids.slice(1)));
    const w = Float32Array.from({ length: targets.length }, () => rng.normal());
    const loss = (): number => {
      lora.merge();
      const r = model.forward({ B: 2, T: 8, tokens, targets });
      let s = 0;
      for (let i = 0; i < w.length; i++) s += w[i]! * r.logprobs[i]!;
      return s;
    };
    loss();
    model.zeroGrad();
    model.backward(w, new Float32Array(w.length));
    lora.gradsFromModel();
    const analytic = Float32Array.from(lora.grads);
    // The trainer's path: the adapter as the model's weight-gradient delegate (no dW formed) gives the same gradients.
    model.weightGradDelegate = lora;
    lora.zeroGrad();
    loss();
    model.backward(w, new Float32Array(w.length));
    model.weightGradDelegate = null;
    for (let i = 0; i < analytic.length; i++) expect(Math.abs(lora.grads[i]! - analytic[i]!), `delegate gradient ${i}`).toBeLessThan(1e-4 + 1e-4 * Math.abs(analytic[i]!));
    let checked = 0;
    for (const pv of lora.layout) {
      for (const j of [0, Math.floor(pv.size / 2), pv.size - 1]) {
        const i = pv.offset + j, keep = lora.params[i]!, eps = 1e-2;
        lora.params[i] = keep + eps; const up = loss();
        lora.params[i] = keep - eps; const down = loss();
        lora.params[i] = keep;
        const numeric = (up - down) / (2 * eps);
        expect(Math.abs(numeric - analytic[i]!), `${pv.name}[${j}]: numeric ${numeric}, analytic ${analytic[i]}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(numeric));
        checked++;
      }
    }
    expect(checked).toBe(3 * lora.layout.length);
  });

  it('training moves only the adapted rows, with adapter-sized AdamW state', () => {
    const model = new Transformer(MODEL, be, 3);
    const base = Float32Array.from(model.params);
    const lora = new LoraAdapter(model, { rank: 2, targetModules: ['c_attn'], seed: 1 });
    const trainer = new BuiltinTrainer(model, { lr: 1e-2, weightDecay: 0 }, { lora });
    expect(trainer.m.length).toBe(lora.numParams);
    for (let s = 0; s < 3; s++) trainer.trainStep(samples(4, 10 + s), sftLoss);
    for (const v of model.layout) {
      const changed = model.params.subarray(v.offset, v.offset + v.size).some((x, i) => x !== base[v.offset + i]);
      expect(changed, v.name).toBe(/attn\.qkv\.w$/.test(v.name));
    }
  });

  it('a LoRA checkpoint resumes exactly: two more steps after a reload equal two more steps without one', async () => {
    const make = () => {
      const model = new Transformer(MODEL, be, 4);
      const lora = new LoraAdapter(model, { rank: 2, alpha: 4, seed: 2 });
      return new BuiltinTrainer(model, { lr: 5e-3 }, { lora });
    };
    const a = make();
    for (let s = 0; s < 2; s++) a.trainStep(samples(3, 20 + s), sftLoss);
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-lora-'));
    dirs.push(dir);
    await saveTrainerCheckpoint(join(dir, 'ck'), a, { tokenizer: null, rng: {}, trainerState: null });
    const { trainer: b } = await loadTrainerCheckpoint(join(dir, 'ck'), be);
    expect(b.lora?.config).toEqual(a.lora!.config);
    expect(Buffer.from(b.model.params.buffer).equals(Buffer.from(a.model.params.buffer))).toBe(true);
    for (let s = 2; s < 4; s++) { a.trainStep(samples(3, 20 + s), sftLoss); b.trainStep(samples(3, 20 + s), sftLoss); }
    expect(b.step).toBe(a.step);
    expect(Buffer.from(b.model.params.buffer).equals(Buffer.from(a.model.params.buffer))).toBe(true);
    expect(Buffer.from(b.lora!.params.buffer).equals(Buffer.from(a.lora!.params.buffer))).toBe(true);
  });
});

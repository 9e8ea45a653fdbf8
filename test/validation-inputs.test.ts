/**
 * Inputs that cannot be right are refused with a message naming them (issue 16, items 1, 5, 6, 7):
 * misspelled and out-of-range model/optimizer config keys, impossible token ids in trainer
 * samples, and non-finite weights on the trainer's loss/logprob path.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { closestKey, editDistance, formatZodError, formatZodIssues, schemaKeysAt } from '../src/core/config-errors.ts';
import { checkModelFits, ModelConfigSchema, parseModelConfig, Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer, OptimizerConfigSchema, sftLoss } from '../src/train/builtin-trainer.ts';
import type { Sample } from '../src/core/types.ts';
import { allBackends, fastBackend } from './helpers/backends.ts';

const TINY: ModelConfigInput = { vocabSize: 12, contextLength: 10, nLayer: 1, nHead: 2, nEmbd: 8, initStd: 0.3 };

function sample(ids: number[], extra: Partial<Sample> = {}): Sample {
  return {
    seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i ? 1 : 0)), source: ids.map(() => 0 as const) },
    reward: 0, advantage: 1, keys: {}, ...extra,
  };
}

describe('config error helper (src/core/config-errors.ts)', () => {
  const optimizerKeys = Object.keys(OptimizerConfigSchema.shape);

  it('finds the closest valid key: same words, initials, or a small edit', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(closestKey('learningRate', optimizerKeys)).toBe('lr');
    expect(closestKey('learning_rate', optimizerKeys)).toBe('lr');
    expect(closestKey('weight_decay', optimizerKeys)).toBe('weightDecay');
    expect(closestKey('beta_2', optimizerKeys)).toBe('beta2');
    expect(closestKey('warmup', optimizerKeys)).toBe('warmupSteps');
    expect(closestKey('position', ['norm', 'positions', 'ropeBase'])).toBe('positions');
    expect(closestKey('zzz', optimizerKeys)).toBeUndefined();
  });

  it('formats every issue as `path: message`, unknown keys with a suggestion or the valid keys', () => {
    const schema = z.object({ a: z.number(), inner: z.object({ speed: z.number().default(1) }).strict().default({}), list: z.array(z.object({ name: z.string() }).strict()).default([]) }).strict();
    const r = schema.safeParse({ a: 'x', inner: { sped: 2 }, list: [{ name: 'n', nmae: 'm' }], qqq: 1 });
    expect(r.success).toBe(false);
    const lines = formatZodIssues(r.error!, { schema, prefix: 'cfg' });
    expect(lines).toContain('cfg.a: Expected number, received string');
    expect(lines).toContain("cfg.inner.sped: unknown key (did you mean 'speed'?)");
    expect(lines).toContain("cfg.list.0.nmae: unknown key (did you mean 'name'?)");
    expect(lines).toContain('cfg.qqq: unknown key (valid keys: a, inner, list)');
    expect(formatZodError(r.error!, { schema })).toMatch(/^a: Expected number.*; qqq: unknown key/);
    expect(schemaKeysAt(ModelConfigSchema, [])).toContain('positions'); // through .superRefine
  });
});

describe('model config: strict keys and finite ranges (items 6, 7)', () => {
  const be = fastBackend();
  it('an unknown key is an error naming it and the closest valid key', () => {
    expect(() => new Transformer({ ...TINY, position: 'rope' } as ModelConfigInput, be)).toThrow(/invalid model config: model\.position: unknown key \(did you mean 'positions'\?\)/);
    expect(() => new Transformer({ ...TINY, n_layer: 2 } as ModelConfigInput, be)).toThrow(/model\.n_layer: unknown key \(did you mean 'nLayer'\?\)/);
  });
  it('initStd must be finite and ≥ 0; ropeBase finite', () => {
    expect(() => new Transformer({ ...TINY, initStd: Infinity }, be)).toThrow(/model\.initStd: Number must be finite/);
    expect(() => new Transformer({ ...TINY, initStd: -0.1 }, be)).toThrow(/model\.initStd/);
    expect(() => new Transformer({ ...TINY, initStd: NaN }, be)).toThrow(/model\.initStd/);
    expect(() => new Transformer({ ...TINY, positions: 'rope', ropeBase: Infinity }, be)).toThrow(/model\.ropeBase: Number must be finite/);
    const zero = new Transformer({ ...TINY, initStd: 0 }, be);
    expect(zero.view(zero.params, 'wte').every((x) => x === 0)).toBe(true);
  });
});

describe('model size: refused before allocating when it cannot fit in memory', () => {
  it('a model too large for this machine names its size, the memory and the fields to shrink', () => {
    const huge: ModelConfigInput = { vocabSize: 100, contextLength: 16, nLayer: 64, nHead: 8, nEmbd: 65536 };
    expect(() => new Transformer(huge, fastBackend())).toThrow(/parameters .* need \d+(\.\d)? GiB for weights and gradients.*Make model\.nEmbd or model\.nLayer smaller/);
    // The limit is the memory: 1 M parameters need 8 MB; fine with 16 MB, refused with 4 MB.
    const c = parseModelConfig({ vocabSize: 100, contextLength: 16, nLayer: 1, nHead: 1, nEmbd: 8 });
    expect(() => checkModelFits(1_000_000, c, 16e6)).not.toThrow();
    expect(() => checkModelFits(1_000_000, c, 4e6)).toThrow(/this machine has 0\.0 GiB/);
    expect(() => checkModelFits(2 ** 32, c, 2 ** 50)).toThrow(/one buffer holds at most 2\^32 − 1 floats/);
  });
});

describe('optimizer config: strict keys and ranges (items 6, 7)', () => {
  const model = new Transformer(TINY, fastBackend(), 1);
  const make = (opt: unknown) => () => new BuiltinTrainer(model, opt as never);
  it('a misspelled key is an error naming the closest valid key (it used to train at the default)', () => {
    expect(make({ learningRate: 1e-2 })).toThrow(/invalid optimizer config: optimizer\.learningRate: unknown key \(did you mean 'lr'\?\)/);
    expect(make({ weight_decay: 0 })).toThrow(/optimizer\.weight_decay: unknown key \(did you mean 'weightDecay'\?\)/);
  });
  it('β₁, β₂ in [0, 1), lr and eps finite and > 0', () => {
    expect(make({ beta1: 1 })).toThrow(/optimizer\.beta1: Number must be less than 1/);
    expect(make({ beta2: 1 })).toThrow(/optimizer\.beta2: Number must be less than 1/);
    expect(make({ beta2: -0.1 })).toThrow(/optimizer\.beta2/);
    expect(make({ lr: Infinity })).toThrow(/optimizer\.lr: Number must be finite/);
    expect(make({ lr: 0 })).toThrow(/optimizer\.lr/);
    expect(make({ eps: Infinity })).toThrow(/optimizer\.eps: Number must be finite/);
    expect(make({ eps: 0 })).toThrow(/optimizer\.eps/);
    expect(make({ weightDecay: Infinity })).toThrow(/optimizer\.weightDecay/);
    expect(make({ beta1: 0, beta2: 0.999999 })).not.toThrow();
  });
});

describe('trainer samples: token ids must be integers in the vocabulary (item 5)', () => {
  const trainer = new BuiltinTrainer(new Transformer(TINY, fastBackend(), 1), { lr: 1e-2 });
  const good = sample([1, 2, 3, 4]);
  const cases: [number, string][] = [[-1, '-1'], [3.7, '3\\.7'], [NaN, 'NaN'], [12, '12'], [Infinity, 'Infinity']];
  for (const [bad, shown] of cases) {
    it(`id ${bad} is refused by trainStep and computeLogprobs, naming the sample and position`, () => {
      const before = trainer.model.params.slice();
      const samples = [good, sample([1, 2, 3, bad, 5])];
      const msg = new RegExp(`sample 1: token id ${shown} at position 3 is not a token of the model \\(ids are integers in \\[0, 12\\)\\)`);
      expect(() => trainer.trainStep(samples, sftLoss)).toThrow(msg);
      expect(() => trainer.computeLogprobs(samples)).toThrow(msg);
      expect(Array.from(trainer.model.params)).toEqual(Array.from(before)); // weights unchanged
    });
  }
  it('per-token arrays must match the ids', () => {
    const s = sample([1, 2, 3]);
    s.seq.logprobs.pop();
    expect(() => trainer.trainStep([s], sftLoss)).toThrow(/sample 0 has 3 token ids but 2 logprobs/);
  });
});

describe.each(allBackends().map((b) => [b.name, b] as const))('trainer with non-finite weights on %s (item 1)', (_name, backend) => {
  it('trainStep and computeLogprobs name the parameter, not "loss is Infinity … check advantages"', () => {
    const trainer = new BuiltinTrainer(new Transformer(TINY, backend, 1));
    trainer.model.view(trainer.model.params, 'h0.attn.qkv.w')[5] = NaN;
    const batch = [sample([1, 2, 3, 4]), sample([5, 6, 7])];
    expect(() => trainer.trainStep(batch, sftLoss)).toThrow(/forward: the model's weights are not finite: parameter 'h0\.attn\.qkv\.w' holds NaN at \[0, 5\]/);
    expect(() => trainer.computeLogprobs(batch)).toThrow(/parameter 'h0\.attn\.qkv\.w' holds NaN/);
  });

  it('a trained token its own constraint mask forbids is named (logprob −∞), not an infinite loss', () => {
    const trainer = new BuiltinTrainer(new Transformer(TINY, backend, 1));
    const s = sample([1, 2, 5, 4]);
    const forbid5 = new Uint8Array(12).fill(1);
    forbid5[5] = 0;
    s.seq.constraintMasks = [null, null, forbid5, null];
    expect(() => trainer.trainStep([s], sftLoss)).toThrow(/sample 0, position 2: token 5 has logprob -Infinity because its constraint mask forbids it/);
  });
});

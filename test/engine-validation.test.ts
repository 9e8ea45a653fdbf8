/** Invalid BuiltinEngine options and sampling parameters fail fast with a message naming them. */
import { describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import type { SamplingParams } from '../src/engine/types.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const CFG: ModelConfigInput = { vocabSize: 13, contextLength: 16, nLayer: 1, nHead: 1, nEmbd: 4 };
const model = () => new Transformer(CFG, new JsBackend(), 1);

describe('BuiltinEngine options', () => {
  it.each([
    [{ maxBatch: 0 }, /maxBatch must be an integer ≥ 1 \(got 0\)/],
    [{ maxBatch: -1 }, /maxBatch must be an integer ≥ 1 \(got -1\)/],
    [{ maxBatch: 2.5 }, /maxBatch must be an integer ≥ 1 \(got 2.5\)/],
    [{ maxBatch: Number.NaN }, /maxBatch must be an integer ≥ 1 \(got NaN\)/],
    [{ seed: 1.5 }, /seed must be an integer \(got 1.5\)/],
    [{ seed: Number.NaN }, /seed must be an integer \(got NaN\)/],
  ])('%o is rejected', (opts, error) => {
    expect(() => new BuiltinEngine(model(), idTokenizer(13), opts)).toThrow(error);
  });

  it('valid options construct an engine that generates', async () => {
    const engine = new BuiltinEngine(model(), idTokenizer(13), { maxBatch: 1, seed: 0 });
    expect((await engine.generate([1], { maxTokens: 2 })).ids).toHaveLength(2);
  });
});

describe('BuiltinEngine.generate parameters', () => {
  const engine = new BuiltinEngine(model(), idTokenizer(13), { maxBatch: 2, seed: 3 });
  const bad: [string, Partial<SamplingParams>, RegExp][] = [
    ['temperature Infinity', { temperature: Infinity }, /temperature must be a finite number > 0 \(got Infinity\)/],
    ['temperature NaN', { temperature: Number.NaN }, /temperature must be a finite number > 0 \(got NaN\)/],
    ['temperature 0', { temperature: 0 }, /temperature must be a finite number > 0 \(got 0\)/],
    ['temperature -1', { temperature: -1 }, /temperature must be a finite number > 0 \(got -1\)/],
    ['temperature 5e-324', { temperature: 5e-324 }, /temperature 5e-324 is too small/],
    ['maxTokens 2.5', { maxTokens: 2.5 }, /maxTokens must be an integer ≥ 1 \(got 2.5\)/],
    ['maxTokens 0', { maxTokens: 0 }, /maxTokens must be an integer ≥ 1 \(got 0\)/],
    ['maxTokens Infinity', { maxTokens: Infinity }, /maxTokens must be an integer ≥ 1 \(got Infinity\)/],
    ['topK -1', { topK: -1 }, /topK must be an integer ≥ 0, 0 = off \(got -1\)/],
    ['topK 1.5', { topK: 1.5 }, /topK must be an integer ≥ 0, 0 = off \(got 1.5\)/],
    ['topP NaN', { topP: Number.NaN }, /topP must be in \(0, 1\], 1 = off \(got NaN\)/],
    ['topP 0', { topP: 0 }, /topP must be in \(0, 1\], 1 = off \(got 0\)/],
    ['topP 1.5', { topP: 1.5 }, /topP must be in \(0, 1\], 1 = off \(got 1.5\)/],
    ['seed 0.5', { seed: 0.5 }, /seed must be an integer \(got 0.5\)/],
  ];
  it.each(bad)('%s is rejected', async (_name, params, error) => {
    await expect(engine.generate([1, 2], { maxTokens: 3, ...params })).rejects.toThrow(error);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
  });

  it('boundary values are accepted', async () => {
    const out = await engine.generate([1, 2], { maxTokens: 1, temperature: 1e-3, topK: 1, topP: 1 });
    expect(out.ids).toHaveLength(1);
    expect((await engine.generate([1, 2], { maxTokens: 2, topK: 0, topP: 1e-6 })).ids).toHaveLength(2);
  });
});

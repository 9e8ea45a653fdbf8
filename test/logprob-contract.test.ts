/**
 * The token-in-token-out contract: the logprob the sampler reports for each token equals the logprob
 * the trainer computes for the same sequence and weights — batched, with the KV cache, with and
 * without constraint masks and temperature, with top-k / top-p truncation (the logprob of the
 * renormalised kept set, recorded as the token's mask), and across an interrupting weight update.
 */
import { describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import type { SampledCompletion } from '../src/engine/types.ts';
import { Rng } from '../src/core/rng.ts';
import { allBackends } from './helpers/backends.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const CFG: ModelConfigInput = { vocabSize: 37, contextLength: 40, nLayer: 2, nHead: 2, nEmbd: 16, initStd: 0.2 };

function toSample(prompt: number[], c: SampledCompletion): Sample {
  const seq = emptySeq();
  appendContext(seq, prompt);
  appendCompletion(seq, c);
  return { seq, reward: 0, keys: {}, temperature: c.temperature };
}

function maxDiff(samples: Sample[], recomputed: Float32Array[]): number {
  let worst = 0;
  samples.forEach((s, i) => {
    for (let t = 0; t < s.seq.ids.length; t++) {
      if (!s.seq.mask[t]) continue;
      worst = Math.max(worst, Math.abs(s.seq.logprobs[t]! - recomputed[i]![t]!));
    }
  });
  return worst;
}

describe.each(allBackends().map((b) => [b.name, b] as const))('sampler vs trainer logprobs on %s', (_n, backend) => {
  const cases = [
    { name: 'plain, T=1', temperature: 1, masked: false, rope: false },
    { name: 'temperature 0.6 + constraint masks', temperature: 0.6, masked: true, rope: false },
    { name: 'rope, temperature 1.3, top-k/top-p sampling', temperature: 1.3, masked: false, rope: true },
  ];
  it.each(cases)('$name: |behaviour − recomputed| ≤ 1e-4, batched with the KV cache', async ({ temperature, masked, rope }) => {
    const model = new Transformer({ ...CFG, positions: rope ? 'rope' : 'learned' }, backend, 3);
    const engine = new BuiltinEngine(model, idTokenizer(CFG.vocabSize), { maxBatch: 4, seed: 9 });
    const rng = new Rng(5);
    // Prompts of different lengths; more requests than slots so rows join and leave the batch.
    const prompts = Array.from({ length: 7 }, (_, i) => Array.from({ length: 2 + ((i * 5) % 9) }, () => rng.int(CFG.vocabSize)));
    const constraint = masked ? (gen: readonly number[]) => {
      const m = new Uint8Array(CFG.vocabSize);
      for (let v = 0; v < CFG.vocabSize; v++) m[v] = (v + gen.length) % 3 === 0 ? 1 : 0;
      return m;
    } : undefined;
    const outs = await Promise.all(prompts.map((p, i) => engine.generate(p, { maxTokens: 6 + i, temperature, constraint, topK: rope ? 8 : 0, topP: rope ? 0.9 : 1 })));
    expect(engine.stats.rowsDecoded / engine.stats.decodeSteps).toBeGreaterThan(1.5); // really batched
    if (masked) for (const o of outs) o.ids.forEach((id, t) => expect((id + t) % 3).toBe(0));
    const samples = prompts.map((p, i) => toSample(p, outs[i]!));
    const trainer = new BuiltinTrainer(new Transformer({ ...CFG, positions: rope ? 'rope' : 'learned' }, backend, 3));
    expect(maxDiff(samples, trainer.computeLogprobs(samples))).toBeLessThanOrEqual(1e-4);
  });

  it.each([
    { name: 'top-k 4', topK: 4, topP: 1 },
    { name: 'top-p 0.7', topK: 0, topP: 0.7 },
  ])('$name: the behaviour logprob is that of the truncated distribution sampled from, and the trainer recomputes it exactly', async ({ topK, topP }) => {
    const model = new Transformer(CFG, backend, 3);
    const engine = new BuiltinEngine(model, idTokenizer(CFG.vocabSize), { maxBatch: 4, seed: 11 });
    const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10], [11, 12]];
    const outs = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 10, temperature: 1.2, topK, topP })));
    for (const o of outs) {
      expect(o.masks).toHaveLength(o.ids.length);
      o.ids.forEach((id, t) => {
        const m = o.masks![t];
        if (!m) return; // nothing truncated at this step (possible for top-p only)
        expect(m[id]).toBe(1);
        const kept = m.reduce((a, x) => a + x, 0);
        expect(kept).toBeLessThan(CFG.vocabSize);
        if (topK > 0) expect(kept).toBe(topK);
      });
    }
    const samples = prompts.map((p, i) => toSample(p, outs[i]!));
    const trainer = new BuiltinTrainer(new Transformer(CFG, backend, 3));
    expect(maxDiff(samples, trainer.computeLogprobs(samples))).toBeLessThanOrEqual(1e-4);
    // The same tokens scored under the full (untruncated) distribution: clearly different, so this
    // test would catch a sampler that reports the untruncated logprob.
    const untruncated = prompts.map((p, i) => toSample(p, { ...outs[i]!, masks: undefined }));
    expect(maxDiff(samples, trainer.computeLogprobs(untruncated))).toBeGreaterThan(1e-2);
  });

  it('an interrupted generation records per-token versions whose logprobs match each version', async () => {
    const v0 = new Transformer(CFG, backend, 3);
    const v1 = new Transformer(CFG, backend, 4); // "trained" weights: a different init
    const engine = new BuiltinEngine(new Transformer(CFG, backend, 3), idTokenizer(CFG.vocabSize), { maxBatch: 4, seed: 2 });
    const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]];
    const pending = prompts.map((p) => engine.generate(p, { maxTokens: 12 }));
    // Let a few decode steps run, then publish new weights mid-generation.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    engine.setWeights(v1.params, 1);
    const outs = await Promise.all(pending);
    expect(engine.stats.interruptions).toBeGreaterThan(0);
    for (const o of outs) {
      expect(o.versions[0]).toBe(0);
      expect(o.versions[o.versions.length - 1]).toBe(1);
      expect([...o.versions]).toEqual([...o.versions].sort((a, b) => a - b)); // monotone
    }
    const samples = prompts.map((p, i) => toSample(p, outs[i]!));
    const lp0 = new BuiltinTrainer(v0).computeLogprobs(samples);
    const lp1 = new BuiltinTrainer(v1).computeLogprobs(samples);
    samples.forEach((s, i) => {
      for (let t = 0; t < s.seq.ids.length; t++) {
        if (!s.seq.mask[t]) continue;
        const ref = s.seq.versions[t] === 0 ? lp0[i]![t]! : lp1[i]![t]!;
        expect(Math.abs(s.seq.logprobs[t]! - ref)).toBeLessThanOrEqual(1e-4);
      }
    });
  });
});

describe('sampler RNG state', () => {
  it('restoring rngState() replays the same completions', async () => {
    const backend = allBackends()[0]!;
    const engine = new BuiltinEngine(new Transformer(CFG, backend, 3), idTokenizer(CFG.vocabSize), { maxBatch: 4, seed: 9 });
    await engine.generate([1, 2], { maxTokens: 3 });
    const saved = engine.rngState();
    const a = await Promise.all([engine.generate([1, 2], { maxTokens: 8 }), engine.generate([3], { maxTokens: 8 })]);
    engine.setRngState(saved);
    const b = await Promise.all([engine.generate([1, 2], { maxTokens: 8 }), engine.generate([3], { maxTokens: 8 })]);
    expect(b.map((c) => c.ids)).toEqual(a.map((c) => c.ids));
  });
});

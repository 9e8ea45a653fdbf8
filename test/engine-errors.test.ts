/**
 * Per-request failures in the built-in engine: non-finite logits and bad constraints reject the
 * affected request(s) with a clear error; the other requests in the batch continue and succeed.
 */
import { describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import type { SampledCompletion, TokenConstraint } from '../src/engine/types.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const CFG: ModelConfigInput = { vocabSize: 23, contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 8, initStd: 0.2 };
const V = 23, C = 8;
const backend = new JsBackend();

function newEngine(): BuiltinEngine {
  return new BuiltinEngine(new Transformer(CFG, backend, 3), idTokenizer(V), { maxBatch: 4, seed: 7 });
}

function contractGap(prompts: number[][], outs: SampledCompletion[]): number {
  const samples: Sample[] = prompts.map((p, i) => {
    const seq = emptySeq();
    appendContext(seq, p);
    appendCompletion(seq, outs[i]!);
    return { seq, reward: 0, keys: {}, temperature: outs[i]!.temperature };
  });
  const lp = new BuiltinTrainer(new Transformer(CFG, backend, 3)).computeLogprobs(samples);
  let worst = 0;
  samples.forEach((s, i) => s.seq.ids.forEach((_, t) => {
    if (s.seq.mask[t]) worst = Math.max(worst, Math.abs(s.seq.logprobs[t]! - lp[i]![t]!));
  }));
  return worst;
}

describe('BuiltinEngine: non-finite logits', () => {
  it('NaN logits for some tokens reject the requests with a clear error instead of emitting a NaN-logprob token', async () => {
    const engine = newEngine();
    const good = Float32Array.from(engine.model.params);
    const corrupt = Float32Array.from(good);
    corrupt.fill(Number.NaN, 5 * C, 6 * C); // tied output head: token 5's logit is NaN (the prompts avoid token 5)
    engine.setWeights(corrupt, 1);
    const results = await Promise.allSettled([engine.generate([1, 2], { maxTokens: 4 }), engine.generate([3], { maxTokens: 4, topK: 3 })]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect(String((r as PromiseRejectedResult).reason.message)).toMatch(/non-finite logits \(NaN\/Inf\).*weights are probably corrupt/);
    }
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    // The engine is still usable once the weights are fixed.
    engine.setWeights(good, 2);
    const out = await engine.generate([1, 2], { maxTokens: 4 });
    expect(out.logprobs.every(Number.isFinite)).toBe(true);
  });
});

describe('BuiltinEngine: one bad constraint fails only its request', () => {
  const allow = (ok: (v: number) => boolean) => Uint8Array.from({ length: V }, (_, v) => (ok(v) ? 1 : 0));
  const cases: { name: string; constraint: TokenConstraint; error: RegExp }[] = [
    { name: 'all-zero mask', constraint: (gen) => (gen.length === 3 ? new Uint8Array(V) : null), error: /constraint allows no token/ },
    { name: 'mask of the wrong length', constraint: (gen) => (gen.length === 3 ? new Uint8Array(V - 1).fill(1) : null), error: /constraint returned a mask of length 22 at generated token 3; expected a Uint8Array of length vocabSize 23/ },
    { name: 'constraint that throws', constraint: (gen) => { if (gen.length === 3) throw new Error('grammar bug'); return null; }, error: /token constraint threw at generated token 3: grammar bug/ },
    { name: 'all-zero mask at the first token', constraint: () => new Uint8Array(V), error: /constraint allows no token/ },
  ];
  it.each(cases)('$name', async ({ constraint, error }) => {
    const engine = newEngine();
    const prompts = [[1, 2], [3, 4, 5], [6], [7, 8]];
    // The bad request sits in the middle of the batch, so removing it moves another row's cache.
    const results = await Promise.allSettled(prompts.map((p, i) => engine.generate(p, {
      maxTokens: 10,
      constraint: i === 1 ? constraint : (gen) => allow((v) => (v + gen.length) % 2 === 0),
    })));
    expect(results[1]!.status).toBe('rejected');
    expect((results[1] as PromiseRejectedResult).reason.message).toMatch(error);
    const okPrompts = prompts.filter((_, i) => i !== 1);
    const outs = results.filter((_, i) => i !== 1).map((r) => {
      expect(r.status).toBe('fulfilled');
      return (r as PromiseFulfilledResult<SampledCompletion>).value;
    });
    for (const o of outs) {
      expect(o.ids).toHaveLength(10);
      o.ids.forEach((id, t) => expect((id + t) % 2).toBe(0));
    }
    expect(contractGap(okPrompts, outs)).toBeLessThanOrEqual(1e-4);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
  });
});

/**
 * Aborting a generation (params.signal): the request leaves the queue or the running batch at once,
 * rejects with GenerationAbortedError carrying its partial tokens, and the rest of the batch
 * continues with correct KV-cache state (their logprobs still match the trainer's).
 */
import { describe, expect, it, vi } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine, GenerationAbortedError } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import type { SampledCompletion } from '../src/engine/types.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const CFG: ModelConfigInput = { vocabSize: 23, contextLength: 512, nLayer: 1, nHead: 2, nEmbd: 8, initStd: 0.2 };
const backend = new JsBackend();

function newEngine(maxBatch = 4): BuiltinEngine {
  return new BuiltinEngine(new Transformer(CFG, backend, 3), idTokenizer(CFG.vocabSize), { maxBatch, seed: 7 });
}

const tick = () => new Promise<void>((r) => setImmediate(r));

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !cond(); i++) await tick();
  if (!cond()) throw new Error('condition never held');
}

function toSample(prompt: number[], c: SampledCompletion): Sample {
  const seq = emptySeq();
  appendContext(seq, prompt);
  appendCompletion(seq, c);
  return { seq, reward: 0, keys: {}, temperature: c.temperature };
}

/** Max |behaviour − trainer| logprob over the completions' tokens. */
function contractGap(prompts: number[][], outs: SampledCompletion[]): number {
  const samples = prompts.map((p, i) => toSample(p, outs[i]!));
  const lp = new BuiltinTrainer(new Transformer(CFG, backend, 3)).computeLogprobs(samples);
  let worst = 0;
  samples.forEach((s, i) => s.seq.ids.forEach((_, t) => {
    if (s.seq.mask[t]) worst = Math.max(worst, Math.abs(s.seq.logprobs[t]! - lp[i]![t]!));
  }));
  return worst;
}

describe('BuiltinEngine abort', () => {
  it('aborting a long request mid-generation rejects at once, stops its decoding and leaves the others intact', async () => {
    const engine = newEngine();
    const ctl = new AbortController();
    const removeSpy = vi.spyOn(ctl.signal, 'removeEventListener');
    // The long request sits in slot 0, so removing it moves another row's cache into its slot.
    const long = engine.generate([1, 2, 3], { maxTokens: 480, signal: ctl.signal });
    const others = [[4, 5], [6, 7, 8]];
    const pending = others.map((p) => engine.generate(p, { maxTokens: 30 }));
    await until(() => engine.stats.tokensSampled >= 15); // five tokens each
    const sampledAtAbort = engine.stats.tokensSampled;
    ctl.abort(new Error('caller gave up'));
    const err = await long.then(() => null, (e: unknown) => e);
    expect(engine.stats.tokensSampled).toBe(sampledAtAbort); // rejected before any further decode step
    expect(err).toBeInstanceOf(GenerationAbortedError);
    const aborted = err as GenerationAbortedError;
    expect(aborted.name).toBe('AbortError');
    expect(aborted.message).toMatch(/aborted/);
    expect((aborted.cause as Error).message).toBe('caller gave up');
    const n = aborted.partial.ids.length;
    expect(n * 3).toBe(sampledAtAbort); // three rows sampled in lockstep until the abort
    expect(aborted.partial.logprobs).toHaveLength(n);
    expect(aborted.partial.versions).toEqual(new Array(n).fill(0));
    expect(engine.load().active).toBe(2);
    expect(removeSpy).toHaveBeenCalledWith('abort', expect.any(Function));

    const outs = await Promise.all(pending);
    for (const o of outs) {
      expect(o.ids).toHaveLength(30);
      expect(o.finishReason).toBe('length');
    }
    // Only the others sampled after the abort: the long request never got another token.
    expect(engine.stats.tokensSampled).toBe(aborted.partial.ids.length + 60);
    expect(contractGap(others, outs)).toBeLessThanOrEqual(1e-4);
    for (let i = 0; i < 5; i++) await tick();
    expect(engine.stats.tokensSampled).toBe(aborted.partial.ids.length + 60);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
  });

  it('aborting a queued request removes it from the queue; an already aborted signal rejects at once', async () => {
    const engine = newEngine(1);
    const ctl = new AbortController();
    const first = engine.generate([1, 2], { maxTokens: 20 });
    const queued = engine.generate([3], { maxTokens: 20, signal: ctl.signal });
    await until(() => engine.stats.tokensSampled >= 3);
    expect(engine.load()).toEqual({ active: 1, queued: 1 });
    ctl.abort();
    await expect(queued).rejects.toMatchObject({ name: 'AbortError', partial: { ids: [], logprobs: [], versions: [] } });
    expect(engine.load()).toEqual({ active: 1, queued: 0 });
    expect((await first).ids).toHaveLength(20);
    expect(engine.stats.tokensSampled).toBe(20);

    await expect(engine.generate([1], { maxTokens: 5, signal: AbortSignal.abort() })).rejects.toBeInstanceOf(GenerationAbortedError);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    expect(engine.stats.tokensSampled).toBe(20);
  });

  it('a request that finishes removes its abort listener, and a later abort changes nothing', async () => {
    const engine = newEngine();
    const ctl = new AbortController();
    const add = vi.spyOn(ctl.signal, 'addEventListener');
    const remove = vi.spyOn(ctl.signal, 'removeEventListener');
    const out = await engine.generate([1, 2], { maxTokens: 4, signal: ctl.signal });
    expect(out.ids).toHaveLength(4);
    expect(add).toHaveBeenCalledTimes(1);
    expect(remove).toHaveBeenCalledWith('abort', add.mock.calls[0]![1]);
    ctl.abort();
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    expect((await engine.generate([1, 2], { maxTokens: 3 })).ids).toHaveLength(3);
  });

  it('a constraint that aborts its own request mid-iteration leaves the batch consistent', async () => {
    const engine = newEngine();
    const ctl = new AbortController();
    const self = engine.generate([1, 2, 3], {
      maxTokens: 50, signal: ctl.signal,
      constraint: (gen) => { if (gen.length === 4) ctl.abort(); return null; },
    });
    const others = [[4, 5], [6]];
    const pending = others.map((p) => engine.generate(p, { maxTokens: 12 }));
    await expect(self).rejects.toMatchObject({ name: 'AbortError' });
    const outs = await Promise.all(pending);
    expect(contractGap(others, outs)).toBeLessThanOrEqual(1e-4);
  });
});

/**
 * The built-in engine's boundary (issue 16, item 10 and "Also"): a tokenizer that does not cover the
 * model's vocabulary is refused at construction, and `generate` with random parameters — maxTokens,
 * temperature, topK, topP, seed, stop strings and ids, prompts, constraints, in concurrent batches —
 * resolves with a well-formed completion or rejects that request alone with an Error naming the
 * problem; never a TypeError/RangeError, never a hang (each call is bounded by a timeout).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import type { SampledCompletion, SamplingParams } from '../src/engine/types.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';
import { fastBackend } from './helpers/backends.ts';

const V = 13;
const CFG: ModelConfigInput = { vocabSize: V, contextLength: 16, nLayer: 1, nHead: 2, nEmbd: 8, initStd: 0.5 };

describe('BuiltinEngine: the tokenizer must cover exactly the model vocabulary', () => {
  // The engine samples ids over the model's whole vocabulary; an id ≥ tokenizer.vocabSize cannot be
  // decoded (and masks built from the tokenizer have the wrong length), so the sizes must be equal.
  it('a tokenizer smaller than the model vocabulary is refused at construction, naming both sizes', () => {
    const words = WordTokenizer.fromVocabulary(['a', 'b', 'c']);
    const big = words.vocabSize + 7;
    const model = new Transformer({ ...CFG, vocabSize: big }, fastBackend(), 1);
    expect(() => new BuiltinEngine(model, words)).toThrow(new RegExp(`BuiltinEngine: the tokenizer has ${words.vocabSize} tokens but the model's vocabSize is ${big}`));
    expect(() => new BuiltinEngine(model, idTokenizer(big - 1))).toThrow(new RegExp(`tokenizer has ${big - 1} tokens but the model's vocabSize is ${big}.*cannot be decoded`));
    // Before: construction passed, and the first constrained generate failed with "the token
    // constraint returned a mask of length …; expected … vocabSize" (masks are built from the tokenizer).
  });

  it('a larger tokenizer is refused too; equal sizes construct', () => {
    const model = new Transformer(CFG, fastBackend(), 1);
    expect(() => new BuiltinEngine(model, idTokenizer(V + 1))).toThrow(/tokenizer has 14 tokens but the model's vocabSize is 13/);
    expect(() => new BuiltinEngine(model, idTokenizer(V))).not.toThrow();
  });
});

/** Numbers a caller might pass: ordinary, boundary, fractional, negative, huge and non-finite. */
const anyNumber = fc.oneof(
  fc.integer({ min: -5, max: 40 }),
  fc.double({ noDefaultInfinity: false, noNaN: false }),
  fc.constantFrom(0, -0, 1, 0.5, 1e-300, 1e300, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53 + 2, NaN, Infinity, -Infinity, 2.5),
);

const params = fc.record(
  {
    maxTokens: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 20 }) }, { weight: 1, arbitrary: anyNumber }),
    temperature: fc.oneof({ weight: 5, arbitrary: fc.double({ min: 1e-3, max: 5, noNaN: true }) }, { weight: 1, arbitrary: anyNumber }),
    topK: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: V + 3 }) }, { weight: 1, arbitrary: anyNumber }),
    topP: fc.oneof({ weight: 5, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }, { weight: 1, arbitrary: anyNumber }),
    seed: fc.oneof({ weight: 5, arbitrary: fc.integer() }, { weight: 1, arbitrary: anyNumber }),
    stop: fc.array(fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom('', ' ', '3', '1 2', '\u0000', '😀')), { maxLength: 3 }),
    stopIds: fc.array(fc.oneof(fc.integer({ min: -2, max: V + 2 }), anyNumber), { maxLength: 3 }),
    constraint: fc.constantFrom('none', 'allow-some', 'all-zero', 'short', 'throws', 'returns-array'),
  },
  { requiredKeys: ['maxTokens'] },
);

const prompt = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.array(fc.oneof(fc.integer({ min: -3, max: V + 3 }), anyNumber), { maxLength: 20 }) },
);

function constraintOf(kind: string): SamplingParams['constraint'] {
  switch (kind) {
    case 'allow-some': return () => Uint8Array.from({ length: V }, (_, i) => (i % 3 === 0 ? 1 : 0));
    case 'all-zero': return () => new Uint8Array(V);
    case 'short': return () => new Uint8Array(V - 1).fill(1);
    case 'throws': return () => { throw new Error('boom'); };
    case 'returns-array': return () => Array(V).fill(1) as unknown as Uint8Array;
    default: return undefined;
  }
}

const HANG_MS = 10_000;

/** generate, bounded: 'hang' when it neither resolves nor rejects within HANG_MS. */
async function bounded(p: Promise<SampledCompletion>): Promise<{ ok: SampledCompletion } | { err: unknown } | 'hang'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), HANG_MS)));
  try {
    return await Promise.race([p.then((ok) => ({ ok }), (err: unknown) => ({ err })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('fuzz: BuiltinEngine.generate parameters', () => {
  const engine = new BuiltinEngine(new Transformer(CFG, fastBackend(), 3), idTokenizer(V, 0), { maxBatch: 3, seed: 5 });

  it('every request resolves with a well-formed completion or rejects alone with a clear Error', async () => {
    let resolved = 0, rejected = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(prompt, params), { minLength: 1, maxLength: 5 }), async (batch) => {
        const requests = batch.map(([ids, p]) => {
          const { constraint, ...rest } = p;
          const sp: SamplingParams = { ...rest, constraint: constraintOf(constraint ?? 'none') };
          return { ids, sp, result: bounded(engine.generate(ids, sp)) };
        });
        for (const { ids, sp, result } of requests) {
          const r = await result;
          const what = `constraint ${batch[requests.findIndex((q) => q.sp === sp)]![1].constraint ?? 'none'} prompt ${JSON.stringify(ids)} params ${JSON.stringify(sp, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}`;
          expect(r, `hang: ${what}`).not.toBe('hang');
          if (r === 'hang') return;
          if ('ok' in r) {
            resolved++;
            const c = r.ok;
            expect(c.ids.length, what).toBeGreaterThanOrEqual(1);
            expect(c.ids.length, what).toBeLessThanOrEqual(sp.maxTokens);
            expect(ids.length + c.ids.length, what).toBeLessThanOrEqual(CFG.contextLength);
            expect(c.ids.every((id) => Number.isInteger(id) && id >= 0 && id < V), what).toBe(true);
            expect(c.logprobs).toHaveLength(c.ids.length);
            expect(c.logprobs.every((lp) => Number.isFinite(lp) && lp <= 0), what).toBe(true);
            expect(['stop', 'length', 'eos']).toContain(c.finishReason);
            expect(c.text).toBe(c.ids.join(' '));
          } else {
            rejected++;
            const e = r.err;
            expect(e, what).toBeInstanceOf(Error);
            expect((e as Error).constructor, `${what}: ${(e as Error).stack}`).toBe(Error);
            expect((e as Error).message, what).toMatch(/^(generate|sampleToken): \S/);
          }
        }
        expect(engine.load(), 'no row left behind').toEqual({ active: 0, queued: 0 });
      }),
      { numRuns: 400 },
    );
    expect(resolved).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
  }, 60_000);
});

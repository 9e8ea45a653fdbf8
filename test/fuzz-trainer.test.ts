/**
 * Fuzz of the trainer's input boundary (issue 16, "Also"): BuiltinTrainer.trainStep with random
 * samples — token ids (negative, fractional, NaN, out of the vocabulary), lengths (empty, one token,
 * longer than the context), loss masks, behaviour logprobs, versions, advantages (per sample or per
 * token, NaN, ±Infinity, wrong length), temperatures and constraint masks — under every loss. Each
 * step either trains (finite loss, finite weights) or throws a plain Error and leaves the weights
 * exactly as they were.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer, sftLoss, type LossFn } from '../src/train/builtin-trainer.ts';
import { rlLoss } from '../src/train/rl-loss.ts';
import type { Sample } from '../src/core/types.ts';
import { fastBackend } from './helpers/backends.ts';

const V = 12;
const CTX = 10;
const TINY: ModelConfigInput = { vocabSize: V, contextLength: CTX, nLayer: 1, nHead: 2, nEmbd: 8, initStd: 0.3 };

const special = fc.constantFrom(NaN, Infinity, -Infinity, -0, 1e30, -1e30, 1e-40);
const goodId = fc.integer({ min: 0, max: V - 1 });
const badId = fc.oneof(fc.constantFrom(-1, V, V + 5, 3.7, NaN, Infinity, -Infinity, 2 ** 31), fc.double());
/** Mostly `good`; `bad` one time in 13 when the batch is a dirty one. */
function sampleArb(dirty: boolean): fc.Arbitrary<Sample> {
  const maybe = <T, U>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<U>): fc.Arbitrary<T | U> => (dirty ? fc.oneof({ weight: 12, arbitrary: good }, { weight: 1, arbitrary: bad }) : good);
  const rare = <T, U>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<U>, w: number): fc.Arbitrary<T | U> => (dirty ? fc.oneof({ weight: w, arbitrary: good }, { weight: 1, arbitrary: bad }) : good);
  return fc
  .record({
    ids: rare(fc.array(maybe(goodId, badId), { minLength: 2, maxLength: CTX + 1 }), fc.array(goodId, { maxLength: CTX + 4 }), 10),
    maskBits: fc.array(maybe(fc.constantFrom(0, 1, 1), fc.constantFrom(2, -1, NaN, 0.5)), { minLength: CTX + 4, maxLength: CTX + 4 }),
    logprobs: fc.array(maybe(fc.double({ min: -8, max: 0, noNaN: true }), fc.oneof(special, fc.double({ min: 0, max: 5, noNaN: true }))), { minLength: CTX + 4, maxLength: CTX + 4 }),
    versions: fc.array(maybe(fc.integer({ min: -1, max: 3 }), fc.constantFrom(NaN, 1.5, 1e12)), { minLength: CTX + 4, maxLength: CTX + 4 }),
    advantage: fc.oneof(
      { weight: 8, arbitrary: fc.double({ min: -3, max: 3, noNaN: true }) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 2, arbitrary: fc.array(maybe(fc.double({ min: -3, max: 3, noNaN: true }), special), { minLength: CTX + 4, maxLength: CTX + 4 }) },
      ...(dirty ? [{ weight: 1, arbitrary: special }, { weight: 1, arbitrary: fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { maxLength: 3 }) }] : []),
    ),
    temperature: fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 4, arbitrary: fc.constantFrom(1, 0.7, 1.3) }, ...(dirty ? [{ weight: 1, arbitrary: fc.constantFrom(0, -1, NaN, Infinity, 1e-30) }] : [])),
    lengthMismatch: rare(fc.constant('none'), fc.constantFrom('logprobs', 'versions', 'mask'), 15),
    constraint: fc.oneof({ weight: 8, arbitrary: fc.constant('none') }, { weight: 1, arbitrary: fc.constant('allow-target') }, ...(dirty ? [{ weight: 1, arbitrary: fc.constantFrom('forbid-target', 'short', 'all-zero') }] : [])),
  })
  .map((r): Sample => {
    const L = r.ids.length;
    const mask = r.maskBits.slice(0, L).map((m, i) => (i === 0 ? 0 : m));
    const logprobs = r.logprobs.slice(0, L);
    const versions = r.versions.slice(0, L);
    if (r.lengthMismatch === 'logprobs') logprobs.pop();
    if (r.lengthMismatch === 'versions') versions.push(0);
    if (r.lengthMismatch === 'mask') mask.pop();
    const constraintMasks = r.constraint === 'none' ? undefined : r.ids.map((id, t) => {
      if (t === 0) return null;
      if (r.constraint === 'short') return new Uint8Array(V - 1).fill(1);
      if (r.constraint === 'all-zero') return new Uint8Array(V);
      const m = new Uint8Array(V).fill(1);
      if (r.constraint === 'forbid-target' && Number.isInteger(id) && id >= 0 && id < V) m[id] = 0;
      return m;
    });
    return {
      seq: { ids: r.ids, logprobs, versions, mask, source: r.ids.map(() => 1 as const), ...(constraintMasks ? { constraintMasks } : {}) },
      reward: 0, advantage: r.advantage, keys: {}, ...(r.temperature !== undefined ? { temperature: r.temperature } : {}),
    };
  });
}
const batchArb = fc.boolean().chain((dirty) => fc.array(sampleArb(dirty), { minLength: dirty ? 0 : 1, maxLength: 5 }));

const LOSSES: [string, LossFn][] = [
  ['sft', sftLoss],
  ['ppo', rlLoss({ kind: 'ppo' })],
  ['reinforce', rlLoss({ kind: 'reinforce', entropyCoef: 0.01 })],
  ['decoupled_ppo', rlLoss({ kind: 'decoupled_ppo', entropyCoef: 0.01 })],
  // The trainer passes no reference logprobs, so a KL term is refused at the step (named), never NaN.
  ['decoupled_ppo+kl', rlLoss({ kind: 'decoupled_ppo', klCoef: 0.1 })],
  ['seq-mean-token-sum-norm', rlLoss({ kind: 'ppo', aggregation: 'seq-mean-token-sum-norm', normConstant: 8 })],
];

function showSamples(samples: Sample[]): string {
  return JSON.stringify(samples.map((s) => ({ ...s, seq: { ...s.seq, constraintMasks: s.seq.constraintMasks?.map((m) => (m ? Array.from(m).join('') : null)) } })), (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)).slice(0, 3000);
}

describe('fuzz: BuiltinTrainer.trainStep samples', () => {
  it('trains (finite loss and weights) or throws a plain Error with the weights unchanged', () => {
    const trainer = new BuiltinTrainer(new Transformer(TINY, fastBackend(), 1), { lr: 1e-2, microBatchTokens: 24 });
    let trained = 0, refused = 0;
    const messages = new Set<string>();
    fc.assert(
      fc.property(batchArb, fc.nat({ max: LOSSES.length - 1 }), fc.boolean(), (samples, li, withProx) => {
        const [lossName, loss] = LOSSES[li]!;
        const what = () => `loss ${lossName}, prox ${withProx}: ${showSamples(samples)}`;
        const before = trainer.model.params.slice();
        const t0 = performance.now();
        try {
          const proxLogprobs = withProx ? trainer.computeLogprobs(samples) : undefined;
          const m = trainer.trainStep(samples, loss, { proxLogprobs });
          trained++;
          expect(Number.isFinite(m.loss), what()).toBe(true);
          expect(m.tokens, what()).toBeGreaterThan(0);
          expect(trainer.model.params.every(Number.isFinite), what()).toBe(true);
        } catch (e) {
          refused++;
          messages.add((e as Error).message.replace(/-?\d+(\.\d+)?(e[-+]?\d+)?/g, 'N').slice(0, 110));
          expect(e, what()).toBeInstanceOf(Error);
          expect((e as Error).constructor, `${what()}\n${(e as Error).stack}`).toBe(Error);
          expect((e as Error).message.length, what()).toBeGreaterThan(10);
          expect(trainer.model.params.every((x, i) => Object.is(x, before[i])), `weights changed: ${(e as Error).message}\n${what()}`).toBe(true);
        }
        expect(performance.now() - t0, `slow: ${what()}`).toBeLessThan(5000);
      }),
      { numRuns: 400 },
    );
    if (process.env.FUZZ_VERBOSE) console.log([...messages].sort().join('\n'));
    expect(trained).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
  }, 60_000);
});

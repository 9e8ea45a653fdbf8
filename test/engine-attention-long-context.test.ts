/**
 * The built-in model at a 4,096-token context: training memory is linear in the sequence length
 * (attention keeps one log-sum-exp per row and head, no T×T matrix), a training step at T = 4,096
 * runs and gives the same gradients on every backend, and sampling after a 4,000-token prompt
 * reports logprobs that the trainer recomputes exactly (the token-in-token-out contract of
 * test/logprob-contract.test.ts, at length).
 */
import { describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { Rng } from '../src/core/rng.ts';
import { allBackends } from './helpers/backends.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';
import { maxScaledDiff } from './helpers/gradcheck.ts';

const CTX = 4096;
const TINY: ModelConfigInput = { vocabSize: 37, contextLength: CTX, nLayer: 2, nHead: 2, nEmbd: 16, initStd: 0.2 };

describe('training memory is linear in the sequence length', () => {
  it('activation + workspace bytes: exactly affine in T, bytes(4096)/bytes(2048) ≤ 2.1, below one T×T matrix', () => {
    const m = new Transformer(TINY, new JsBackend(), 1);
    const [b1, b2, b4] = [1024, 2048, 4096].map((T) => m.activationBytes(1, T));
    expect(b4! / b2!).toBeLessThanOrEqual(2.1);
    // bytes = a·T + c (c: per-row buffers): equal steps for equal increments of T.
    expect(b4! - b2!).toBe(2 * (b2! - b1!));
    // One float32 T×T matrix for one head would be 64 MiB; the whole model needs less than that.
    expect(b4!).toBeLessThan(CTX * CTX * 4);
    // Twice the rows, twice the bytes.
    expect(m.activationBytes(2, 4096) - 4 * 2).toBe(2 * (b4! - 4));
  });
});

describe('a training step at T = 4,096', () => {
  it('runs on every backend, with finite, nonzero gradients that agree across backends', () => {
    const rng = new Rng(3);
    const T = CTX, cfg = { ...TINY, nLayer: 1 };
    const tokens = Int32Array.from({ length: T }, () => rng.int(cfg.vocabSize));
    const targets = Int32Array.from({ length: T }, (_, t) => (t + 1 < T ? tokens[t + 1]! : -1));
    const dLogp = new Float32Array(T).fill(-1 / T), dEnt = new Float32Array(T).fill(0.01 / T);
    let reference: Float32Array | null = null;
    for (const be of allBackends()) {
      const m = new Transformer(cfg, be, 5);
      m.zeroGrad();
      const { logprobs } = m.forward({ B: 1, T, tokens, targets });
      for (let t = 0; t < T - 1; t++) expect(Number.isFinite(logprobs[t]!) && logprobs[t]! < 0, `${be.name} logprob[${t}]`).toBe(true);
      m.backward(dLogp, dEnt);
      expect(m.grads.every((g) => Number.isFinite(g)), `${be.name}: finite gradients`).toBe(true);
      // Every attention weight gets gradient (a broken attention backward leaves the q/k rows at 0).
      const qkvGrad = m.view(m.grads, 'h0.attn.qkv.w');
      const qRows = qkvGrad.subarray(0, 16 * 16), kRows = qkvGrad.subarray(16 * 16, 32 * 16);
      expect(qRows.some((g) => g !== 0) && kRows.some((g) => g !== 0), `${be.name}: q and k weights get gradient`).toBe(true);
      if (!reference) reference = m.grads.slice(); // the JS backend: first in allBackends()
      else {
        const r = maxScaledDiff(m.grads, reference);
        expect(r.error, `${be.name} vs js: worst gradient at [${r.index}] ${r.got} vs ${r.want}`).toBeLessThan(1e-3);
      }
    }
  }, 120_000);
});

function toSample(prompt: number[], ids: number[], logprobs: number[]): Sample {
  const seq = emptySeq();
  appendContext(seq, prompt);
  appendCompletion(seq, { ids, logprobs, versions: ids.map(() => 0) });
  return { seq, reward: 0, keys: {}, temperature: 1 };
}

describe.each(allBackends().map((b) => [b.name, b] as const))('sampling after a 4,000-token prompt on %s', (_n, backend) => {
  it('returns tokens with finite logprobs that the trainer recomputes (≤ 1e-4), two rows batched', async () => {
    const cfg: ModelConfigInput = { ...TINY, positions: 'rope' };
    const engine = new BuiltinEngine(new Transformer(cfg, backend, 3), idTokenizer(TINY.vocabSize), { maxBatch: 2, seed: 9 });
    const rng = new Rng(5);
    const prompts = [4000, 3990].map((n) => Array.from({ length: n }, () => rng.int(TINY.vocabSize)));
    const outs = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 6 })));
    for (const o of outs) {
      expect(o.ids).toHaveLength(6);
      expect(o.logprobs.every((lp) => Number.isFinite(lp) && lp <= 0)).toBe(true);
    }
    expect(engine.stats.rowsDecoded).toBeGreaterThan(engine.stats.decodeSteps); // decoded together
    const samples = prompts.map((p, i) => toSample(p, outs[i]!.ids, outs[i]!.logprobs));
    const recomputed = new BuiltinTrainer(new Transformer(cfg, backend, 3)).computeLogprobs(samples);
    let worst = 0;
    samples.forEach((s, i) => {
      for (let t = 0; t < s.seq.ids.length; t++) {
        if (s.seq.mask[t]) worst = Math.max(worst, Math.abs(s.seq.logprobs[t]! - recomputed[i]![t]!));
      }
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
  }, 120_000);
});

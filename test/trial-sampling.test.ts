/**
 * Trial sampling options top-p / top-k (MAGE validates at temperature 0.7, top_p 0.8, top_k 20): they
 * reach the engine, the behaviour logprob is the truncated distribution's (so a trainer recomputes the
 * same number from the stored kept set), and bad values are refused naming the field.
 */
import { describe, expect, it } from 'vitest';
import { runTrial, TrialConfigSchema, TRIAL_WORDS } from '../src/agents/trial.ts';
import { TokenSource, type Sample } from '../src/core/types.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { Transformer } from '../src/engine/model.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';

const backend = new JsBackend();

async function play(over: Record<string, unknown>, seed: number): Promise<{ samples: Sample[]; model: Transformer }> {
  const env = new KuhnEnv({ opponent: 'random', observation: 'token' });
  const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS]);
  const model = new Transformer({ vocabSize: tok.vocabSize, contextLength: 96, nLayer: 1, nHead: 2, nEmbd: 16, initStd: 0.5 }, backend, 5);
  const engine = new BuiltinEngine(model, tok, { maxBatch: 4, seed: 3 });
  const samples: Sample[] = [];
  for (let i = 0; i < 6; i++) {
    const t = await runTrial(env, engine, { episodes: 2, reflect: false, contextMode: 'history_only', rules: 'none', constrained: false, ...over }, { seed: seed + i, groupId: 'g', opponent: 'random' });
    samples.push(...t.samples);
  }
  return { samples, model };
}

const modelLogprobs = (samples: Sample[]) => samples.flatMap((s) => s.seq.logprobs.filter((_, i) => s.seq.mask[i] && s.seq.source[i] === TokenSource.model));

describe('trial sampling: top-p and top-k', () => {
  it('topK 1 samples the most likely token: every behaviour logprob is exactly 0; without it they are not', async () => {
    const greedy = modelLogprobs((await play({ topK: 1 }, 10)).samples);
    expect(greedy.length).toBeGreaterThan(20);
    for (const lp of greedy) expect(Math.abs(lp)).toBeLessThan(1e-9);
    const full = modelLogprobs((await play({}, 10)).samples);
    expect(full.some((lp) => lp < -0.01)).toBe(true);
  });

  it('under top-p the trainer recomputes the behaviour logprobs from the stored kept sets', async () => {
    const { samples, model } = await play({ topP: 0.6, temperature: 0.7 }, 20);
    const behaviour = modelLogprobs(samples);
    // Truncation shows: some token kept alone (logprob 0) and none below the full distribution's mass cut.
    expect(behaviour.some((lp) => Math.abs(lp) < 1e-9)).toBe(true);
    const recomputed = new BuiltinTrainer(model).computeLogprobs(samples);
    const trainer = samples.flatMap((s, j) => Array.from(recomputed[j]!).filter((_, i) => s.seq.mask[i] && s.seq.source[i] === TokenSource.model));
    expect(trainer).toHaveLength(behaviour.length);
    trainer.forEach((lp, i) => expect(lp).toBeCloseTo(behaviour[i]!, 4));
  });

  it('bad values are refused naming the field', () => {
    for (const [field, value] of [['topP', 0], ['topP', 1.5], ['topK', -1], ['topK', 1.5]] as const) {
      const r = TrialConfigSchema.safeParse({ [field]: value });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.path).toEqual([field]);
    }
    expect(TrialConfigSchema.parse({}).topP).toBeUndefined();
  });
});

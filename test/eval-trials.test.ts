import { describe, expect, it } from 'vitest';
import { evaluatePolicy, evaluateRandom } from '../src/eval/trials.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { TRIAL_WORDS } from '../src/agents/trial.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import type { InferenceEngine, SampledCompletion } from '../src/engine/types.ts';

/** An engine that always answers `text`. */
function always(tok: WordTokenizer, text: string): InferenceEngine {
  return {
    tokenizer: tok,
    version: () => 0,
    async generate(): Promise<SampledCompletion> {
      const ids = tok.encode(text);
      return { ids, logprobs: ids.map(() => 0), versions: ids.map(() => 0), text, finishReason: 'stop', temperature: 1 };
    },
  };
}

const trial = { episodes: 3, reflect: false, stateMode: 'new_state', rules: 'none', maxTurns: 2 } as const;

describe('trial evaluation', () => {
  it('splits every episode by the seat it was played from; the split adds up to the whole', () => {
    const rep = evaluateRandom({ opponents: ['random', 'aggressive'], trials: 200, seed: 3, makeEnv: envFactory('kuhn', { seat: 'random' }), trial });
    for (const o of rep.opponents) {
      expect(Object.keys(o.bySeat!)).toEqual(['0', '1']);
      for (let k = 0; k < 3; k++) {
        const a = o.bySeat!['0']![k]!, b = o.bySeat!['1']![k]!, all = o.episodes[k]!;
        expect(a.n + b.n).toBe(all.n);
        expect(a.n).toBeGreaterThan(50); // both seats occur (fresh seat every episode)
        expect((a.n * a.meanReturn + b.n * b.meanReturn) / all.n).toBeCloseTo(all.meanReturn, 9);
      }
    }
  });

  it('every policy is evaluated on the same seats and deals; envs without seats have no split', async () => {
    const env = new KuhnEnv();
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS]);
    const opts = { opponents: ['conservative'], trials: 60, seed: 9, makeEnv: envFactory('kuhn', { seat: 'random' }), trial };
    const policy = await evaluatePolicy('always-bet', always(tok, '<action> BET </action>'), opts);
    const random = evaluateRandom(opts);
    for (let k = 0; k < 3; k++) {
      expect(policy.opponents[0]!.bySeat!['0']![k]!.n).toBe(random.opponents[0]!.bySeat!['0']![k]!.n);
    }
    const bandit = evaluateRandom({ opponents: ['none'], trials: 10, seed: 1, makeEnv: envFactory('bandit'), trial: { episodes: 2, reflect: false, maxTurns: 1 } });
    expect(bandit.opponents[0]!.bySeat).toBeUndefined();
  });
});

/**
 * An engine for trial tests that answers with scripted texts (in order) and records the prompts and
 * sampling params it saw. Tokens get version 3 and logprobs −0.5, −1.5, … so tests can tell them apart.
 */
import type { WordTokenizer } from '../../src/engine/tokenizer.ts';
import type { InferenceEngine, SampledCompletion, SamplingParams } from '../../src/engine/types.ts';

export function scriptedTrialEngine(tok: WordTokenizer, answers: string[]): InferenceEngine & { prompts: string[]; params: SamplingParams[] } {
  const prompts: string[] = [];
  const params: SamplingParams[] = [];
  return {
    tokenizer: tok,
    prompts,
    params,
    version: () => 3,
    async generate(prompt, p): Promise<SampledCompletion> {
      prompts.push(tok.decode(prompt));
      params.push(p);
      const ids = tok.encode(answers.shift() ?? '');
      return { ids, logprobs: ids.map((_, i) => -0.5 - i), versions: ids.map(() => 3), text: tok.decode(ids), finishReason: 'stop', temperature: 1 };
    },
  };
}

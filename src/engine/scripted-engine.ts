/**
 * An InferenceEngine whose "model" is a function of the context text: scripted demonstrations (SFT
 * warm-starts), stub policies for benchmarks of agent loops, and tests. Its tokens are the policy's
 * text encoded once by the tokenizer (that *is* the sampler here); logprobs are 0 (a deterministic
 * policy) and versions the engine's version.
 */
import type { InferenceEngine, SampledCompletion, SamplingParams, Tokenizer } from './types.ts';

/** The policy: next completion text from the context so far (decoded) and the request's seed. */
export type ScriptedPolicy = (context: string, seed: number) => string;

export class ScriptedEngine implements InferenceEngine {
  private v = 0;
  constructor(
    readonly tokenizer: Tokenizer,
    private readonly policy: ScriptedPolicy,
    readonly contextLength?: number,
  ) {}

  version(): number {
    return this.v;
  }

  setVersion(v: number): void {
    this.v = v;
  }

  async generate(prompt: readonly number[], params: SamplingParams): Promise<SampledCompletion> {
    if (params.signal?.aborted) throw params.signal.reason ?? new Error('aborted');
    const text = this.policy(this.tokenizer.decode(prompt), params.seed ?? 0);
    let ids = this.tokenizer.encode(text);
    const cut = ids.length > params.maxTokens;
    if (cut) ids = ids.slice(0, params.maxTokens);
    // The whole text is known at once: the hook sees every token now, in order.
    ids.forEach((id, index) => {
      try {
        params.onToken?.({ id, logprob: 0, version: this.v, index });
      } catch (e) {
        throw new Error(`generate: the onToken hook threw at generated token ${index}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    });
    return {
      ids, logprobs: ids.map(() => 0), versions: ids.map(() => this.v), text: this.tokenizer.decode(ids),
      finishReason: cut ? 'length' : 'stop', temperature: params.temperature ?? 1,
    };
  }
}

/**
 * Engine-facing interfaces shared by the built-in engine and remote engines (vLLM/SGLang, GPU
 * training services). Workflows and trainers depend only on these.
 */
import type { Completion, Sample } from '../core/types.ts';

/** Text ↔ token ids. The built-in model uses a word-level tokenizer; remote models load tokenizer.json. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  /** Encode text to ids. Never throws on unknown text: unknown words map to an <unk> id. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** The string form of one token (for stop-sequence checks and debugging). */
  tokenString(id: number): string;
  /** id of an exact token string, or undefined. */
  tokenId(token: string): number | undefined;
}

/**
 * Constrained decoding: given the tokens generated so far in this completion, return the set of
 * allowed next tokens as a 0/1 mask of length vocabSize, or null for "anything". The behaviour
 * logprob reported for each sampled token is computed under this mask (and the temperature), and the
 * trainer recomputes it the same way from the mask stored with the sample.
 */
export type TokenConstraint = (generated: readonly number[]) => Uint8Array | null;

export interface SamplingParams {
  /** Integer ≥ 1. */
  maxTokens: number;
  /** Finite, > 0; default 1. */
  temperature?: number;
  /**
   * Nucleus sampling, in (0, 1]; default 1 (off). With top-k / top-p the behaviour logprob is that of
   * the truncated, renormalised distribution actually sampled from, and the kept set is returned as
   * the token's mask in `SampledCompletion.masks`.
   */
  topP?: number;
  /** Keep the k most likely tokens, integer ≥ 0; default 0 (off). */
  topK?: number;
  /** Stop when the decoded completion ends with one of these strings (the stop text is kept). */
  stop?: string[];
  /** Stop after sampling one of these ids (kept in the completion). EOS always stops. */
  stopIds?: number[];
  /** Seed for this request's sampling stream (deterministic given weights and batch composition). */
  seed?: number;
  constraint?: TokenConstraint;
  /**
   * Abort the request: it leaves the queue or the running batch at once and `generate` rejects with
   * an error named 'AbortError' carrying the tokens sampled so far.
   */
  signal?: AbortSignal;
  /**
   * Routing hint for remote engines: requests with the same affinity (e.g. one trajectory's calls)
   * go to the same server, to reuse its prefix cache. The built-in engine ignores it.
   */
  affinity?: string;
  /**
   * Per-token hook, for streaming: called synchronously, in sampling order, once for every sampled
   * token of this request (`index` counts from 0 within this `generate` call), before the returned
   * promise resolves; the token is also in the completion, with the same id, logprob and version.
   * A hook that throws fails this request alone (`generate` rejects with its error as the cause).
   * Engines that cannot stream (remote servers answer whole) call it for each token when the tokens
   * arrive, possibly all at the end.
   */
  onToken?: (t: SampledToken) => void;
}

/** One sampled token as `SamplingParams.onToken` receives it. */
export interface SampledToken {
  id: number;
  /** Behaviour logprob (as in `Completion.logprobs`). */
  logprob: number;
  /** Weight version that sampled it. */
  version: number;
  /** Position within this `generate` call's completion, from 0. */
  index: number;
}

/** A completion plus the masks it was sampled under (needed to recompute its logprobs exactly). */
export interface SampledCompletion extends Completion {
  /**
   * Per generated token: the tokens its logprob is normalised over — the constraint mask intersected
   * with the top-k / top-p kept set — or null when neither restricted it.
   */
  masks?: (Uint8Array | null)[];
  temperature: number;
}

/** Inference side: generates completions with exact token logprobs and weight versions. */
export interface InferenceEngine {
  readonly tokenizer: Tokenizer;
  /** Max tokens (prompt + completion) one sequence may hold, if the engine has such a limit. */
  readonly contextLength?: number;
  /** Version of the weights new tokens are sampled with. */
  version(): number;
  /** Concurrent calls are batched by the engine (continuous batching over a KV cache). */
  generate(prompt: readonly number[], params: SamplingParams): Promise<SampledCompletion>;
}

export interface TrainStepMetrics {
  loss: number;
  gradNorm: number;
  tokens: number;
  version: number;
  [key: string]: number;
}

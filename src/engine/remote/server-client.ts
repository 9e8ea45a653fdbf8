/**
 * What the remote engine needs from one inference server, whatever its API: token-in/token-out
 * generation with the sampled tokens' logprobs, and the RL control calls (pause with abort,
 * resume, abort requests, load weights from disk, sleep/wake). `vllm-client.ts` and
 * `sglang-client.ts` speak the two servers' documented shapes behind this interface.
 */
import type { RequestOptions } from './http.ts';

export interface ServerGenerateRequest {
  /** The server-side request id (vLLM `request_id`, SGLang `rid`): what abort calls name. */
  requestId: string;
  /** Token ids: the prompt, plus the tokens generated so far when a request is resumed. */
  prompt: readonly number[];
  maxTokens: number;
  temperature: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** Ids that end the completion (kept in it); the tokenizer's EOS is always among them. */
  stopIds: readonly number[];
  /** Strings that end the completion (kept in it). The engine checks them again on the decoded tokens. */
  stop: readonly string[];
  seed?: number;
}

export interface ServerGenerateResult {
  ids: number[];
  /** Behaviour logprob of each id. */
  logprobs: number[];
  /** Weight version of each id, when the server reports them per token. */
  versions: number[] | null;
  /** Weight version the server reported for the request (SGLang `meta_info.weight_version`), if numeric. */
  weightVersion: number | null;
  /** 'abort': the server stopped the request early (pause, abort call); `ids` holds what it had sampled. */
  finishReason: 'stop' | 'length' | 'abort';
}

export interface InferenceServerClient {
  readonly kind: 'vllm' | 'sglang';
  /** Base URL, without a trailing slash. */
  readonly url: string;
  generate(req: ServerGenerateRequest, opts: RequestOptions): Promise<ServerGenerateResult>;
  /** Stop serving: abort every in-flight request (each returns with finish reason 'abort'); new ones wait. */
  pause(opts: RequestOptions): Promise<void>;
  resume(opts: RequestOptions): Promise<void>;
  /** Abort these requests (they return what they had sampled), or every request when `ids` is 'all'. */
  abort(ids: readonly string[] | 'all', opts: RequestOptions): Promise<void>;
  /** Load the weights in `path` (a directory written by `writeWeightsDir`) and serve them as `version`. */
  loadWeights(path: string, version: number, opts: RequestOptions): Promise<void>;
  /** The weight version the server reports serving (vLLM `GET /weight_info`, SGLang `GET /get_weight_version`), or null when not numeric. */
  weightVersion(opts: RequestOptions): Promise<number | null>;
  /** Free GPU memory (weights at level 2 too); `wakeUp` restores it. */
  sleep(level: 1 | 2, opts: RequestOptions): Promise<void>;
  wakeUp(tags: readonly ('weights' | 'kv_cache')[] | undefined, opts: RequestOptions): Promise<void>;
}

/** Non-finite logprobs cannot travel in JSON: a sampled token's logprob must be a finite number. */
export function logprobOf(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

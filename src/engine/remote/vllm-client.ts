/**
 * One vLLM server, token-in/token-out. Two ways to generate:
 *
 *   api 'generate'    (default) POST /inference/v1/generate {request_id, token_ids, sampling_params}
 *                      → {choices: [{token_ids, logprobs: {content: [{logprob}]}, finish_reason}]}
 *   api 'completions' POST /v1/completions {prompt: [ids], return_token_ids: true, logprobs: 1, …}
 *                      → {choices: [{token_ids, logprobs: {token_logprobs}, finish_reason}]}
 *
 * Either way the prompt travels as ids and the answer comes back as ids: nothing is re-tokenized.
 * The RL control endpoints exist when vLLM runs with VLLM_SERVER_DEV_MODE=1: `POST /pause?mode=abort`
 * (in-flight requests return with finish_reason "abort" and their partial tokens), `POST /resume`,
 * `POST /abort_requests {request_ids?}`, `GET /weight_info`, `/sleep?level=`, `/wake_up?tags=`.
 *
 * Behaviour logprobs must be those of the distribution sampled from (after temperature, top-k,
 * top-p): start vLLM with `--logprobs-mode processed_logprobs`, else it reports raw-logit logprobs.
 *
 * Loading weights from disk is not a stock vLLM endpoint (stock vLLM pushes weights over NCCL with
 * /update_weights): the client posts `{model_path, weight_version}` to `loadWeightsPath` (default
 * `/update_weights_from_disk`, which `agentrl serve inference` exposes; AReaL's vLLM server names it
 * `/areal_update_weights`).
 */
import { intArrayOf, objectOf, RemoteProtocolError, requestJson, versionOf, type RequestOptions } from './http.ts';
import { logprobOf, type InferenceServerClient, type ServerGenerateRequest, type ServerGenerateResult } from './server-client.ts';

export interface VllmClientOptions {
  /** 'generate' = /inference/v1/generate (default); 'completions' = /v1/completions. */
  api?: 'generate' | 'completions';
  /** Served model name for /v1/completions (vLLM's default model when absent). */
  model?: string;
  /** Endpoint that loads weights from a directory (see the file comment). */
  loadWeightsPath?: string;
}

export class VllmClient implements InferenceServerClient {
  readonly kind = 'vllm' as const;
  readonly url: string;
  readonly api: 'generate' | 'completions';

  constructor(url: string, private readonly o: VllmClientOptions = {}) {
    this.url = url.replace(/\/+$/, '');
    this.api = o.api ?? 'generate';
  }

  async generate(req: ServerGenerateRequest, opts: RequestOptions): Promise<ServerGenerateResult> {
    const sampling = {
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      ...(req.topP < 1 ? { top_p: req.topP } : {}),
      ...(req.topK > 0 ? { top_k: req.topK } : {}),
      ...(req.seed !== undefined ? { seed: req.seed } : {}),
      stop_token_ids: [...req.stopIds],
      ...(req.stop.length > 0 ? { stop: [...req.stop], include_stop_str_in_output: true } : {}),
    };
    if (this.api === 'completions') {
      const url = `${this.url}/v1/completions`;
      const body = { ...(this.o.model ? { model: this.o.model } : {}), prompt: [...req.prompt], request_id: req.requestId, ...sampling, logprobs: 1, return_token_ids: true };
      return parseCompletions(url, await requestJson(url, { ...opts, body }));
    }
    const url = `${this.url}/inference/v1/generate`;
    const body = { request_id: req.requestId, token_ids: [...req.prompt], sampling_params: { ...sampling, logprobs: 0 } };
    return parseGenerate(url, await requestJson(url, { ...opts, body }));
  }

  async pause(opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/pause?mode=abort`, opts);
  }

  async resume(opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/resume`, opts);
  }

  async abort(ids: readonly string[] | 'all', opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/abort_requests`, { ...opts, body: ids === 'all' ? {} : { request_ids: [...ids] } });
  }

  async loadWeights(path: string, version: number, opts: RequestOptions): Promise<void> {
    const url = `${this.url}${this.o.loadWeightsPath ?? '/update_weights_from_disk'}`;
    const res = objectOf(url, await requestJson(url, { ...opts, body: { model_path: path, weight_version: String(version) } }), 'the answer');
    if (res.success === false) throw new RemoteProtocolError(url, `the server did not load ${path}: ${String(res.message ?? '(no message)')}`);
  }

  async weightVersion(opts: RequestOptions): Promise<number | null> {
    const url = `${this.url}/weight_info`;
    return versionOf(objectOf(url, await requestJson(url, { ...opts, method: 'GET' }), 'the answer').weight_version);
  }

  async sleep(level: 1 | 2, opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/sleep?level=${level}`, opts);
  }

  async wakeUp(tags: readonly ('weights' | 'kv_cache')[] | undefined, opts: RequestOptions): Promise<void> {
    const q = tags && tags.length > 0 ? '?' + tags.map((t) => `tags=${t}`).join('&') : '';
    await requestJson(`${this.url}/wake_up${q}`, opts);
  }
}

function finishOf(url: string, v: unknown): ServerGenerateResult['finishReason'] {
  if (v === 'stop' || v === 'length' || v === 'abort') return v;
  if (v === null || v === undefined) return 'stop'; // vLLM's default for a finished choice
  throw new RemoteProtocolError(url, `unknown finish_reason ${JSON.stringify(v)} (expected stop, length or abort)`);
}

function firstChoice(url: string, res: unknown): { top: Record<string, unknown>; choice: Record<string, unknown> } {
  const top = objectOf(url, res, 'the answer');
  if (!Array.isArray(top.choices) || top.choices.length === 0) throw new RemoteProtocolError(url, `expected choices[0] in the answer, got ${JSON.stringify(res).slice(0, 200)}`);
  return { top, choice: objectOf(url, top.choices[0], 'choices[0]') };
}

/**
 * Weight versions, when the server reports them (stock vLLM reports none): per token as
 * `choices[0].token_versions` (an `agentrl serve inference` extension: one request can span an
 * in-place weight update), else one `weight_version` for the whole request.
 */
function versionsOf(url: string, top: Record<string, unknown>, choice: Record<string, unknown>, n: number): { versions: number[] | null; weightVersion: number | null } {
  const per = choice.token_versions;
  let versions: number[] | null = null;
  if (per !== undefined && per !== null) {
    versions = intArrayOf(url, per, 'choices[0].token_versions');
    if (versions.length !== n) throw new RemoteProtocolError(url, `choices[0].token_versions has ${versions.length} entries for ${n} token ids`);
  }
  return { versions, weightVersion: versionOf(choice.weight_version ?? top.weight_version) };
}

/** /inference/v1/generate: logprobs as `{content: [{token, logprob, …}]}` aligned with token_ids. */
export function parseGenerate(url: string, res: unknown): ServerGenerateResult {
  const { top, choice } = firstChoice(url, res);
  const ids = intArrayOf(url, choice.token_ids ?? [], 'choices[0].token_ids');
  const content = choice.logprobs == null ? null : objectOf(url, choice.logprobs, 'choices[0].logprobs').content;
  if (ids.length > 0 && !Array.isArray(content)) throw new RemoteProtocolError(url, 'choices[0].logprobs.content is missing: ask for sampling_params.logprobs (the client sends 0)');
  const logprobs = ids.map((_, i) => {
    const entry = (content as unknown[])[i];
    const lp = entry === undefined ? null : logprobOf(objectOf(url, entry, `choices[0].logprobs.content[${i}]`).logprob);
    if (lp === null) throw new RemoteProtocolError(url, `choices[0].logprobs.content[${i}].logprob is not a finite number`);
    return lp;
  });
  return { ids, logprobs, finishReason: finishOf(url, choice.finish_reason), ...versionsOf(url, top, choice, ids.length) };
}

/** /v1/completions with return_token_ids: logprobs as `{token_logprobs: […]}` aligned with token_ids. */
export function parseCompletions(url: string, res: unknown): ServerGenerateResult {
  const { top, choice } = firstChoice(url, res);
  if (choice.token_ids === undefined) throw new RemoteProtocolError(url, 'choices[0].token_ids is missing: the server ignored return_token_ids (vLLM ≥ 0.10.2 supports it)');
  const ids = intArrayOf(url, choice.token_ids ?? [], 'choices[0].token_ids');
  const lps = choice.logprobs == null ? null : objectOf(url, choice.logprobs, 'choices[0].logprobs').token_logprobs;
  if (ids.length > 0 && !Array.isArray(lps)) throw new RemoteProtocolError(url, 'choices[0].logprobs.token_logprobs is missing: ask for logprobs (the client sends 1)');
  const logprobs = ids.map((_, i) => {
    const lp = logprobOf((lps as unknown[])[i]);
    if (lp === null) throw new RemoteProtocolError(url, `choices[0].logprobs.token_logprobs[${i}] is not a finite number`);
    return lp;
  });
  return { ids, logprobs, finishReason: finishOf(url, choice.finish_reason), ...versionsOf(url, top, choice, ids.length) };
}

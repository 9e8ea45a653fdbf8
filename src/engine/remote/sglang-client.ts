/**
 * One SGLang server, token-in/token-out:
 *
 *   POST /generate {input_ids, rid, sampling_params {max_new_tokens, temperature, top_p, top_k,
 *                   stop_token_ids, stop, no_stop_trim}, return_logprob: true, logprob_start_len: -1}
 *   → {output_ids, meta_info: {output_token_logprobs: [[logprob, token_id, text|null], …],
 *      finish_reason: {type: stop|length|abort, …}, weight_version}}
 *
 * logprob_start_len −1 asks for the output tokens' logprobs only. Control: `/pause_generation
 * {mode: "abort"}` (in-flight requests return with finish_reason.type "abort" and their partial
 * output), `/continue_generation`, `/abort_request {rid | abort_all}`, `/update_weights_from_disk
 * {model_path, weight_version, abort_all_requests}` → `{success, message}`, `GET /get_weight_version`,
 * `/release_memory_occupation`, `/resume_memory_occupation`.
 *
 * SGLang's logprobs are those after temperature scaling but before top-k / top-p truncation; the
 * built-in engine (and `agentrl serve inference`) report the truncated distribution's.
 */
import { intArrayOf, objectOf, RemoteProtocolError, requestJson, versionOf, type RequestOptions } from './http.ts';
import { logprobOf, type InferenceServerClient, type ServerGenerateRequest, type ServerGenerateResult } from './server-client.ts';

export class SglangClient implements InferenceServerClient {
  readonly kind = 'sglang' as const;
  readonly url: string;

  constructor(url: string) {
    this.url = url.replace(/\/+$/, '');
  }

  async generate(req: ServerGenerateRequest, opts: RequestOptions): Promise<ServerGenerateResult> {
    const url = `${this.url}/generate`;
    const body = {
      input_ids: [...req.prompt],
      rid: req.requestId,
      sampling_params: {
        max_new_tokens: req.maxTokens,
        temperature: req.temperature,
        ...(req.topP < 1 ? { top_p: req.topP } : {}),
        ...(req.topK > 0 ? { top_k: req.topK } : {}),
        ...(req.seed !== undefined ? { sampling_seed: req.seed } : {}),
        stop_token_ids: [...req.stopIds],
        ...(req.stop.length > 0 ? { stop: [...req.stop], no_stop_trim: true } : {}),
      },
      return_logprob: true,
      logprob_start_len: -1,
    };
    return parseSglangGenerate(url, await requestJson(url, { ...opts, body }));
  }

  async pause(opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/pause_generation`, { ...opts, body: { mode: 'abort' } });
  }

  async resume(opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/continue_generation`, { ...opts, body: {} });
  }

  async abort(ids: readonly string[] | 'all', opts: RequestOptions): Promise<void> {
    const url = `${this.url}/abort_request`;
    if (ids === 'all') {
      await requestJson(url, { ...opts, body: { abort_all: true } });
      return;
    }
    await Promise.all(ids.map((rid) => requestJson(url, { ...opts, body: { rid } })));
  }

  async loadWeights(path: string, version: number, opts: RequestOptions): Promise<void> {
    const url = `${this.url}/update_weights_from_disk`;
    // The engine pauses with abort before loading, so the server has nothing to abort itself.
    const res = objectOf(url, await requestJson(url, { ...opts, body: { model_path: path, weight_version: String(version), abort_all_requests: false } }), 'the answer');
    if (res.success !== true) throw new RemoteProtocolError(url, `the server did not load ${path}: ${String(res.message ?? '(no message)')}`);
  }

  async weightVersion(opts: RequestOptions): Promise<number | null> {
    const url = `${this.url}/get_weight_version`;
    return versionOf(objectOf(url, await requestJson(url, { ...opts, method: 'GET' }), 'the answer').weight_version);
  }

  async sleep(level: 1 | 2, opts: RequestOptions): Promise<void> {
    // Level 1 frees the KV cache; level 2 frees the weights as well (SGLang's default: everything).
    await requestJson(`${this.url}/release_memory_occupation`, { ...opts, body: level === 1 ? { tags: ['kv_cache'] } : {} });
  }

  async wakeUp(tags: readonly ('weights' | 'kv_cache')[] | undefined, opts: RequestOptions): Promise<void> {
    await requestJson(`${this.url}/resume_memory_occupation`, { ...opts, body: tags && tags.length > 0 ? { tags: [...tags] } : {} });
  }
}

function finishOf(url: string, v: unknown): ServerGenerateResult['finishReason'] {
  // SGLang reports {type: 'stop' | 'length' | 'abort', matched?, message?}; null while unfinished.
  const type = typeof v === 'object' && v !== null ? (v as { type?: unknown }).type : v;
  if (type === 'stop' || type === 'length' || type === 'abort') return type;
  throw new RemoteProtocolError(url, `unknown meta_info.finish_reason ${JSON.stringify(v)} (expected {type: stop|length|abort})`);
}

export function parseSglangGenerate(url: string, res: unknown): ServerGenerateResult {
  const top = objectOf(url, Array.isArray(res) ? res[0] : res, 'the answer');
  const meta = objectOf(url, top.meta_info, 'meta_info');
  const ids = intArrayOf(url, top.output_ids ?? [], 'output_ids');
  const entries = meta.output_token_logprobs ?? [];
  if (!Array.isArray(entries) || entries.length !== ids.length) {
    throw new RemoteProtocolError(url, `meta_info.output_token_logprobs must have one [logprob, token_id, text] entry per output id (${ids.length}); got ${JSON.stringify(entries).slice(0, 200)} — send return_logprob: true, logprob_start_len: -1`);
  }
  const logprobs = entries.map((e, i) => {
    const lp = Array.isArray(e) ? logprobOf(e[0]) : null;
    if (lp === null) throw new RemoteProtocolError(url, `meta_info.output_token_logprobs[${i}] is not [logprob, token_id, text] with a finite logprob: ${JSON.stringify(e)}`);
    if (Array.isArray(e) && e[1] !== undefined && e[1] !== ids[i]) throw new RemoteProtocolError(url, `meta_info.output_token_logprobs[${i}] is for token ${String(e[1])} but output_ids[${i}] is ${ids[i]}`);
    return lp;
  });
  // Per-token versions are an agentrl extension (stock SGLang reports one weight_version per request).
  let versions: number[] | null = null;
  if (meta.output_token_versions != null) {
    versions = intArrayOf(url, meta.output_token_versions, 'meta_info.output_token_versions');
    if (versions.length !== ids.length) throw new RemoteProtocolError(url, `meta_info.output_token_versions has ${versions.length} entries for ${ids.length} output ids`);
  }
  return { ids, logprobs, versions, weightVersion: versionOf(meta.weight_version), finishReason: finishOf(url, meta.finish_reason) };
}

/**
 * An HTTP client for the Tinker training API (hosted, SkyRL's self-hosted server, or `agentrl serve
 * trainer`): sessions, models, forward/backward, optimizer steps, weights and sampling.
 *
 * Every training call is submitted once (with an `X-Idempotency-Key`, so a retried submission is not
 * run twice by servers that honour it) and then polled with retrieve_future until it stops answering
 * try_again. Connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff;
 * other 4xx answers fail at once with the server's message (it names the bad field).
 */
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import {
  API_PREFIX, CheckpointArchiveUrlResponseSchema, CreateModelResponseSchema, CreateSamplingSessionResponseSchema, CreateSessionResponseSchema,
  ForwardBackwardOutputSchema, LoadWeightsResponseSchema, OptimStepResponseSchema, RequestFailedSchema, SampleResponseSchema, SavePathResponseSchema,
  ServerCapabilitiesSchema, TryAgainSchema, UntypedFutureSchema, archiveRoute, parseTinkerPath,
  type AdamParams, type Datum, type ForwardBackwardOutput, type TinkerLoraConfig, type TinkerLossFn,
} from './tinker-protocol.ts';

export interface TinkerClientOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:8000 (the /api/v1 prefix is added). */
  url: string;
  /** Sent as X-API-Key; default the TINKER_API_KEY environment variable. */
  apiKey?: string;
  /** Timeout of one HTTP request, ms (default 120 000). */
  requestTimeoutMs?: number;
  /** Longest wait for one future's result, ms (default 1 hour). */
  futureTimeoutMs?: number;
  /** Retries of one HTTP request on connection errors, timeouts, 5xx and 429 (default 5). */
  maxRetries?: number;
  /** First backoff, ms (doubles per retry, at most 10 s; default 200). */
  backoffMs?: number;
}

/** The server answered a request with an error status that is not retried (or retries ran out). */
export class TinkerHttpError extends Error {
  constructor(readonly status: number, readonly url: string, readonly body: string, message: string) {
    super(message);
    this.name = 'TinkerHttpError';
  }
}

/** A future finished with `{error, category}` (category 'user': the request was wrong; 'server': the service failed). */
export class TinkerRequestFailedError extends Error {
  constructor(readonly requestId: string, readonly category: string, message: string) {
    super(message);
    this.name = 'TinkerRequestFailedError';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class TinkerClient {
  readonly base: string;
  private readonly apiKey: string | undefined;
  private readonly requestTimeoutMs: number;
  private readonly futureTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly backoffMs: number;

  constructor(o: TinkerClientOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new Error(`trainerService.url: '${o.url}' is not a URL (e.g. http://127.0.0.1:8000)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`trainerService.url: '${o.url}' must be http:// or https://`);
    this.base = o.url.replace(/\/+$/, '').replace(/\/api\/v1$/, '');
    this.apiKey = o.apiKey ?? (process.env.TINKER_API_KEY || undefined);
    this.requestTimeoutMs = o.requestTimeoutMs ?? 120_000;
    this.futureTimeoutMs = o.futureTimeoutMs ?? 3_600_000;
    this.maxRetries = o.maxRetries ?? 5;
    this.backoffMs = o.backoffMs ?? 200;
  }

  // ── service ──────────────────────────────────────────────────────────────────────────────

  async healthz(): Promise<boolean> {
    const r = await this.request('GET', `${API_PREFIX}/healthz`);
    return (r as { status?: string }).status === 'ok';
  }

  async capabilities(): Promise<z.infer<typeof ServerCapabilitiesSchema>> {
    return this.parse(ServerCapabilitiesSchema, await this.request('GET', `${API_PREFIX}/get_server_capabilities`), 'get_server_capabilities');
  }

  async createSession(tags: string[] = ['agentrl']): Promise<string> {
    const r = await this.request('POST', `${API_PREFIX}/create_session`, { tags, user_metadata: null, sdk_version: 'agentrl', type: 'create_session' });
    return this.parse(CreateSessionResponseSchema, r, 'create_session').session_id;
  }

  /** A model to train: LoRA when `lora` is given, else full fine-tuning (agentrl serve trainer only). */
  async createModel(o: { sessionId: string; baseModel: string; lora?: TinkerLoraConfig | null; modelSeqId?: number }): Promise<string> {
    const res = await this.submitAndWait('create_model', { session_id: o.sessionId, model_seq_id: o.modelSeqId ?? 0, base_model: o.baseModel, lora_config: o.lora ?? null, type: 'create_model' });
    return this.parse(CreateModelResponseSchema, res, 'create_model').model_id;
  }

  async unloadModel(modelId: string): Promise<void> {
    await this.submitAndWait('unload_model', { model_id: modelId, type: 'unload_model' });
  }

  // ── training ─────────────────────────────────────────────────────────────────────────────

  /** Accumulate the gradient of a summed loss over `data`; returns each datum's current logprobs. */
  async forwardBackward(modelId: string, data: Datum[], lossFn: TinkerLossFn, lossFnConfig?: Record<string, number>): Promise<ForwardBackwardOutput> {
    const res = await this.submitAndWait('forward_backward', { model_id: modelId, forward_backward_input: { data, loss_fn: lossFn, loss_fn_config: lossFnConfig ?? null } });
    return this.parse(ForwardBackwardOutputSchema, res, 'forward_backward');
  }

  /** The same outputs without a gradient (e.g. proximal logprobs for decoupled PPO). */
  async forward(modelId: string, data: Datum[], lossFn: TinkerLossFn, lossFnConfig?: Record<string, number>): Promise<ForwardBackwardOutput> {
    const res = await this.submitAndWait('forward', { model_id: modelId, forward_input: { data, loss_fn: lossFn, loss_fn_config: lossFnConfig ?? null } });
    return this.parse(ForwardBackwardOutputSchema, res, 'forward');
  }

  /** Apply the accumulated gradient with Adam(W); the server's metrics (e.g. grad_norm) come back. */
  async optimStep(modelId: string, adam: AdamParams): Promise<Record<string, number>> {
    const res = await this.submitAndWait('optim_step', { model_id: modelId, adam_params: adam, type: 'optim_step' });
    return this.parse(OptimStepResponseSchema, res, 'optim_step').metrics ?? {};
  }

  /** Save the weights for sampling; returns their tinker:// path. */
  async saveWeightsForSampler(modelId: string, name: string): Promise<string> {
    const res = await this.submitAndWait('save_weights_for_sampler', { model_id: modelId, path: name, type: 'save_weights_for_sampler' });
    return this.parse(SavePathResponseSchema, res, 'save_weights_for_sampler').path;
  }

  /** Save weights and optimizer state (to resume with loadWeights); returns the tinker:// path. */
  async saveWeights(modelId: string, name: string): Promise<string> {
    const res = await this.submitAndWait('save_weights', { model_id: modelId, path: name, type: 'save_weights' });
    return this.parse(SavePathResponseSchema, res, 'save_weights').path;
  }

  async loadWeights(modelId: string, path: string, optimizer: boolean): Promise<void> {
    const res = await this.submitAndWait('load_weights', { model_id: modelId, path, optimizer, type: 'load_weights' });
    this.parse(LoadWeightsResponseSchema, res, 'load_weights');
  }

  /** The download URL of a saved checkpoint (the SDK's get_checkpoint_archive_url). */
  async archiveUrl(path: string): Promise<string> {
    const { modelId, kind, name } = parseTinkerPath(path);
    const res = await this.request('GET', archiveRoute(modelId, kind, name));
    const url = this.parse(CheckpointArchiveUrlResponseSchema, res, 'checkpoint archive').url;
    return new URL(url, this.base).toString();
  }

  /** Download bytes (an archive URL), with the same retries. */
  async download(url: string): Promise<Uint8Array> {
    return this.withRetries('GET', url, async (signal) => {
      const res = await fetch(url, { headers: this.headers(), signal });
      if (!res.ok) return { status: res.status, text: await res.text() };
      return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) };
    }) as Promise<Uint8Array>;
  }

  // ── sampling ─────────────────────────────────────────────────────────────────────────────

  async createSamplingSession(o: { sessionId: string; modelPath?: string; baseModel?: string; seqId?: number }): Promise<string> {
    const r = await this.request('POST', `${API_PREFIX}/create_sampling_session`, { session_id: o.sessionId, sampling_session_seq_id: o.seqId ?? 0, model_path: o.modelPath ?? null, base_model: o.baseModel ?? null });
    return this.parse(CreateSamplingSessionResponseSchema, r, 'create_sampling_session').sampling_session_id;
  }

  async sample(o: {
    prompt: readonly number[]; numSamples?: number; modelPath?: string; baseModel?: string; samplingSessionId?: string;
    params: { max_tokens: number; temperature?: number; top_k?: number; top_p?: number; seed?: number; stop?: string[] | number[] };
  }): Promise<z.infer<typeof SampleResponseSchema>> {
    const res = await this.submitAndWait('asample', {
      prompt: { chunks: [{ type: 'encoded_text', tokens: [...o.prompt] }] }, num_samples: o.numSamples ?? 1, sampling_params: o.params,
      model_path: o.modelPath ?? null, base_model: o.baseModel ?? null, sampling_session_id: o.samplingSessionId ?? null, type: 'sample',
    });
    return this.parse(SampleResponseSchema, res, 'asample');
  }

  // ── futures and HTTP ─────────────────────────────────────────────────────────────────────

  /** Submit a call that answers {request_id} and poll its result. */
  async submitAndWait(endpoint: string, body: unknown): Promise<unknown> {
    const sub = this.parse(UntypedFutureSchema, await this.request('POST', `${API_PREFIX}/${endpoint}`, body, randomUUID()), endpoint);
    return this.waitFuture(sub.request_id, endpoint);
  }

  /** Poll retrieve_future until the result is there (try_again answers and HTTP 408 mean "not yet"). */
  async waitFuture(requestId: string, what = 'request'): Promise<unknown> {
    const deadline = performance.now() + this.futureTimeoutMs;
    let idle = 0;
    for (;;) {
      const t0 = performance.now();
      const r = await this.request('POST', `${API_PREFIX}/retrieve_future`, { request_id: requestId, allow_metadata_only: false }, undefined, true);
      if (TryAgainSchema.safeParse(r).success) {
        if (performance.now() > deadline) throw new Error(`${what} (request ${requestId}) did not finish within ${this.futureTimeoutMs / 1000} s (futureTimeoutSeconds)`);
        // A server that long-polls answers slowly: ask again at once; otherwise back off a little.
        if (performance.now() - t0 < 50) await sleep(Math.min(250, 5 * 2 ** Math.min(idle++, 6)));
        continue;
      }
      const failed = RequestFailedSchema.safeParse(r);
      if (failed.success && r && typeof r === 'object' && 'error' in r) {
        throw new TinkerRequestFailedError(requestId, failed.data.category, `${what} failed (${failed.data.category} error): ${failed.data.error}`);
      }
      return r;
    }
  }

  private headers(json = false, idempotencyKey?: string): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json' };
    if (json) h['content-type'] = 'application/json';
    if (this.apiKey) h['x-api-key'] = this.apiKey;
    if (idempotencyKey) h['x-idempotency-key'] = idempotencyKey;
    return h;
  }

  /** One JSON request with retries. `tryAgainOn408`: a 408 carries a try_again body (retrieve_future). */
  async request(method: 'GET' | 'POST', path: string, body?: unknown, idempotencyKey?: string, tryAgainOn408 = false): Promise<unknown> {
    const url = this.base + path;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return this.withRetries(method, url, async (signal) => {
      const res = await fetch(url, { method, headers: this.headers(payload !== undefined, idempotencyKey), body: payload, signal });
      const text = await res.text();
      if (res.status === 408 && tryAgainOn408) return { status: 200, json: { type: 'try_again', request_id: '' } };
      if (!res.ok) return { status: res.status, text };
      try {
        return { status: res.status, json: JSON.parse(text) as unknown };
      } catch {
        throw new TinkerHttpError(res.status, url, text, `${method} ${url}: the answer is not JSON: ${text.slice(0, 200)}`);
      }
    });
  }

  private async withRetries(method: string, url: string, once: (signal: AbortSignal) => Promise<{ status: number; text?: string; json?: unknown; bytes?: Uint8Array }>): Promise<unknown> {
    let lastError = '';
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await sleep(Math.min(10_000, this.backoffMs * 2 ** (attempt - 1)));
      let r: Awaited<ReturnType<typeof once>>;
      try {
        r = await once(AbortSignal.timeout(this.requestTimeoutMs));
      } catch (e) {
        if (e instanceof TinkerHttpError) throw e;
        const err = e as Error & { cause?: { code?: string } };
        lastError = err.name === 'TimeoutError' ? `no answer within ${this.requestTimeoutMs / 1000} s` : `${err.message}${err.cause?.code ? ` (${err.cause.code})` : ''}`;
        if (attempt < this.maxRetries) continue;
        throw new Error(`${method} ${url}: ${lastError} after ${attempt + 1} attempts; is the training service running at ${this.base}?`);
      }
      if (r.status >= 200 && r.status < 300) return r.bytes ?? r.json;
      const text = r.text ?? '';
      const retryable = r.status >= 500 || r.status === 429 || r.status === 408;
      lastError = `HTTP ${r.status}: ${errorText(text)}`;
      if (retryable && attempt < this.maxRetries) continue;
      throw new TinkerHttpError(r.status, url, text, `${method} ${url} failed with ${lastError}`);
    }
  }

  private parse<S extends z.ZodTypeAny>(schema: S, value: unknown, what: string): z.output<S> {
    const r = schema.safeParse(value);
    if (!r.success) throw new Error(`${what}: unexpected answer from ${this.base}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')} (got ${JSON.stringify(value).slice(0, 300)})`);
    return r.data;
  }
}

/** The message of a JSON error body ({error} or FastAPI's {detail}), else the text. */
function errorText(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: unknown; detail?: unknown };
    const m = j.error ?? j.detail;
    if (m !== undefined) return typeof m === 'string' ? m : JSON.stringify(m);
  } catch {
    // not JSON
  }
  return text.slice(0, 500);
}

/**
 * `agentrl serve inference`: the built-in engine behind the HTTP endpoints of vLLM's OpenAI-compatible
 * server and of SGLang's native server, so the remote-engine clients (src/engine/remote) can be run
 * end to end against a real server process, and so a trainer can drive it like a vLLM/SGLang fleet.
 *
 * vLLM-shaped
 *   POST /v1/completions             prompt as text, ids, or a list of either; max_tokens (default
 *                                    16), temperature, top_p, top_k, seed, n, stop, stop_token_ids,
 *                                    logprobs, return_token_ids (→ choices[i].token_ids and
 *                                    prompt_token_ids), return_tokens_as_token_ids, request_id,
 *                                    stream (server-sent events as vLLM sends them: a text_completion
 *                                    chunk per sampled token with its choice's `index`, the text it
 *                                    adds, its logprobs / token_ids / token_versions; the last chunk
 *                                    of a choice has its finish_reason and stop_reason; then, with
 *                                    stream_options {include_usage, continuous_usage_stats}, a chunk
 *                                    with no choices and the usage; then [DONE])
 *   POST /inference/v1/generate      {token_ids, sampling_params, request_id} → {request_id,
 *                                    choices: [{index, token_ids, logprobs: {content: [{token,
 *                                    logprob, bytes, top_logprobs}]} | null, finish_reason}]}
 *   GET  /v1/models, GET /health, GET /load ({server_load}: requests in flight)
 *   POST /pause?mode=abort|wait|keep, POST /resume, GET /is_paused, POST /abort_requests
 *   {request_ids?} (omitted = all: an agentrl extension), POST /sleep?level=1|2, POST
 *   /wake_up?tags=weights|kv_cache, GET /is_sleeping, GET /weight_info → {weight_version}
 * SGLang-shaped
 *   POST /generate                   text | input_ids (or lists of them), sampling_params
 *                                    {max_new_tokens (default 128), temperature, top_p, top_k,
 *                                    stop, stop_token_ids, n}, rid, return_logprob,
 *                                    logprob_start_len (−1 or ≥ the prompt length: the engine
 *                                    does not score prompts), stream (one event per token as it
 *                                    is sampled, each with the cumulative text, output_ids and
 *                                    meta_info so far, finish_reason null; then the whole result
 *                                    as each generation ends, then [DONE]) → {text, output_ids, meta_info: {id,
 *                                    finish_reason: {type: stop|length|abort, matched|length|message},
 *                                    prompt_tokens, completion_tokens, output_token_logprobs:
 *                                    [[logprob, id, text|null]], weight_version}}
 *   POST /pause_generation {mode: abort|retract|in_place}, POST /continue_generation,
 *   POST /abort_request {rid, abort_all}, POST /release_memory_occupation {tags?},
 *   POST /resume_memory_occupation {tags?}, GET /get_model_info, GET /get_weight_version
 * Both
 *   POST /update_weights_from_disk {model_path, weight_version?, abort_all_requests?} →
 *   {success, message, num_paused_requests}: loads a directory written by `writeWeightsDir`
 *   (src/engine/remote/weights-dir.ts) or a Hugging Face export of the same architecture. This is
 *   SGLang's endpoint; vLLM's own weight transfer goes over NCCL (`/init_weight_transfer_engine`,
 *   `/update_weights`), and its disk route is `/collective_rpc {"method": "reload_weights"}`: agentrl
 *   serves the SGLang route for both flavours. `weight_version` defaults to the directory's
 *   agentrl_weight_version, else the current version + 1; agentrl versions are integers.
 *
 * agentrl extensions: every generation response carries `weight_version` (vLLM: top level; SGLang:
 * meta_info, as SGLang does) and the version of each generated token (`choices[i].token_versions`,
 * `meta_info.output_token_versions`), since one request can span an in-place weight update.
 *
 * Behaviour logprobs are exactly the built-in engine's: those of the distribution sampled from,
 * after temperature and top-k/top-p (vLLM reports those only when started with `--logprobs-mode
 * processed_logprobs`). Temperature 0 means greedy (top-k 1; every logprob is then 0). Only the
 * sampled token's logprob is known: `top_logprobs` holds that token alone. Penalties, min_p,
 * min_tokens, ignore_eos, logit_bias, guided decoding, prompt logprobs and echo change or need what
 * the engine does not compute and are refused with 400.
 *
 * Pause, abort, sleep and weight-update semantics are InferenceControl's (src/serve/inference-control.ts).
 * Errors are OpenAI-shaped `{error: {message, type, code}}`: 400 bad request (the engine's own
 * validation messages), 404 unknown route or model, 405, 413 body over the limit, 503 while sleeping.
 * A stream answers these before its first event; after it (the 200 is sent) an error is an `{error}`
 * event followed by [DONE], as vLLM and SGLang send it. A client that disconnects aborts its request
 * in the engine.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HttpError, listenUrl, readBody, readJsonBody, type TooLargeError } from '../core/http-server.ts';
import type { Transformer } from '../engine/model.ts';
import type { Tokenizer } from '../engine/types.ts';
import { readWeightsDir } from '../engine/remote/weights-dir.ts';
import { InferenceControl, MEMORY_TAGS, ServerSleepingError, type ControllableEngine, type JobParams, type JobResult, type MemoryTag, type PauseMode } from './inference-control.ts';

export interface InferenceServerOptions {
  /** The engine to serve (a BuiltinEngine). */
  engine: ControllableEngine & { readonly contextLength?: number };
  /** The engine's model: its parameter layout is what weight directories are read into. */
  model: Transformer;
  tokenizer: Tokenizer;
  /** Default 127.0.0.1 (loopback only; pass 0.0.0.0 to serve other machines). */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** The name `/v1/models` lists and requests' `model` must match (default 'agentrl'). */
  modelName?: string;
  /** Where the model came from (reported by /v1/models and /get_model_info). */
  modelPath?: string;
  /** Text → ids for text prompts (default tokenizer.encode; an HF model passes encode with special tokens, as vLLM does). */
  encodeText?: (text: string) => number[];
  /** Ids that end every generation besides the tokenizer's EOS (the generation config's EOS ids). */
  stopIds?: readonly number[];
  /** Largest request body accepted, in bytes (default 64 MiB). */
  maxBodyBytes?: number;
}

export interface InferenceServer {
  /** Base URL, e.g. http://127.0.0.1:8000 */
  url: string;
  control: InferenceControl;
  close(): Promise<void>;
}

const ERROR_TYPES: Record<number, string> = { 400: 'BadRequestError', 404: 'NotFoundError', 405: 'MethodNotAllowedError', 413: 'RequestTooLargeError', 500: 'InternalServerError', 503: 'ServiceUnavailableError' };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const errorBody = (status: number, message: string) => ({ error: { message, type: ERROR_TYPES[status] ?? 'Error', code: status } });

function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, errorBody(status, message));
}

/** The HTTP status and message a failed request answers with. */
function failure(e: unknown): { status: number; message: string } {
  if (e instanceof HttpError) return { status: e.status, message: e.message };
  if (e instanceof ServerSleepingError) return { status: 503, message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  // The engine's own argument checks ("generate: …") are the client's fault.
  if (message.startsWith('generate: ')) return { status: 400, message: message.slice('generate: '.length) };
  return { status: 500, message };
}

/**
 * A server-sent-event response. The 200 goes out with the first event, so that a request refused
 * before any token (a bad sampling parameter, a sleeping server) still gets its plain error status;
 * nothing is written once the client has gone or the stream has ended.
 */
function eventStream(res: ServerResponse) {
  const open = () => {
    if (res.headersSent) return;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.socket?.setNoDelay(true);
  };
  const closed = () => res.writableEnded || res.destroyed;
  return {
    get started() {
      return res.headersSent;
    },
    send(data: unknown): void {
      if (closed()) return;
      open();
      res.write(`data: ${JSON.stringify(data)}\n\n`);
    },
    end(): void {
      if (closed()) return;
      open();
      res.end('data: [DONE]\n\n');
    },
  };
}
type EventStream = ReturnType<typeof eventStream>;

/** The 413 of this server (one message, whether the declared or the received size passed the limit). */
const tooLarge: TooLargeError = (maxBytes) =>
  new HttpError(413, `request body is larger than the limit of ${maxBytes} bytes (start the server with a larger --max-body-bytes, or send fewer prompts per request)`);

// ---------------------------------------------------------------------------------------------
// Request schemas (unknown fields are accepted and ignored, as vLLM and SGLang do).

const finite = z.number().finite();
const stopSchema = z.union([z.string(), z.array(z.string())]).nullish();
const idList = z.array(z.number().int({ message: 'token ids must be integers' }));

/** Sampling fields vLLM's SamplingParams and the completions request share. */
const vllmSamplingShape = {
  n: z.number().int().min(1).max(64).nullish(),
  temperature: finite.min(0).nullish(),
  top_p: finite.nullish(),
  top_k: z.number().int().nullish(),
  seed: z.number().int().nullish(),
  stop: stopSchema,
  stop_token_ids: idList.nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  logprobs: z.number().int().min(0, 'logprobs must be ≥ 0 (the full-vocabulary -1 is not supported)').nullish(),
  include_stop_str_in_output: z.boolean().nullish(),
};

const CompletionRequest = z.object({
  model: z.string().nullish(),
  prompt: z.union([z.string(), idList, z.array(z.string()), z.array(idList)]),
  request_id: z.string().nullish(),
  return_token_ids: z.boolean().nullish(),
  return_tokens_as_token_ids: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).passthrough().nullish(),
  ...vllmSamplingShape,
}).passthrough();

const GenerateRequest = z.object({
  model: z.string().nullish(),
  token_ids: idList,
  request_id: z.string().nullish(),
  sampling_params: z.object(vllmSamplingShape).passthrough().default({}),
}).passthrough();

const SglangSampling = z.object({
  max_new_tokens: z.number().int().min(0).nullish(),
  temperature: finite.min(0).nullish(),
  top_p: finite.nullish(),
  top_k: z.number().int().nullish(),
  seed: z.number().int().nullish(),
  sampling_seed: z.number().int().nullish(),
  stop: stopSchema,
  stop_token_ids: idList.nullish(),
  n: z.number().int().min(1).max(64).nullish(),
  no_stop_trim: z.boolean().nullish(),
}).passthrough();

const SglangGenerateRequest = z.object({
  text: z.union([z.string(), z.array(z.string())]).nullish(),
  input_ids: z.union([idList, z.array(idList)]).nullish(),
  sampling_params: SglangSampling.nullish(),
  rid: z.union([z.string(), z.array(z.string())]).nullish(),
  return_logprob: z.boolean().nullish(),
  logprob_start_len: z.number().int().nullish(),
  top_logprobs_num: z.number().int().min(0).nullish(),
  return_text_in_logprobs: z.boolean().nullish(),
  stream: z.boolean().nullish(),
}).passthrough();

const UpdateWeightsRequest = z.object({
  model_path: z.string({ required_error: 'model_path is required (the weight directory to load)' }).min(1),
  weight_version: z.union([z.number().int(), z.string()]).nullish(),
  abort_all_requests: z.boolean().nullish(),
  load_format: z.string().nullish(),
}).passthrough();

const tagsSchema = z.array(z.enum(MEMORY_TAGS as [MemoryTag, ...MemoryTag[]])).nullish();

const UNSUPPORTED_HINT = "agentrl's built-in engine samples from the model's distribution under temperature / top-k / top-p only, so that behaviour logprobs stay exact";

/** 400 for sampling features the engine does not have, when set to anything but their no-op value. */
function refuseUnsupported(o: Record<string, unknown>, where: string): void {
  const set = (k: string, isNoop: (v: unknown) => boolean) => {
    const v = o[k];
    if (v !== undefined && v !== null && !isNoop(v)) throw new HttpError(400, `${where}${k} = ${JSON.stringify(v)} is not supported: ${UNSUPPORTED_HINT}`);
  };
  set('ignore_eos', (v) => v === false);
  set('min_tokens', (v) => v === 0);
  set('min_new_tokens', (v) => v === 0);
  set('presence_penalty', (v) => v === 0);
  set('frequency_penalty', (v) => v === 0);
  set('repetition_penalty', (v) => v === 1);
  set('min_p', (v) => v === 0);
  set('logit_bias', (v) => typeof v === 'object' && Object.keys(v as object).length === 0);
  set('use_beam_search', (v) => v === false);
  set('echo', (v) => v === false);
  set('prompt_logprobs', () => false);
  for (const k of ['guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'structured_outputs', 'response_format', 'json_schema', 'regex', 'ebnf']) set(k, () => false);
}

// ---------------------------------------------------------------------------------------------

/** One generation as the HTTP layer hands it to InferenceControl. */
interface GenerationSpec {
  prompt: number[];
  params: JobParams;
  /** Stop strings removed from the returned text (vLLM's and SGLang's default). */
  trimStop: boolean;
}

/** A generation and the request id it runs under. */
interface Submission {
  id: string;
  spec: GenerationSpec;
}

/** The tokens of a generation so far (while streaming) or in the end. */
type Tokens = Pick<JobResult, 'ids' | 'logprobs' | 'versions'>;

interface Finished {
  spec: GenerationSpec;
  result: JobResult;
  text: string;
  /** The stop token id or stop string that ended it (SGLang `matched`, vLLM `stop_reason`). */
  matched: number | string | null;
}

export async function startInferenceServer(opts: InferenceServerOptions): Promise<InferenceServer> {
  const { engine, model, tokenizer, host = '127.0.0.1', port = 8000, maxBodyBytes = 64 << 20 } = opts;
  const modelName = opts.modelName ?? 'agentrl';
  const encodeText = opts.encodeText ?? ((t: string) => tokenizer.encode(t));
  const defaultStopIds = [...new Set(opts.stopIds ?? [])];
  const V = model.config.vocabSize;
  const ctx = engine.contextLength ?? model.config.contextLength;
  const control = new InferenceControl(engine);
  const created = Math.floor(Date.now() / 1000);
  let updating: Promise<unknown> = Promise.resolve();

  /** An empty body is `{}` (the control endpoints take bodiless POSTs). */
  function parse<S extends z.ZodTypeAny>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
    return readJsonBody(req, maxBodyBytes, schema, { tooLarge, emptyBody: {} });
  }

  function checkModel(name: string | null | undefined): void {
    if (name != null && name !== modelName && name !== opts.modelPath) throw new HttpError(404, `The model \`${name}\` does not exist (this server serves '${modelName}')`);
  }

  function checkPrompt(prompt: number[], where: string): void {
    if (prompt.length === 0) throw new HttpError(400, `${where}the prompt is empty; give at least one token`);
    for (const id of prompt) if (id < 0 || id >= V) throw new HttpError(400, `${where}prompt token id ${id} is outside the vocabulary [0, ${V})`);
  }

  /** Max tokens: the given budget (checked against the context) or a default that fits. */
  function budget(given: number | null | undefined, fallback: number | null, promptLen: number, where: string): number {
    const room = ctx - promptLen;
    if (room < 1) throw new HttpError(400, `${where}the prompt has ${promptLen} tokens; this model's maximum context length is ${ctx} tokens (leave room for at least one new token)`);
    if (given == null) return fallback === null ? room : Math.min(fallback, room);
    if (promptLen + given > ctx) throw new HttpError(400, `${where}this model's maximum context length is ${ctx} tokens, but ${promptLen + given} were requested (${promptLen} in the prompt + ${given} to generate); reduce the prompt or the token budget`);
    return given;
  }

  /** Engine sampling params from vLLM/SGLang names. Temperature 0 = greedy (top-k 1); top_k ≤ 0 = off. */
  function samplingParams(s: { temperature?: number | null; top_p?: number | null; top_k?: number | null; seed?: number | null; stop?: string | string[] | null; stop_token_ids?: number[] | null }, maxTokens: number, where: string): JobParams {
    const stops = s.stop == null ? [] : typeof s.stop === 'string' ? [s.stop] : s.stop;
    if (stops.some((x) => x === '')) throw new HttpError(400, `${where}stop strings must not be empty`);
    for (const id of s.stop_token_ids ?? []) if (id < 0 || id >= V) throw new HttpError(400, `${where}stop token id ${id} is outside the vocabulary [0, ${V})`);
    if (s.top_p != null && !(s.top_p > 0 && s.top_p <= 1)) throw new HttpError(400, `${where}top_p must be in (0, 1], 1 = off (got ${s.top_p})`);
    if (s.top_k != null && s.top_k < -1) throw new HttpError(400, `${where}top_k must be -1 or 0 (off) or an integer ≥ 1 (got ${s.top_k})`);
    const greedy = s.temperature === 0;
    const topK = greedy ? 1 : s.top_k != null && s.top_k > 0 ? s.top_k : 0;
    const p: JobParams = { maxTokens, temperature: greedy ? 1 : s.temperature ?? 1, topK, topP: s.top_p ?? 1 };
    if (s.seed != null) p.seed = s.seed;
    if (stops.length > 0) p.stop = stops;
    const stopIds = [...new Set([...defaultStopIds, ...(s.stop_token_ids ?? [])])];
    if (stopIds.length > 0) p.stopIds = stopIds;
    return p;
  }

  /**
   * Run the specs, each as a job under its id; all are aborted when the client disconnects or when
   * one fails (the response is then that error). `onFinished` sees each job as soon as it ends.
   */
  async function runAll(jobs: Submission[], signal: AbortSignal, onFinished?: (i: number, f: Finished) => void): Promise<Finished[]> {
    const all = new AbortController();
    const stop = () => all.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    try {
      return await Promise.all(jobs.map(async ({ id, spec }, i) => {
        try {
          const f = describe(spec, await control.submit(id, spec.prompt, spec.params, all.signal));
          onFinished?.(i, f);
          return f;
        } catch (e) {
          all.abort(e);
          throw e;
        }
      }));
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  function describe(spec: GenerationSpec, result: JobResult): Finished {
    let text = tokenizer.decode(result.ids);
    let matched: number | string | null = null;
    if (result.finish === 'eos' || result.finish === 'stop') {
      const last = result.ids[result.ids.length - 1]!;
      const byString = result.finish === 'stop' && !(spec.params.stopIds ?? []).includes(last) ? (spec.params.stop ?? []).find((s) => text.endsWith(s)) : undefined;
      if (byString !== undefined) {
        matched = byString;
        if (spec.trimStop) text = text.slice(0, text.length - byString.length);
      } else {
        matched = last;
      }
    }
    return { spec, result, text, matched };
  }

  /**
   * Run jobs for a server-sent-event response (SGLang's /generate and vLLM's /v1/completions with
   * stream): `token(i, sofar)` as job i samples each token, `finished(i, f)` as it ends, `all` when
   * every job has, then [DONE]. An error before the first event is the plain error response; after
   * it, an `{error}` event and [DONE].
   */
  async function streamJobs(sse: EventStream, jobs: Submission[], signal: AbortSignal, on: { token(i: number, sofar: Tokens): void; finished(i: number, f: Finished): void; all?(done: Finished[]): void }): Promise<typeof STREAMED> {
    jobs.forEach((job, i) => {
      const sofar: Tokens = { ids: [], logprobs: [], versions: [] };
      // The engine calls this for each token as it is sampled (also across a freeze and resume).
      job.spec.params.onToken = (t) => {
        sofar.ids.push(t.id);
        sofar.logprobs.push(t.logprob);
        sofar.versions.push(t.version);
        if (!signal.aborted) on.token(i, sofar);
      };
    });
    try {
      const done = await runAll(jobs, signal, on.finished);
      on.all?.(done);
    } catch (e) {
      if (!sse.started) throw e;
      const { status, message } = failure(e);
      sse.send(errorBody(status, message));
    }
    sse.end();
    return STREAMED;
  }

  const tokenText = (id: number, asIds: boolean) => (asIds ? `token_id:${id}` : tokenizer.decode([id]));

  /** vLLM's completion logprobs of some tokens; text_offset counts on from `offset`, where the first of them starts. */
  function completionLogprobs(ids: readonly number[], logprobs: readonly number[], top: boolean, asIds: boolean, offset = 0) {
    const tokens = ids.map((t) => tokenText(t, asIds));
    const textOffset: number[] = [];
    for (const t of ids) {
      textOffset.push(offset);
      offset += tokenizer.decode([t]).length;
    }
    return { tokens, token_logprobs: logprobs, text_offset: textOffset, top_logprobs: top ? ids.map((_, i) => ({ [tokens[i]!]: logprobs[i]! })) : null };
  }

  // --- vLLM -----------------------------------------------------------------------------------

  const vllmFinish = (r: JobResult) => (r.finish === 'abort' ? 'abort' : r.finish === 'length' ? 'length' : 'stop');
  /** vLLM's stop_reason: the stop string or stop token id that ended the request; null for EOS, length and abort. */
  const stopReason = (f: Finished) => (f.result.finish === 'stop' ? f.matched : null);

  async function completions(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<unknown> {
    const b = await parse(req, CompletionRequest);
    checkModel(b.model);
    refuseUnsupported(b, '');
    if (b.stream_options != null && !b.stream) throw new HttpError(400, 'stream_options can only be given with stream: true (vLLM refuses it too); drop it or set stream: true');
    const prompts: number[][] = typeof b.prompt === 'string' ? [encodeText(b.prompt)]
      : b.prompt.length > 0 && typeof b.prompt[0] === 'number' ? [b.prompt as number[]]
      : (b.prompt as (string | number[])[]).map((p) => (typeof p === 'string' ? encodeText(p) : p));
    if (prompts.length === 0) throw new HttpError(400, 'prompt is empty; give text, token ids, or a list of them');
    const n = b.n ?? 1;
    const specs: GenerationSpec[] = [];
    prompts.forEach((prompt, pi) => {
      const where = prompts.length > 1 ? `prompt ${pi}: ` : '';
      checkPrompt(prompt, where);
      const maxTokens = budget(b.max_tokens, 16, prompt.length, where);
      for (let i = 0; i < n; i++) {
        const params = samplingParams(b, maxTokens, where);
        if (params.seed !== undefined && i > 0) params.seed += i; // n samples from one seed must differ
        specs.push({ prompt, params, trimStop: !b.include_stop_str_in_output });
      }
    });
    const id = b.request_id ?? headerId(req) ?? `cmpl-${randomUUID()}`;
    const jobs = specs.map((spec) => ({ id, spec }));
    const promptTokens = prompts.reduce((s, p) => s + p.length, 0) * n;
    if (b.stream) return streamCompletions(res, b, jobs, signal, promptTokens);
    const done = await runAll(jobs, signal);
    const asIds = !!b.return_tokens_as_token_ids;
    const choices = done.map((f, index) => {
      const r = f.result;
      return {
        index, text: f.text, logprobs: b.logprobs == null ? null : completionLogprobs(r.ids, r.logprobs, b.logprobs > 0, asIds),
        finish_reason: vllmFinish(r), stop_reason: stopReason(f), prompt_logprobs: null,
        ...(b.return_token_ids ? { prompt_token_ids: f.spec.prompt, token_ids: r.ids } : {}),
        token_versions: r.versions,
      };
    });
    const completionTokens = done.reduce((s, f) => s + f.result.ids.length, 0);
    return {
      id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: modelName, choices,
      usage: usage(promptTokens, completionTokens),
      weight_version: control.version(),
    };
  }

  const usage = (prompt: number, completion: number) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });

  /**
   * /v1/completions with stream: true, in vLLM's chunks: each of the non-streamed response's fields
   * restricted to the tokens the chunk adds (text, logprobs with text_offset counting on, token_ids,
   * token_versions; prompt_token_ids in a choice's first chunk only, null after).
   */
  function streamCompletions(res: ServerResponse, b: z.infer<typeof CompletionRequest>, jobs: Submission[], signal: AbortSignal, promptTokens: number): Promise<typeof STREAMED> {
    const sse = eventStream(res);
    const created = Math.floor(Date.now() / 1000);
    const asIds = !!b.return_tokens_as_token_ids;
    const includeUsage = !!b.stream_options?.include_usage, continuousUsage = includeUsage && !!b.stream_options?.continuous_usage_stats;
    const chunk = (choices: unknown[], u?: ReturnType<typeof usage>) => ({ id: jobs[0]!.id, object: 'text_completion', created, model: modelName, choices, ...(u ? { usage: u } : {}), weight_version: control.version() });
    const sent = jobs.map(({ spec }) => ({
      tokens: 0, text: '', textOffset: 0, chunks: 0, finished: false,
      // Text that may still become the start of a stop string (trimmed from the output) waits until it cannot, as in vLLM.
      holdBack: spec.trimStop && spec.params.stop ? Math.max(...spec.params.stop.map((x) => x.length)) - 1 : 0,
    }));
    /** Choice i's text as far as it is certain after its first `upTo` tokens. */
    const certainText = (i: number, t: Tokens, upTo: number) => {
      // An incomplete UTF-8 character at the end waits for its last byte.
      const text = tokenizer.decode(t.ids.slice(0, upTo)).replace(/\uFFFD+$/, '');
      let cut = text.length - sent[i]!.holdBack;
      if (cut > 0 && cut < text.length && /[\uD800-\uDBFF]/.test(text[cut - 1]!)) cut--; // never split a surrogate pair
      return text.slice(0, Math.max(0, cut));
    };
    /** Send choice i's tokens from the last sent up to `upTo`, with the text that takes what was sent to `text`. */
    const send = (i: number, t: Tokens, upTo: number, text: string, f: Finished | null) => {
      const c = sent[i]!, prompt = jobs[i]!.spec.prompt;
      const ids = t.ids.slice(c.tokens, upTo);
      const delta = text.startsWith(c.text) ? text.slice(c.text.length) : '';
      if (ids.length === 0 && delta === '' && f === null) return;
      sse.send(chunk([{
        index: i, text: delta,
        logprobs: b.logprobs == null ? null : completionLogprobs(ids, t.logprobs.slice(c.tokens, upTo), b.logprobs > 0, asIds, c.textOffset),
        finish_reason: f && vllmFinish(f.result), stop_reason: f && stopReason(f),
        ...(b.return_token_ids ? { prompt_token_ids: c.chunks === 0 ? prompt : null, token_ids: ids } : {}),
        token_versions: t.versions.slice(c.tokens, upTo),
      }], continuousUsage ? usage(prompt.length, upTo) : undefined));
      for (const id of ids) c.textOffset += tokenizer.decode([id]).length;
      c.tokens = upTo;
      c.text += delta;
      c.chunks++;
    };
    return streamJobs(sse, jobs, signal, {
      // A token goes out once the engine step that sampled it is over (setImmediate runs after the
      // step and the promise callbacks of the jobs it ended), so a choice's last token carries its
      // finish_reason; the next token of the same choice sends it earlier if need be.
      token: (i, t) => {
        const c = sent[i]!, upTo = t.ids.length;
        if (upTo - 1 > c.tokens) send(i, t, upTo - 1, certainText(i, t, upTo - 1), null);
        setImmediate(() => {
          if (!c.finished && upTo > c.tokens) send(i, t, upTo, certainText(i, t, upTo), null);
        });
      },
      finished: (i, f) => {
        sent[i]!.finished = true;
        send(i, f.result, f.result.ids.length, f.text, f);
      },
      all: (done) => {
        if (includeUsage) sse.send(chunk([], usage(promptTokens, done.reduce((s, f) => s + f.result.ids.length, 0))));
      },
    });
  }

  async function tokensGenerate(req: IncomingMessage, signal: AbortSignal): Promise<unknown> {
    const b = await parse(req, GenerateRequest);
    checkModel(b.model);
    if (b.stream) throw new HttpError(400, 'stream = true is not supported by agentrl serve inference on /inference/v1/generate; send stream: false');
    const s = b.sampling_params;
    refuseUnsupported(b, '');
    refuseUnsupported(s, 'sampling_params.');
    checkPrompt(b.token_ids, '');
    const maxTokens = budget(s.max_tokens, null, b.token_ids.length, 'sampling_params.max_tokens: ');
    const n = s.n ?? 1;
    const specs = Array.from({ length: n }, (_, i) => {
      const params = samplingParams(s, maxTokens, 'sampling_params.');
      if (params.seed !== undefined && i > 0) params.seed += i;
      return { prompt: b.token_ids, params, trimStop: !s.include_stop_str_in_output };
    });
    const id = b.request_id ?? headerId(req) ?? randomUUID();
    const done = await runAll(specs.map((spec) => ({ id, spec })), signal);
    const asIds = true; // the token-in/token-out route renders tokens as ids
    const choices = done.map((f, index) => {
      const r = f.result;
      const logprobs = s.logprobs == null ? null : {
        content: r.ids.map((t, i) => {
          const entry = { token: tokenText(t, asIds), logprob: r.logprobs[i]!, bytes: null };
          return { ...entry, top_logprobs: s.logprobs! > 0 ? [entry] : [] };
        }),
      };
      return { index, token_ids: r.ids, logprobs, finish_reason: vllmFinish(r), stop_reason: stopReason(f), token_versions: r.versions };
    });
    const completionTokens = done.reduce((sum, f) => sum + f.result.ids.length, 0);
    return {
      request_id: id, choices, prompt_logprobs: null, kv_transfer_params: null,
      usage: { prompt_tokens: b.token_ids.length, completion_tokens: completionTokens, total_tokens: b.token_ids.length + completionTokens },
      weight_version: control.version(),
    };
  }

  // --- SGLang ---------------------------------------------------------------------------------

  function sglangFinish(f: Finished): Record<string, unknown> {
    const r = f.result;
    if (r.finish === 'abort') return { type: 'abort', message: r.abortMessage ?? 'aborted' };
    if (r.finish === 'length') return { type: 'length', length: r.ids.length };
    return { type: 'stop', matched: f.matched };
  }

  async function sglangGenerate(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<unknown> {
    const b = await parse(req, SglangGenerateRequest);
    const s = b.sampling_params ?? {};
    refuseUnsupported(b, '');
    refuseUnsupported(s, 'sampling_params.');
    if ((b.text == null) === (b.input_ids == null)) throw new HttpError(400, 'give exactly one of text and input_ids');
    const batched = Array.isArray(b.text) || (Array.isArray(b.input_ids) && Array.isArray(b.input_ids[0]));
    const prompts: number[][] = b.text != null ? (Array.isArray(b.text) ? b.text : [b.text]).map((t) => encodeText(t)) : batched ? (b.input_ids as number[][]) : [b.input_ids as number[]];
    if (prompts.length === 0) throw new HttpError(400, 'the batch is empty; give at least one prompt');
    const rids = b.rid == null ? prompts.map(() => randomUUID().replace(/-/g, '')) : Array.isArray(b.rid) ? b.rid : [b.rid];
    if (rids.length !== prompts.length) throw new HttpError(400, `rid has ${rids.length} entries for ${prompts.length} prompts`);
    if ((b.top_logprobs_num ?? 0) > 0 && !b.return_logprob) throw new HttpError(400, 'top_logprobs_num needs return_logprob: true');
    const n = s.n ?? 1;
    const jobs: Submission[] = [];
    prompts.forEach((prompt, pi) => {
      const where = prompts.length > 1 ? `prompt ${pi}: ` : '';
      checkPrompt(prompt, where);
      const start = b.logprob_start_len ?? -1;
      if (b.return_logprob && start !== -1 && start < prompt.length) throw new HttpError(400, `${where}logprob_start_len = ${start} asks for prompt logprobs, which agentrl's built-in engine does not compute; use -1 (output tokens only)`);
      if (s.max_new_tokens === 0) throw new HttpError(400, `${where}max_new_tokens = 0 asks for prompt scoring only, which agentrl's built-in engine does not do; give max_new_tokens ≥ 1`);
      const maxTokens = budget(s.max_new_tokens, 128, prompt.length, where);
      for (let i = 0; i < n; i++) {
        const params = samplingParams({ ...s, seed: s.sampling_seed ?? s.seed }, maxTokens, `${where}sampling_params.`);
        if (params.seed !== undefined && i > 0) params.seed += i;
        jobs.push({ id: rids[pi]!, spec: { prompt, params, trimStop: !s.no_stop_trim } });
      }
    });
    const withText = !!b.return_text_in_logprobs;
    /** SGLang's answer for one job: cumulative so far while streaming (finish_reason null), then whole. */
    const answer = (i: number, t: Tokens, text: string, finishReason: Record<string, unknown> | null) => {
      const entry = (k: number) => [t.logprobs[k]!, t.ids[k]!, withText ? tokenizer.decode([t.ids[k]!]) : null];
      return {
        text,
        output_ids: t.ids,
        meta_info: {
          id: jobs[i]!.id,
          finish_reason: finishReason,
          prompt_tokens: jobs[i]!.spec.prompt.length,
          completion_tokens: t.ids.length,
          cached_tokens: 0,
          weight_version: control.version(),
          output_token_versions: t.versions,
          ...(b.return_logprob ? {
            input_token_logprobs: [],
            output_token_logprobs: t.ids.map((_, k) => entry(k)),
            ...((b.top_logprobs_num ?? 0) > 0 ? { input_top_logprobs: [], output_top_logprobs: t.ids.map((_, k) => [entry(k)]) } : {}),
          } : {}),
        },
      };
    };
    const many = batched || n > 1;
    if (!b.stream) {
      const out = (await runAll(jobs, signal)).map((f, i) => answer(i, f.result, f.text, sglangFinish(f)));
      return many ? out : out[0];
    }
    // Streamed as SGLang does by default: one event per sampled token carrying the cumulative text,
    // output_ids and meta_info so far (finish_reason null), then the whole answer as the job ends,
    // then [DONE]; several prompts or n > 1 interleave their events, each marked with its `index`.
    const sse = eventStream(res);
    const send = (i: number, o: Record<string, unknown>) => sse.send(many ? { ...o, index: i } : o);
    return streamJobs(sse, jobs, signal, {
      // Text as far as it is certain: an incomplete UTF-8 character at the end waits for its last byte.
      token: (i, t) => send(i, answer(i, t, tokenizer.decode(t.ids).replace(/\uFFFD+$/, ''), null)),
      finished: (i, f) => send(i, answer(i, f.result, f.text, sglangFinish(f))),
    });
  }

  // --- weights ----------------------------------------------------------------------------------

  /** Load a weight directory and publish it; one update at a time. */
  function updateWeights(b: z.infer<typeof UpdateWeightsRequest>): Promise<{ status: number; body: unknown }> {
    const run = async () => {
      let requested: number | null = null;
      if (b.weight_version != null) {
        const v = typeof b.weight_version === 'number' ? b.weight_version : /^-?\d+$/.test(b.weight_version.trim()) ? Number(b.weight_version) : NaN;
        if (!Number.isSafeInteger(v)) return { status: 400, body: { success: false, message: `weight_version must be an integer (agentrl versions are integers), got ${JSON.stringify(b.weight_version)}`, num_paused_requests: 0 } };
        requested = v;
      }
      let loaded;
      try {
        loaded = await readWeightsDir(b.model_path, model);
      } catch (e) {
        return { status: 400, body: { success: false, message: `failed to load weights from ${b.model_path}: ${(e as Error).message}`, num_paused_requests: 0 } };
      }
      const version = requested ?? loaded.version ?? control.version() + 1;
      const { continuing } = control.updateWeights(loaded.params, version, { abortAll: !!b.abort_all_requests });
      return { status: 200, body: { success: true, message: `loaded ${b.model_path} as weight version ${version}`, num_paused_requests: continuing, weight_version: version } };
    };
    const p = updating.then(run, run);
    updating = p.catch(() => undefined);
    return p;
  }

  // --- routing ----------------------------------------------------------------------------------

  type Handler = (req: IncomingMessage, res: ServerResponse, signal: AbortSignal, query: URLSearchParams) => Promise<unknown>;
  const ok = { status: 'ok' };
  const pauseModeOf = (v: string | null): PauseMode => {
    if (v === null || v === 'abort') return 'abort';
    if (v === 'wait' || v === 'keep') return v;
    throw new HttpError(400, `mode must be abort, wait or keep (got '${v}')`);
  };
  const sleepTags = (level: string | null): MemoryTag[] => {
    if (level !== null && level !== '1' && level !== '2') throw new HttpError(400, `level must be 1 or 2 (got '${level}')`);
    return [...MEMORY_TAGS];
  };
  const wakeTags = (tags: string[]): MemoryTag[] => {
    for (const t of tags) if (!(MEMORY_TAGS as readonly string[]).includes(t)) throw new HttpError(400, `tags must be among ${MEMORY_TAGS.join(', ')} (got '${t}')`);
    return tags.length === 0 ? [...MEMORY_TAGS] : (tags as MemoryTag[]);
  };
  const withStatus = async (p: Promise<{ status: number; body: unknown }>, res: ServerResponse) => {
    const r = await p;
    sendJson(res, r.status, r.body);
    return STREAMED;
  };

  const routes: Record<string, Record<string, Handler>> = {
    // vLLM
    '/v1/completions': { POST: (req, res, signal) => completions(req, res, signal) },
    '/inference/v1/generate': { POST: (req, _res, signal) => tokensGenerate(req, signal) },
    '/v1/models': {
      GET: async () => ({ object: 'list', data: [{ id: modelName, object: 'model', created, owned_by: 'agentrl', root: opts.modelPath ?? modelName, parent: null, max_model_len: ctx, permission: [] }] }),
    },
    '/health': { GET: async () => ({}) },
    '/load': { GET: async () => ({ server_load: control.inFlight() }) },
    '/pause': {
      POST: async (req, _res, _signal, q) => {
        await readBody(req, maxBodyBytes, tooLarge);
        const legacyWait = q.get('wait_for_inflight_requests') === 'true';
        await control.pause(q.get('mode') === null && legacyWait ? 'wait' : pauseModeOf(q.get('mode')));
        return { status: 'paused' };
      },
    },
    '/resume': { POST: async () => (control.resume(), { status: 'resumed' }) },
    '/is_paused': { GET: async () => ({ is_paused: control.isPaused() }) },
    '/abort_requests': {
      POST: async (req) => {
        const b = await parse(req, z.object({ request_ids: z.array(z.string()).nullish() }).passthrough());
        return { status: 'ok', num_aborted: control.abort(b.request_ids ?? undefined) };
      },
    },
    '/sleep': { POST: async (_req, _res, _s, q) => (control.sleep(sleepTags(q.get('level'))), { status: 'sleeping' }) },
    '/wake_up': { POST: async (_req, _res, _s, q) => (control.wakeUp(wakeTags(q.getAll('tags'))), { status: 'awake', is_sleeping: control.isSleeping() }) },
    '/is_sleeping': { GET: async () => ({ is_sleeping: control.isSleeping() }) },
    '/weight_info': { GET: async () => ({ weight_version: control.version() }) },
    // SGLang
    '/generate': { POST: (req, res, signal) => sglangGenerate(req, res, signal) },
    '/pause_generation': {
      POST: async (req) => {
        const b = await parse(req, z.object({ mode: z.enum(['abort', 'retract', 'in_place']).nullish() }).passthrough());
        await control.pause(b.mode === 'retract' || b.mode === 'in_place' ? 'keep' : 'abort');
        return { ...ok, message: 'Generation paused successfully.' };
      },
    },
    '/continue_generation': { POST: async () => (control.resume(), { ...ok, message: 'Generation continued successfully.' }) },
    '/abort_request': {
      POST: async (req) => {
        const b = await parse(req, z.object({ rid: z.string().nullish(), abort_all: z.boolean().nullish() }).passthrough());
        if (!b.abort_all && (b.rid == null || b.rid === '')) throw new HttpError(400, 'give rid (the request to abort) or abort_all: true');
        return { success: true, num_aborted: control.abort(b.abort_all ? undefined : [b.rid!]) };
      },
    },
    '/release_memory_occupation': {
      POST: async (req) => {
        const b = await parse(req, z.object({ tags: tagsSchema }).passthrough());
        control.sleep(b.tags ?? MEMORY_TAGS);
        return { success: true, message: `released ${(b.tags ?? MEMORY_TAGS).join(', ')}` };
      },
    },
    '/resume_memory_occupation': {
      POST: async (req) => {
        const b = await parse(req, z.object({ tags: tagsSchema }).passthrough());
        control.wakeUp(b.tags ?? MEMORY_TAGS);
        return { success: true, message: `resumed ${(b.tags ?? MEMORY_TAGS).join(', ')}` };
      },
    },
    '/get_model_info': {
      GET: async () => ({ model_path: opts.modelPath ?? modelName, tokenizer_path: opts.modelPath ?? modelName, is_generation: true, served_model_name: modelName, weight_version: control.version(), context_length: ctx }),
    },
    '/get_weight_version': { GET: async () => ({ weight_version: control.version() }) },
    // Both
    '/update_weights_from_disk': { POST: async (req, res) => withStatus(updateWeights(await parse(req, UpdateWeightsRequest)), res) },
  };
  const routeList = Object.entries(routes).map(([p, m]) => `${Object.keys(m).join('|')} ${p}`).join(', ');

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = routes[url.pathname];
    const handler = route?.[req.method ?? ''];
    if (!route) return sendError(res, 404, `no route ${req.method} ${url.pathname}; routes: ${routeList}`);
    if (!handler) {
      res.setHeader('allow', Object.keys(route).join(', '));
      return sendError(res, 405, `${req.method} not allowed on ${url.pathname}; use ${Object.keys(route).join(', ')}`);
    }
    // A client that goes away before its answer aborts its generation in the engine.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableEnded) gone.abort(new Error('the client disconnected'));
    });
    handler(req, res, gone.signal, url.searchParams).then(
      (body) => {
        if (body !== STREAMED && !res.headersSent) sendJson(res, 200, body);
      },
      (e: unknown) => {
        if (res.headersSent) return res.end();
        const { status, message } = failure(e);
        if (status === 413) res.setHeader('connection', 'close');
        sendError(res, status, message);
      },
    );
  });

  const url = await listenUrl(server, port, host);
  return {
    url,
    control,
    close: () =>
      new Promise<void>((resolve, reject) => {
        control.abort(undefined, 'the server is shutting down');
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Marks a response the handler already wrote. */
const STREAMED = Symbol('streamed');

function headerId(req: IncomingMessage): string | undefined {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && h !== '' ? h : undefined;
}

/**
 * The agent gateway: an OpenAI-compatible HTTP server in front of any `InferenceEngine`, so an agent
 * written against OpenAI's API (the official `openai` SDK, or any compatible client or framework) is
 * trained unchanged by pointing its base URL here. Every call is recorded token-in-token-out under
 * its rollout id (src/gateway/recorder.ts); the agent reports its reward with one call and the
 * recorded calls become a trajectory for the trainer (src/gateway/workflow.ts).
 *
 *   POST /v1/chat/completions   messages (+ tools) rendered with the model's chat template (or
 *                               DEFAULT_CHAT_TEMPLATE), tool calls parsed from the model's format
 *                               (`toolCallFormat`: Hermes by default, Llama 3 JSON, Mistral) into
 *                               OpenAI `tool_calls`; `stream: true` answers with SSE chunks;
 *                               `logprobs: true` returns each token's behaviour logprob
 *   POST /v1/completions        `prompt` as text or as token ids (used as given)
 *   POST /v1/rollouts/{id}/reward  {"reward": r, "info"?: {...}}: finishes the rollout
 *   GET  /v1/rollouts/{id}      {"id", "calls", "reward", "finished"}
 *   GET  /v1/models, GET /health
 *
 * Which rollout a call belongs to, in order: a path prefix (`baseURL = <gateway>/rollouts/<id>/v1`,
 * Agent Lightning's style: works with any client), the `X-Rollout-Id` header, or the API key:
 * `rollout-<id>` when the gateway has no token, `<token>:<id>` when it has one. A model call without
 * a rollout id is refused (400) unless `requireRolloutId` is false.
 *
 * Security: binds 127.0.0.1 by default. Bound to any other address it refuses to start without a
 * bearer token, and then every request must carry `Authorization: Bearer <token>` (or
 * `<token>:<rolloutId>`), compared in constant time; a missing or wrong token is a 401. Bodies over
 * `maxBodyBytes` get 413; more than `rateLimit` requests per second from one client address get 429
 * with Retry-After.
 *
 * Sampling: OpenAI's `temperature: 0` (greedy) is sampled as top-k 1 at temperature 1, whose
 * behaviour logprobs are 0 under the kept set (recorded as its mask, so the trainer recomputes them
 * exactly). The returned text leaves out the stop token / stop string, as OpenAI does; the recorded
 * completion keeps every sampled token (the model learns to stop). The request's `model` is not
 * checked: the gateway serves one model, whatever name the agent was written with.
 *
 * Streaming (`stream: true`) is incremental: chunks leave as the engine samples tokens (its
 * `onToken` hook), so the first arrives after the first token, not after the whole completion.
 * `StreamedText` holds back what may still change: an incomplete UTF-8 character, a stop token
 * until another token follows it, and an end of the text that could begin a stop string; tool-call
 * text is held by `ToolCallStreamer` and the calls are sent when the completion is done. A call on a
 * finished rollout is refused before the first byte; the call is recorded when the completion is
 * done, and an error after the first byte (a failed generation, a rollout finished meanwhile) ends
 * the stream with an SSE error event, as OpenAI does.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen, readBody, type TooLargeError } from '../core/http-server.ts';
import { ChatTemplate, ChatTemplateError, type ChatMessage } from '../engine/chat-template.ts';
import type { InferenceEngine, SampledCompletion, SampledToken, SamplingParams } from '../engine/types.ts';
import {
  ChatCompletionRequestSchema, CompletionRequestSchema, OpenAIError, RewardRequestSchema, checkUnsupported, contentText, parseRequest,
  type ChatCompletionRequest, type CompletionRequest,
} from './openai-shapes.ts';
import { checkRolloutId, RolloutRecorder, type RecordedCall } from './recorder.ts';
import { DEFAULT_CHAT_TEMPLATE, ToolCallStreamer, type OpenAIToolCall, type ParsedToolCalls } from './tool-calls.ts';
import { toolCallFormat, toolCallFormatError, type ToolCallFormatName } from './tool-formats/index.ts';

export interface GatewayOptions {
  engine: InferenceEngine;
  /** The model's chat template; null/absent: DEFAULT_CHAT_TEMPLATE (ChatML with Hermes tool calls). */
  chatTemplate?: ChatTemplate | null;
  /** Ids that end a generation (loadModel's `stopIds`); default the tokenizer's EOS. */
  stopIds?: number[];
  /** Name reported as `model` (default 'agentrl'). */
  modelName?: string;
  /** Default 127.0.0.1. Any non-loopback address needs `token`. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Bearer token every request must carry; required when `host` is not loopback. */
  token?: string;
  /** Largest request body, bytes (default 4 MiB). */
  maxBodyBytes?: number;
  /** Requests per second per client address (token bucket, burst of one second); 0 = unlimited. Default 0 on loopback, 100 elsewhere. */
  rateLimit?: number;
  /** max_tokens when a request gives none: min(this, what the context has left). Default 1024. */
  defaultMaxTokens?: number;
  /** Where calls are recorded (default a new RolloutRecorder). */
  recorder?: RolloutRecorder;
  /** Refuse model calls without a rollout id (default true). False: such calls are served, not recorded. */
  requireRolloutId?: boolean;
  /**
   * How the model writes tool calls (default 'hermes'). Only the parsing of replies changes:
   * DEFAULT_CHAT_TEMPLATE still asks for, and renders past calls in, the Hermes format, so another
   * format needs the model's own chat template.
   */
  toolCallFormat?: ToolCallFormatName;
}

export interface GatewayServer {
  /** e.g. http://127.0.0.1:8000 (loopback address when bound to a wildcard) */
  url: string;
  host: string;
  port: number;
  recorder: RolloutRecorder;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost', '::ffff:127.0.0.1']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A GatewayOptions problem that must stop the server from starting (names the option and the fix). */
export function gatewayConfigError(o: Pick<GatewayOptions, 'host' | 'token' | 'toolCallFormat'>): string | null {
  const host = o.host ?? '127.0.0.1';
  const formatProblem = o.toolCallFormat !== undefined ? toolCallFormatError(o.toolCallFormat) : null;
  if (formatProblem) return formatProblem;
  if (o.token !== undefined && o.token.length < 16) return `the gateway token must have at least 16 characters (got ${o.token.length}); generate one, e.g. \`openssl rand -hex 24\``;
  if (!isLoopback(host) && o.token === undefined) {
    return `the gateway is bound to ${host}, beyond loopback: it needs a bearer token (--token or AGENTRL_GATEWAY_TOKEN); without one anyone who can reach ${host} could sample from and record into it. Bind 127.0.0.1 to serve this machine only`;
  }
  return null;
}

export async function startGatewayServer(o: GatewayOptions): Promise<GatewayServer> {
  const host = o.host ?? '127.0.0.1';
  const problem = gatewayConfigError(o);
  if (problem) throw new Error(`agent gateway: ${problem}`);
  const engine = o.engine;
  const tokenizer = engine.tokenizer;
  const template = o.chatTemplate ?? ChatTemplate.fromString(DEFAULT_CHAT_TEMPLATE, { source: 'the gateway\'s default ChatML template', specialTokens: { eos_token: tokenizer.tokenString(tokenizer.eosId) } });
  const stopIds = new Set(o.stopIds ?? [tokenizer.eosId]);
  const modelName = o.modelName ?? 'agentrl';
  const maxBody = o.maxBodyBytes ?? 4 << 20;
  const rate = o.rateLimit ?? (isLoopback(host) ? 0 : 100);
  const defaultMaxTokens = o.defaultMaxTokens ?? 1024;
  const recorder = o.recorder ?? new RolloutRecorder();
  const requireRolloutId = o.requireRolloutId ?? true;
  const toolFormat = toolCallFormat(o.toolCallFormat ?? 'hermes');
  const tokenDigest = o.token !== undefined ? sha256(o.token) : null;
  const limiter = rate > 0 ? new RateLimiter(rate) : null;

  /** The token check, and the rollout id the API key carries (if any). */
  function authenticate(req: IncomingMessage): string | undefined {
    const auth = req.headers.authorization;
    const key = auth && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '').trim() : headerValue(req, 'x-api-key');
    if (tokenDigest) {
      if (!key) throw new OpenAIError(401, 'this gateway requires a bearer token: send Authorization: Bearer <token> (the OpenAI SDK does with apiKey: <token>, or <token>:<rolloutId>)', null, 'authentication_error', 'invalid_api_key', { 'www-authenticate': 'Bearer' });
      const colon = key.indexOf(':');
      const given = colon >= 0 ? key.slice(0, colon) : key;
      if (!timingSafeEqual(sha256(given), tokenDigest)) throw new OpenAIError(401, 'invalid gateway token', null, 'authentication_error', 'invalid_api_key', { 'www-authenticate': 'Bearer' });
      return colon >= 0 ? key.slice(colon + 1) : undefined;
    }
    return key?.startsWith('rollout-') ? key.slice('rollout-'.length) : undefined;
  }

  /** The rollout id of a model call from the path prefix, the X-Rollout-Id header or the API key; they must agree. */
  function rolloutIdOf(req: IncomingMessage, fromPath: string | undefined, fromKey: string | undefined): string | undefined {
    const fromHeader = headerValue(req, 'x-rollout-id');
    const given = [fromPath, fromHeader, fromKey].filter((x): x is string => x !== undefined && x !== '');
    if (given.some((g) => g !== given[0])) throw new OpenAIError(400, `the rollout id is given differently by the path, the X-Rollout-Id header and the API key (${given.join(' / ')}); give it once`, 'rollout_id');
    return given[0] !== undefined ? checkRolloutId(given[0]) : undefined;
  }

  function requireId(id: string | undefined): string | undefined {
    if (id === undefined && requireRolloutId) {
      throw new OpenAIError(400, 'no rollout id: set baseURL to <gateway>/rollouts/<id>/v1, or send the X-Rollout-Id header, or use the API key ' + (tokenDigest ? '<token>:<id>' : 'rollout-<id>'), 'rollout_id');
    }
    return id;
  }

  // -------------------------------------------------------------------------------------------
  // Sampling shared by both endpoints

  interface Generated {
    c: SampledCompletion;
    /** Ids whose text is returned (the stop token left out). */
    visible: number[];
    text: string;
    finish: 'stop' | 'length';
  }

  function samplingParams(r: ChatCompletionRequest | CompletionRequest, promptLen: number, maxTokensField: number | null | undefined, fallbackMaxTokens = defaultMaxTokens): SamplingParams {
    const ctx = engine.contextLength ?? Infinity;
    if (promptLen >= ctx) throw new OpenAIError(400, `the prompt has ${promptLen} tokens; the model's context holds ${ctx} (prompt + completion): shorten the conversation`, 'messages' in r ? 'messages' : 'prompt', 'invalid_request_error', 'context_length_exceeded');
    const room = ctx - promptLen;
    const param = 'messages' in r && r.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
    if (maxTokensField != null && maxTokensField > room) {
      throw new OpenAIError(400, `${param} is ${maxTokensField} but the prompt has ${promptLen} tokens and the context holds ${ctx}: at most ${room} tokens are left`, param, 'invalid_request_error', 'context_length_exceeded');
    }
    const greedy = r.temperature === 0;
    const topK = greedy ? 1 : r.top_k != null && r.top_k > 0 ? r.top_k : undefined;
    const stop = r.stop == null ? undefined : typeof r.stop === 'string' ? [r.stop] : r.stop;
    return {
      maxTokens: maxTokensField ?? Math.min(fallbackMaxTokens, room),
      temperature: greedy ? 1 : r.temperature ?? 1,
      ...(r.top_p != null && r.top_p < 1 ? { topP: r.top_p } : {}),
      ...(topK !== undefined ? { topK } : {}),
      ...(stop && stop.length > 0 ? { stop } : {}),
      ...(r.seed != null ? { seed: r.seed } : {}),
      stopIds: [...stopIds],
    };
  }

  async function generate(prompt: number[], params: SamplingParams, signal: AbortSignal, onToken?: (t: SampledToken) => void): Promise<Generated> {
    let c: SampledCompletion;
    try {
      c = await engine.generate(prompt, { ...params, signal, ...(onToken ? { onToken } : {}) });
    } catch (e) {
      if (signal.aborted) throw new ClientGone();
      throw new OpenAIError(500, `generation failed: ${(e as Error).message}`);
    }
    const last = c.ids[c.ids.length - 1];
    const visible = c.finishReason !== 'length' && last !== undefined && stopIds.has(last) ? c.ids.slice(0, -1) : c.ids;
    let text = tokenizer.decode(visible);
    // A stop string ends the text when no stop token did; OpenAI leaves it out of the answer.
    if (visible.length === c.ids.length && c.finishReason === 'stop') {
      const s = params.stop?.find((x) => text.endsWith(x));
      if (s) text = text.slice(0, text.length - s.length);
    }
    return { c, visible, text, finish: c.finishReason === 'length' ? 'length' : 'stop' };
  }

  /** Refuse now what `recordCall` would refuse later: a streamed call must fail before its first byte. */
  function checkRecordable(rolloutId: string | undefined): void {
    if (rolloutId === undefined) return;
    const rec = recorder.get(rolloutId);
    if (rec && rec.reward !== null) throw new OpenAIError(409, `rollout ${rolloutId} is finished (its reward was reported); start a new rollout id for new calls`, 'rollout_id');
  }

  /**
   * Generate with chunks sent as tokens are sampled. `onTokens(newlyVisible, piece)` runs for each
   * sampled token: the visible tokens it made certain (0–2: a stop token is held until another
   * follows) and the text that became safe to send; the SSE stream opens before the first call.
   * Returns the finished generation and the stream (opened if no token came).
   */
  async function streamGeneration(
    res: ServerResponse, prompt: number[], params: SamplingParams, signal: AbortSignal, rolloutId: string | undefined,
    onStart: (sse: Sse) => void, onTokens: (sse: Sse, tokens: SampledToken[], piece: string, text: StreamedText) => void,
  ): Promise<{ g: Generated; sse: Sse; text: StreamedText }> {
    checkRecordable(rolloutId);
    const text = new StreamedText((ids) => tokenizer.decode(ids), stopIds, params.stop ?? []);
    let sse: Sse | null = null;
    const open = (): Sse => {
      if (!sse) {
        sse = startSse(res);
        onStart(sse);
      }
      return sse;
    };
    const g = await generate(prompt, params, signal, (t) => {
      if (signal.aborted || res.destroyed) return; // the client is gone: generation is being aborted
      const s = open();
      const { tokens, piece } = text.push(t);
      if (tokens.length > 0 || piece) onTokens(s, tokens, piece, text);
    });
    return { g, sse: open(), text };
  }

  function recordCall(rolloutId: string | undefined, g: Generated, endpoint: RecordedCall['endpoint'], prompt: number[], responseId: string, parsed?: ParsedToolCalls): void {
    if (rolloutId === undefined) return;
    const toolCalls = parsed?.toolCalls.length ?? 0;
    recorder.record(rolloutId, {
      endpoint, promptIds: prompt, ids: g.c.ids, logprobs: g.c.logprobs, versions: g.c.versions,
      ...(g.c.masks && g.c.masks.some((m) => m) ? { masks: g.c.masks } : {}),
      temperature: g.c.temperature, finishReason: toolCalls > 0 ? 'tool_calls' : g.finish, text: g.text, toolCalls,
      ...(parsed?.malformed ? { malformedToolCall: parsed.malformed } : {}), responseId,
    });
  }

  function tokenTexts(ids: readonly number[]): string[] {
    return ids.map((id) => tokenizer.decode([id]));
  }

  function chatLogprobs(ids: readonly number[], logprobs: readonly number[]): { token: string; logprob: number; bytes: number[]; top_logprobs: [] }[] {
    return tokenTexts(ids).map((token, i) => ({ token, logprob: logprobs[i]!, bytes: [...Buffer.from(token, 'utf8')], top_logprobs: [] }));
  }

  function usage(promptLen: number, c: SampledCompletion) {
    return { prompt_tokens: promptLen, completion_tokens: c.ids.length, total_tokens: promptLen + c.ids.length };
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  async function chatCompletions(req: IncomingMessage, res: ServerResponse, body: unknown, rolloutId: string | undefined, signal: AbortSignal): Promise<void> {
    const r = parseRequest(ChatCompletionRequestSchema, body, 'chat completion');
    checkUnsupported(r);
    const useTools = (r.tools?.length ?? 0) > 0 && r.tool_choice !== 'none';
    const messages: ChatMessage[] = r.messages.map((m, i) => {
      const where = `messages[${i}]`;
      const text = contentText(m.content as never, where);
      const role = m.role === 'developer' ? 'system' : m.role;
      if (role !== 'assistant' && text === null) throw new OpenAIError(400, `${where}.content is required for role '${m.role}'`, `${where}.content`);
      return { ...m, role, content: text };
    });
    let prompt: number[];
    try {
      prompt = tokenizer.encode(template.render(messages, { addGenerationPrompt: true, tools: useTools ? (r.tools as never) : null }));
    } catch (e) {
      if (e instanceof ChatTemplateError) throw new OpenAIError(400, `the chat template cannot render these messages: ${e.message}`, 'messages');
      throw e;
    }
    const params = samplingParams(r, prompt.length, r.max_completion_tokens ?? r.max_tokens);
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const wantLogprobs = r.logprobs === true;

    if (r.stream) {
      const streamer = new ToolCallStreamer(undefined, toolFormat);
      const chunk = (sse: Sse, delta: Record<string, unknown>, more: Record<string, unknown> = {}) =>
        sse.send({ id, object: 'chat.completion.chunk', created, model: modelName, choices: [{ index: 0, delta, logprobs: null, finish_reason: null, ...more }] });
      const logprobsOf = (tokens: readonly { id: number; logprob: number }[]) => ({ logprobs: { content: chatLogprobs(tokens.map((t) => t.id), tokens.map((t) => t.logprob)) } });
      let reported = 0; // visible tokens whose logprobs were sent
      const { g, sse, text } = await streamGeneration(res, prompt, params, signal, rolloutId,
        (sse) => chunk(sse, { role: 'assistant', content: '' }),
        (sse, tokens, piece, text) => {
          const content = useTools ? (piece ? streamer.push(text.text).content : undefined) : piece;
          reported += tokens.length;
          if (wantLogprobs && tokens.length > 0) chunk(sse, { content: content ?? '' }, logprobsOf(tokens));
          else if (content) chunk(sse, { content });
        });
      const parsed = useTools ? toolFormat.parse(g.text) : undefined;
      recordCall(rolloutId, g, 'chat.completions', prompt, id, parsed);
      // The rest: tokens not yet certain when sampled (none, unless a stop token was not the last).
      if (wantLogprobs && reported < g.visible.length) {
        const rest = g.visible.slice(reported).map((tid, k) => ({ id: tid, logprob: g.c.logprobs[reported + k]! }));
        chunk(sse, { content: '' }, logprobsOf(rest));
      }
      let finish: string = g.finish;
      if (useTools) {
        const end = streamer.finish(g.text);
        if (end.content) chunk(sse, { content: end.content });
        if (end.toolCalls) {
          finish = 'tool_calls';
          end.toolCalls.forEach((tc, index) => chunk(sse, { tool_calls: [{ index, id: tc.id, type: 'function', function: tc.function }] }));
        }
      } else {
        const rest = g.text.slice(text.text.length); // text.text is a prefix of g.text
        if (rest) chunk(sse, { content: rest });
      }
      const extras = returnTokenIds(body) ? { prompt_token_ids: prompt, token_ids: g.c.ids } : {};
      chunk(sse, {}, { finish_reason: finish, ...extras });
      if (r.stream_options?.include_usage) sse.send({ id, object: 'chat.completion.chunk', created, model: modelName, choices: [], usage: usage(prompt.length, g.c) });
      sse.end();
      return;
    }

    const g = await generate(prompt, params, signal);
    const extras = returnTokenIds(body) ? { prompt_token_ids: prompt, token_ids: g.c.ids } : {};
    const parsed = useTools ? toolFormat.parse(g.text) : undefined;
    recordCall(rolloutId, g, 'chat.completions', prompt, id, parsed);
    const toolCalls: OpenAIToolCall[] = parsed?.toolCalls ?? [];
    const message: Record<string, unknown> = { role: 'assistant', content: parsed ? parsed.content : g.text, refusal: null };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    sendJson(res, 200, {
      id, object: 'chat.completion', created, model: modelName,
      choices: [{
        index: 0, message, finish_reason: toolCalls.length > 0 ? 'tool_calls' : g.finish,
        logprobs: wantLogprobs ? { content: chatLogprobs(g.visible, g.c.logprobs) } : null, ...extras,
      }],
      usage: usage(prompt.length, g.c),
    });
  }

  async function completions(_req: IncomingMessage, res: ServerResponse, body: unknown, rolloutId: string | undefined, signal: AbortSignal): Promise<void> {
    const r = parseRequest(CompletionRequestSchema, body, 'completion');
    checkUnsupported(r);
    const p = Array.isArray(r.prompt) && r.prompt.length === 1 && (typeof r.prompt[0] === 'string' || Array.isArray(r.prompt[0])) ? r.prompt[0]! : r.prompt;
    let prompt: number[];
    if (typeof p === 'string') {
      if (p === '') throw new OpenAIError(400, 'prompt is empty', 'prompt');
      prompt = tokenizer.encode(p);
    } else {
      prompt = p as number[];
      const V = tokenizer.vocabSize;
      const bad = prompt.findIndex((id) => id >= V);
      if (bad >= 0) throw new OpenAIError(400, `prompt[${bad}]: token id ${prompt[bad]} is outside the vocabulary [0, ${V})`, `prompt[${bad}]`);
    }
    // OpenAI's completions default is 16 tokens.
    const params = samplingParams(r, prompt.length, r.max_tokens, 16);
    const id = `cmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const wantLogprobs = r.logprobs != null;
    /** OpenAI's completions logprobs of `ids`, the first of which starts at character `offset` (offsets add up the tokens' own texts). */
    const lp = (ids: readonly number[], logprobs: readonly number[], offset: number) => {
      const texts = tokenTexts(ids);
      return {
        tokens: texts, token_logprobs: [...logprobs], top_logprobs: null,
        text_offset: texts.map((t) => ((offset += t.length), offset - t.length)),
      };
    };
    if (r.stream) {
      const chunk = (sse: Sse, text: string, more: Record<string, unknown> = {}) => sse.send({ id, object: 'text_completion', created, model: modelName, choices: [{ index: 0, text, logprobs: null, finish_reason: null, ...more }] });
      let reported = 0, offset = 0;
      const logprobsOf = (tokens: readonly { id: number; logprob: number }[]) => {
        const l = lp(tokens.map((t) => t.id), tokens.map((t) => t.logprob), offset);
        offset += l.tokens.join('').length;
        return { logprobs: l };
      };
      const { g, sse, text } = await streamGeneration(res, prompt, params, signal, rolloutId, () => undefined, (sse, tokens, piece) => {
        reported += tokens.length;
        if (wantLogprobs && tokens.length > 0) chunk(sse, piece, logprobsOf(tokens));
        else if (piece) chunk(sse, piece);
      });
      recordCall(rolloutId, g, 'completions', prompt, id);
      if (wantLogprobs && reported < g.visible.length) {
        chunk(sse, '', logprobsOf(g.visible.slice(reported).map((tid, k) => ({ id: tid, logprob: g.c.logprobs[reported + k]! }))));
      }
      const rest = g.text.slice(text.text.length);
      if (rest) chunk(sse, rest);
      const extras = returnTokenIds(body) ? { prompt_token_ids: prompt, token_ids: g.c.ids } : {};
      chunk(sse, '', { finish_reason: g.finish, ...extras });
      if (r.stream_options?.include_usage) sse.send({ id, object: 'text_completion', created, model: modelName, choices: [], usage: usage(prompt.length, g.c) });
      sse.end();
      return;
    }
    const g = await generate(prompt, params, signal);
    recordCall(rolloutId, g, 'completions', prompt, id);
    const extras = returnTokenIds(body) ? { prompt_token_ids: prompt, token_ids: g.c.ids } : {};
    sendJson(res, 200, {
      id, object: 'text_completion', created, model: modelName,
      choices: [{ index: 0, text: g.text, logprobs: wantLogprobs ? lp(g.visible, g.c.logprobs.slice(0, g.visible.length), 0) : null, finish_reason: g.finish, ...extras }],
      usage: usage(prompt.length, g.c),
    });
  }

  // -------------------------------------------------------------------------------------------
  // Routing

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (e instanceof ClientGone) return;
      const err = e instanceof OpenAIError ? e : new OpenAIError(500, `internal error: ${e instanceof Error ? e.message : String(e)}`);
      if (res.headersSent) {
        // Mid-stream (SSE): report the error as an event, as OpenAI does, and end.
        if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
        return;
      }
      for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
      if (err.status === 413) res.setHeader('connection', 'close');
      sendJson(res, err.status, err.body());
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    let path = url.pathname.replace(/\/+$/, '') || '/';
    if (path === '/health' && req.method === 'GET') return sendJson(res, 200, { status: 'ok', model: modelName, version: engine.version() });
    if (limiter) {
      const wait = limiter.take(req.socket.remoteAddress ?? '?');
      if (wait > 0) throw new OpenAIError(429, `rate limit: at most ${rate} requests per second from one client; retry after ${wait} s`, null, 'rate_limit_error', 'rate_limit_exceeded', { 'retry-after': String(wait) });
    }
    const fromKey = authenticate(req);
    let fromPath: string | undefined;
    const prefixed = /^\/rollouts\/([^/]+)(\/.*)$/.exec(path);
    if (prefixed) {
      fromPath = checkRolloutId(decodeURIComponent(prefixed[1]!));
      path = prefixed[2]!;
    }
    const method = req.method ?? 'GET';
    const rollout = /^\/v1\/rollouts\/([^/]+)(\/reward)?$/.exec(path);
    if (rollout) {
      const id = checkRolloutId(decodeURIComponent(rollout[1]!));
      if (rollout[2]) {
        if (method !== 'POST') throw methodNotAllowed(res, method, path, 'POST');
        const r = parseRequest(RewardRequestSchema, await readJson(req, maxBody), 'reward');
        const rec = recorder.setReward(id, r.reward, r.info);
        return sendJson(res, 200, { id, reward: rec.reward, calls: rec.calls.length });
      }
      if (method !== 'GET') throw methodNotAllowed(res, method, path, 'GET');
      const rec = recorder.get(id);
      if (!rec) throw new OpenAIError(404, `no rollout ${id}`, 'rollout_id');
      return sendJson(res, 200, { id, calls: rec.calls.length, reward: rec.reward, finished: rec.reward !== null });
    }
    if (path === '/v1/models') {
      if (method !== 'GET') throw methodNotAllowed(res, method, path, 'GET');
      return sendJson(res, 200, { object: 'list', data: [{ id: modelName, object: 'model', created: 0, owned_by: 'agentrl' }] });
    }
    const endpoint = path === '/v1/chat/completions' ? chatCompletions : path === '/v1/completions' ? completions : null;
    if (!endpoint) throw new OpenAIError(404, `no route ${method} ${path}; routes: POST /v1/chat/completions, POST /v1/completions, POST /v1/rollouts/{id}/reward, GET /v1/rollouts/{id}, GET /v1/models, GET /health`);
    if (method !== 'POST') throw methodNotAllowed(res, method, path, 'POST');
    const rolloutId = requireId(rolloutIdOf(req, fromPath, fromKey));
    const body = await readJson(req, maxBody);
    // A client that disconnects aborts its generation (and nothing is recorded).
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort(new Error('client disconnected'));
    });
    await endpoint(req, res, body, rolloutId, ac.signal);
  }

  await listen(server, o.port ?? 8000, host);
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`, host, port, recorder,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Thrown when the client went away mid-generation: there is nobody to answer. */
class ClientGone extends Error {}

/** Per-client token buckets: `rate` tokens per second, at most `rate` stored. */
class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly rate: number, private readonly now: () => number = () => performance.now()) {}

  /** 0 when the request may pass, else the seconds to wait (≥ 1, for Retry-After). */
  take(client: string): number {
    const t = this.now();
    const b = this.buckets.get(client) ?? { tokens: this.rate, at: t };
    b.tokens = Math.min(this.rate, b.tokens + ((t - b.at) / 1000) * this.rate);
    b.at = t;
    this.buckets.set(client, b);
    if (this.buckets.size > 10_000) this.prune(t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }

  /** Forget clients whose bucket has refilled (they would start full anyway). */
  private prune(t: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * this.rate >= this.rate) this.buckets.delete(k);
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** vLLM's extension: `return_token_ids: true` adds `prompt_token_ids` and `token_ids` to the choice. */
function returnTokenIds(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).return_token_ids === true;
}

function methodNotAllowed(res: ServerResponse, method: string, path: string, allowed: string): OpenAIError {
  res.setHeader('allow', allowed);
  return new OpenAIError(405, `${method} is not allowed on ${path}; use ${allowed}`);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

interface Sse {
  send(x: unknown): void;
  end(): void;
}

function startSse(res: ServerResponse): Sse {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  // Sent at once, not batched with later writes (Nagle): a chunk is useful the moment it exists.
  res.socket?.setNoDelay(true);
  return {
    send: (x) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(x)}\n\n`);
    },
    end: () => res.end('data: [DONE]\n\n'),
  };
}

/**
 * The text of a completion being streamed, as far as it is certain: the text released is always a
 * prefix of the final answer's text (the completion decoded, the stop token or stop string cut).
 * Held back until certain:
 *   - a stop token (in `stopIds`), until another token follows it: the answer leaves out the last one;
 *   - an incomplete UTF-8 character at the end (it decodes to U+FFFD until its last byte arrives);
 *   - the longest end of the text that is the start of a stop string (≤ the longest stop string's
 *     length): the answer leaves out a stop string that ends the completion.
 * The ids are decoded whole at each token (decoding a suffix alone can differ at its first token).
 */
export class StreamedText {
  /** Ids whose text is part of the answer. */
  readonly visible: number[] = [];
  /** The text released so far. */
  text = '';
  private held: SampledToken | null = null;

  constructor(
    private readonly decode: (ids: readonly number[]) => string,
    private readonly stopIds: ReadonlySet<number>,
    private readonly stops: readonly string[],
  ) {}

  /** Add the next sampled token: the tokens it made visible (0–2) and the text it released. */
  push(t: SampledToken): { tokens: SampledToken[]; piece: string } {
    const tokens: SampledToken[] = [];
    if (this.held) tokens.push(this.held);
    this.held = null;
    if (this.stopIds.has(t.id)) this.held = t;
    else tokens.push(t);
    if (tokens.length === 0) return { tokens, piece: '' };
    for (const x of tokens) this.visible.push(x.id);
    const stable = this.decode(this.visible).replace(/\uFFFD+$/, '');
    const end = stable.length - stopStringStart(stable, this.stops);
    // A decoder that rewrites earlier text (e.g. clean-up of spaces) releases nothing until it agrees again.
    if (end <= this.text.length || !stable.startsWith(this.text)) return { tokens, piece: '' };
    const piece = stable.slice(this.text.length, end);
    this.text += piece;
    return { tokens, piece };
  }
}

/** Length of the longest end of `text` that is the start (or the whole) of one of `stops`. */
export function stopStringStart(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length, text.length); n > best; n--) {
      if (text.endsWith(s.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

/** The gateway's 413, OpenAI-shaped. */
const tooLarge: TooLargeError = (maxBytes, declared) =>
  new OpenAIError(413, declared !== undefined
    ? `request body of ${declared} bytes is larger than the gateway's limit of ${maxBytes} bytes (--max-body)`
    : `request body is larger than the gateway's limit of ${maxBytes} bytes (--max-body)`, null, 'invalid_request_error', 'request_too_large');

async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const text = await readBody(req, maxBytes, tooLarge);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new OpenAIError(400, `request body is not valid JSON (${(e as Error).message})`, null, 'invalid_request_error', 'invalid_json');
  }
}

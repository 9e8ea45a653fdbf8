/**
 * `agentrl serve inference`, in process on 127.0.0.1:0 over a tiny built-in model: the request and
 * response shapes of vLLM's /v1/completions and /inference/v1/generate and SGLang's /generate, the
 * info endpoints, and the errors (400 with the engine's own messages, 404, 405, 413). Samples equal
 * those of an in-process BuiltinEngine with the same weights and seed (ids exactly, logprobs ≤ 1e-6).
 */
import { describe, expect, it } from 'vitest';
import { get, maxAbsDiff, post, PROMPT, referenceEngine, serveTiny, serveTinyForFile } from './fixtures/serve-inference/setup.ts';

const s = serveTinyForFile(3);

describe('vLLM /v1/completions', () => {
  it('token-id prompt with return_token_ids and logprobs: the documented shape, and the in-process engine\'s ids and logprobs for the same seed', async () => {
    const r = await post(`${s.url}/v1/completions`, { model: 'tiny', prompt: PROMPT, max_tokens: 12, temperature: 0.8, top_p: 0.9, top_k: 20, seed: 42, logprobs: 1, return_token_ids: true });
    expect(r.status).toBe(200);
    const ref = await referenceEngine(s.model.params).generate(PROMPT, { maxTokens: 12, temperature: 0.8, topP: 0.9, topK: 20, seed: 42 });
    const c = r.json.choices[0];
    expect(r.json.object).toBe('text_completion');
    expect(r.json.model).toBe('tiny');
    expect(r.json.choices).toHaveLength(1);
    expect(c.token_ids).toEqual(ref.ids);
    expect(c.prompt_token_ids).toEqual(PROMPT);
    expect(maxAbsDiff(c.logprobs.token_logprobs, ref.logprobs)).toBeLessThanOrEqual(1e-6);
    expect(c.logprobs.tokens).toEqual(ref.ids.map(String));
    expect(c.logprobs.top_logprobs[0]).toEqual({ [String(ref.ids[0])]: c.logprobs.token_logprobs[0] });
    // text_offset: where each token starts in the concatenation of the token texts.
    const lens = ref.ids.map((id) => String(id).length);
    expect(c.logprobs.text_offset).toEqual(lens.map((_, i) => lens.slice(0, i).reduce((a, b) => a + b, 0)));
    expect(c.text).toBe(ref.ids.join(' '));
    expect(c.finish_reason).toBe('length');
    expect(c.stop_reason).toBeNull();
    expect(c.token_versions).toEqual(ref.ids.map(() => 0));
    expect(r.json.weight_version).toBe(0);
    expect(r.json.usage).toEqual({ prompt_tokens: 4, completion_tokens: 12, total_tokens: 16 });
  });

  it('text prompts, lists of prompts, n samples, return_tokens_as_token_ids; without return_token_ids there are no ids', async () => {
    const r = await post(`${s.url}/v1/completions`, { prompt: ['5 9 2', '1 2'], n: 2, max_tokens: 3, seed: 1, logprobs: 0, return_tokens_as_token_ids: true });
    expect(r.status).toBe(200);
    expect(r.json.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2, 3]);
    const ref = referenceEngine(s.model.params);
    const first = await ref.generate([5, 9, 2], { maxTokens: 3, seed: 1 });
    const second = await ref.generate([5, 9, 2], { maxTokens: 3, seed: 2 });
    expect(r.json.choices[0].logprobs.tokens).toEqual(first.ids.map((id) => `token_id:${id}`));
    expect(r.json.choices[0].logprobs.top_logprobs).toBeNull(); // logprobs: 0 = the sampled token's only
    expect(r.json.choices[1].logprobs.tokens).toEqual(second.ids.map((id) => `token_id:${id}`));
    expect(r.json.choices[0].token_ids).toBeUndefined();
    expect(r.json.usage.prompt_tokens).toBe(2 * (3 + 2));
  });

  it('stop strings end the completion (trimmed from the text unless include_stop_str_in_output) and are reported as stop_reason; stop_token_ids too', async () => {
    const free = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 30, seed: 7, return_token_ids: true });
    const ids: number[] = free.json.choices[0].token_ids;
    const k = 4, stopId = ids[k]!; // a token that occurs at position k (maybe earlier too)
    const firstAt = ids.findIndex((t) => t === stopId);
    const byId = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 30, seed: 7, stop_token_ids: [stopId], return_token_ids: true });
    expect(byId.json.choices[0].token_ids).toEqual(ids.slice(0, firstAt + 1));
    expect(byId.json.choices[0].finish_reason).toBe('stop');
    expect(byId.json.choices[0].stop_reason).toBe(stopId);
    const stop = ` ${stopId}`; // the text is "a b c": a space before every token but the first
    const at = ids.findIndex((t, i) => i > 0 && ids.slice(0, i + 1).join(' ').endsWith(stop));
    const byText = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 30, seed: 7, stop: [stop], return_token_ids: true });
    const c = byText.json.choices[0];
    expect(c.token_ids).toEqual(ids.slice(0, at + 1));
    expect(c.stop_reason).toBe(stop);
    expect(c.text).toBe(ids.slice(0, at + 1).join(' ').slice(0, -stop.length));
    const kept = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 30, seed: 7, stop, include_stop_str_in_output: true });
    expect(kept.json.choices[0].text).toBe(ids.slice(0, at + 1).join(' '));
  });

  it('temperature 0 is greedy: every logprob is 0 and two seeds give the same tokens', async () => {
    const a = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 6, temperature: 0, seed: 1, logprobs: 0, return_token_ids: true });
    const b = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 6, temperature: 0, seed: 2, return_token_ids: true });
    expect(a.json.choices[0].token_ids).toEqual(b.json.choices[0].token_ids);
    expect(a.json.choices[0].logprobs.token_logprobs).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('vLLM /inference/v1/generate', () => {
  it('token ids in, token ids + logprobs.content + finish_reason out, matching the in-process engine', async () => {
    const r = await post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, request_id: 'gen-1', sampling_params: { max_tokens: 8, temperature: 1.3, seed: 5, logprobs: 0 } });
    expect(r.status).toBe(200);
    const ref = await referenceEngine(s.model.params).generate(PROMPT, { maxTokens: 8, temperature: 1.3, seed: 5 });
    expect(r.json.request_id).toBe('gen-1');
    const c = r.json.choices[0];
    expect(c.index).toBe(0);
    expect(c.token_ids).toEqual(ref.ids);
    expect(maxAbsDiff(c.logprobs.content.map((x: { logprob: number }) => x.logprob), ref.logprobs)).toBeLessThanOrEqual(1e-6);
    expect(c.logprobs.content[0]).toEqual({ token: `token_id:${ref.ids[0]}`, logprob: c.logprobs.content[0].logprob, bytes: null, top_logprobs: [] });
    expect(c.finish_reason).toBe('length');
    expect(c.token_versions).toEqual(ref.ids.map(() => 0));
    expect(r.json.weight_version).toBe(0);
    const noLp = await post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, sampling_params: { max_tokens: 2 } });
    expect(noLp.json.choices[0].logprobs).toBeNull();
  });

  it('without max_tokens it generates up to the context length', async () => {
    const long = Array.from({ length: 505 }, (_, i) => i % 40);
    const r = await post(`${s.url}/inference/v1/generate`, { token_ids: long, sampling_params: { seed: 1 } });
    expect(r.json.choices[0].token_ids).toHaveLength(512 - 505);
    expect(r.json.choices[0].finish_reason).toBe('length');
  });
});

describe('SGLang /generate', () => {
  it('input_ids + sampling_params + return_logprob: output_ids, meta_info with [logprob, id, null] triples, finish_reason and weight_version', async () => {
    const r = await post(`${s.url}/generate`, { input_ids: PROMPT, rid: 'sg-1', sampling_params: { max_new_tokens: 10, temperature: 0.7, top_k: -1, seed: 9 }, return_logprob: true, logprob_start_len: -1 });
    expect(r.status).toBe(200);
    const ref = await referenceEngine(s.model.params).generate(PROMPT, { maxTokens: 10, temperature: 0.7, seed: 9 });
    expect(r.json.output_ids).toEqual(ref.ids);
    expect(r.json.text).toBe(ref.ids.join(' '));
    const m = r.json.meta_info;
    expect(m.id).toBe('sg-1');
    expect(m.finish_reason).toEqual({ type: 'length', length: 10 });
    expect(m.prompt_tokens).toBe(4);
    expect(m.completion_tokens).toBe(10);
    expect(m.weight_version).toBe(0);
    expect(m.output_token_versions).toEqual(ref.ids.map(() => 0));
    expect(m.output_token_logprobs.map((x: unknown[]) => x[1])).toEqual(ref.ids);
    expect(m.output_token_logprobs.every((x: unknown[]) => x.length === 3 && x[2] === null)).toBe(true);
    expect(maxAbsDiff(m.output_token_logprobs.map((x: number[]) => x[0]), ref.logprobs)).toBeLessThanOrEqual(1e-6);
  });

  it('stop_token_ids give finish_reason {type: stop, matched: id}; text prompts and batches; stream sends an event per token, the whole answer, then [DONE]', async () => {
    const free = await post(`${s.url}/generate`, { input_ids: PROMPT, sampling_params: { max_new_tokens: 20, seed: 3 } });
    const stopId = free.json.output_ids[2];
    const stopped = await post(`${s.url}/generate`, { input_ids: PROMPT, sampling_params: { max_new_tokens: 20, seed: 3, stop_token_ids: [stopId] } });
    expect(stopped.json.meta_info.finish_reason).toEqual({ type: 'stop', matched: stopId });
    expect(stopped.json.output_ids.at(-1)).toBe(stopId);
    expect(stopped.json.meta_info.output_token_logprobs).toBeUndefined();
    const batch = await post(`${s.url}/generate`, { text: ['5 9 2 17', '1 2'], rid: ['a', 'b'], sampling_params: { max_new_tokens: 3, seed: 3 } });
    expect(batch.json).toHaveLength(2);
    expect(batch.json[0].output_ids).toEqual(free.json.output_ids.slice(0, 3));
    expect(batch.json.map((o: { meta_info: { id: string } }) => o.meta_info.id)).toEqual(['a', 'b']);
    const res = await fetch(`${s.url}/generate`, { method: 'POST', body: JSON.stringify({ input_ids: PROMPT, stream: true, sampling_params: { max_new_tokens: 3, seed: 3 } }) });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events).toHaveLength(5);
    const data = events.slice(0, 4).map((e) => JSON.parse(e.slice('data: '.length)));
    // SGLang's default stream: cumulative output_ids / text, finish_reason null until the last event.
    expect(data.map((d) => d.output_ids)).toEqual([1, 2, 3, 3].map((n) => free.json.output_ids.slice(0, n)));
    expect(data.map((d) => d.meta_info.finish_reason)).toEqual([null, null, null, { type: 'length', length: 3 }]);
    expect(data[1].text).toBe(free.json.output_ids.slice(0, 2).join(' '));
    expect(events[4]).toBe('data: [DONE]');
  });
});

describe('info endpoints', () => {
  it('/health, /v1/models, /get_model_info, /get_weight_version, /weight_info, /load, /is_paused, /is_sleeping', async () => {
    expect((await get(`${s.url}/health`)).status).toBe(200);
    const models = await get(`${s.url}/v1/models`);
    expect(models.json.object).toBe('list');
    expect(models.json.data[0]).toMatchObject({ id: 'tiny', object: 'model', max_model_len: 512 });
    expect((await get(`${s.url}/get_model_info`)).json).toMatchObject({ is_generation: true, weight_version: 0, context_length: 512 });
    expect((await get(`${s.url}/get_weight_version`)).json).toEqual({ weight_version: 0 });
    expect((await get(`${s.url}/weight_info`)).json).toEqual({ weight_version: 0 });
    expect((await get(`${s.url}/load`)).json).toEqual({ server_load: 0 });
    expect((await get(`${s.url}/is_paused`)).json).toEqual({ is_paused: false });
    expect((await get(`${s.url}/is_sleeping`)).json).toEqual({ is_sleeping: false });
  });
});

describe('errors', () => {
  const expectError = (r: { status: number; json: any }, status: number, message: RegExp) => {
    expect(r.status).toBe(status);
    expect(r.json.error.code).toBe(status);
    expect(typeof r.json.error.type).toBe('string');
    expect(r.json.error.message).toMatch(message);
  };

  it('400 for bad prompts and sampling params, naming the problem', async () => {
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1, 40], max_tokens: 2 }), 400, /prompt token id 40 is outside the vocabulary \[0, 40\)/);
    expectError(await post(`${s.url}/inference/v1/generate`, { token_ids: [], sampling_params: {} }), 400, /prompt is empty/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [], max_tokens: 2 }), 400, /prompt is empty/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1, 2, 3], max_tokens: 510 }), 400, /maximum context length is 512 tokens, but 513 were requested/);
    expectError(await post(`${s.url}/generate`, { input_ids: Array(512).fill(1) }), 400, /512 tokens; this model's maximum context length is 512/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], top_p: 1.5 }), 400, /top_p must be in \(0, 1\]/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], temperature: -1 }), 400, /temperature/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], temperature: 1e-320 }), 400, /too small \(1\/temperature overflows\)/); // the engine's own message
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], max_tokens: 0 }), 400, /max_tokens/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], presence_penalty: 0.5 }), 400, /presence_penalty = 0.5 is not supported/);
    expectError(await post(`${s.url}/inference/v1/generate`, { token_ids: [1], sampling_params: { ignore_eos: true } }), 400, /sampling_params\.ignore_eos = true is not supported/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: [1], stream_options: { include_usage: true } }), 400, /stream_options can only be given with stream: true/);
    expectError(await post(`${s.url}/generate`, { input_ids: [1, 2], return_logprob: true, logprob_start_len: 0 }), 400, /logprob_start_len = 0 asks for prompt logprobs/);
    expectError(await post(`${s.url}/generate`, { sampling_params: {} }), 400, /exactly one of text and input_ids/);
    expectError(await post(`${s.url}/v1/completions`, '{"prompt": [1'), 400, /not valid JSON/);
    expectError(await post(`${s.url}/v1/completions`, { prompt: 'x', max_tokens: 'many' }), 400, /max_tokens/);
  });

  it('404 for unknown routes and models, 405 for wrong methods', async () => {
    expectError(await post(`${s.url}/v1/chat/nothing`, {}), 404, /no route POST \/v1\/chat\/nothing/);
    expectError(await post(`${s.url}/v1/completions`, { model: 'other', prompt: [1] }), 404, /The model `other` does not exist/);
    expectError(await get(`${s.url}/v1/completions`), 405, /GET not allowed on \/v1\/completions; use POST/);
  });

  it('413 for a body over the limit', async () => {
    const small = await serveTiny(3, { maxBodyBytes: 1024 });
    try {
      expectError(await post(`${small.url}/v1/completions`, { prompt: Array(2000).fill(1) }), 413, /larger than the limit of 1024 bytes/);
      expect((await post(`${small.url}/v1/completions`, { prompt: [1], max_tokens: 1 })).status).toBe(200);
    } finally {
      await small.server.close();
    }
  });
});

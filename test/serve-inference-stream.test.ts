/**
 * vLLM-style streaming of `agentrl serve inference`'s /v1/completions (`stream: true`), against a
 * live server over the tiny built-in model (whose tokenizer writes tokens as their ids: "5 9 2"):
 *   - the chunks of a seeded request add up to the non-streamed answer of the same request: text
 *     (also when a stop string spanning two tokens is trimmed), token ids, logprobs, text offsets,
 *     versions; one chunk per token, the last one carrying finish_reason;
 *   - [DONE] ends the stream; stream_options.include_usage adds a usage chunk with no choices,
 *     continuous_usage_stats a running usage per chunk;
 *   - n > 1 and prompt lists: every choice streams under its own index;
 *   - the official `openai` client reads the stream;
 *   - a pause (abort) ends the stream with finish_reason 'abort'; a client that disconnects aborts
 *     its generation in the engine; errors before the first token are plain 400s.
 */
import { describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { post, PROMPT, serveTinyForFile, until } from './fixtures/serve-inference/setup.ts';

const s = serveTinyForFile(3);

/** POST a streamed completion; the raw events (without the trailing blank lines). */
async function streamEvents(body: Record<string, unknown>): Promise<string[]> {
  const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const text = await res.text();
  expect(text.endsWith('\n\n')).toBe(true);
  return text.slice(0, -2).split('\n\n');
}

/** The JSON chunks of a stream that ended with [DONE]. */
function chunksOf(events: string[]): any[] {
  expect(events.at(-1)).toBe('data: [DONE]');
  return events.slice(0, -1).map((e) => {
    expect(e.startsWith('data: ')).toBe(true);
    return JSON.parse(e.slice('data: '.length));
  });
}

/** One choice's chunk choices, in order. */
const choiceChunks = (chunks: any[], index: number) => chunks.flatMap((c) => c.choices).filter((c: any) => c.index === index);
const joined = (parts: any[], get: (c: any) => any[]) => parts.flatMap(get);

describe('/v1/completions stream: true', () => {
  it('the chunks of a seeded request add up to the non-streamed answer: text, token ids, logprobs, offsets, versions; one chunk per token', async () => {
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 12, temperature: 0.8, top_p: 0.9, top_k: 20, seed: 42, logprobs: 1, return_token_ids: true };
    const whole = (await post(`${s.url}/v1/completions`, body)).json;
    const want = whole.choices[0];
    expect(want.token_ids).toHaveLength(12);
    const chunks = chunksOf(await streamEvents(body));
    expect(chunks).toHaveLength(12); // one per token; the last one also carries finish_reason
    for (const c of chunks) {
      expect(c).toMatchObject({ object: 'text_completion', model: 'tiny', weight_version: 0 });
      expect(c.id).toMatch(/^cmpl-/);
      expect(c.choices).toHaveLength(1);
      expect(c.choices[0].index).toBe(0);
      expect(c.choices[0].token_ids).toHaveLength(1);
      expect(c.usage).toBeUndefined();
    }
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const parts = chunks.map((c) => c.choices[0]);
    expect(parts.map((p) => p.text).join('')).toBe(want.text);
    expect(joined(parts, (p) => p.token_ids)).toEqual(want.token_ids);
    expect(joined(parts, (p) => p.logprobs.tokens)).toEqual(want.logprobs.tokens);
    expect(joined(parts, (p) => p.logprobs.token_logprobs)).toEqual(want.logprobs.token_logprobs);
    expect(joined(parts, (p) => p.logprobs.text_offset)).toEqual(want.logprobs.text_offset);
    expect(joined(parts, (p) => p.logprobs.top_logprobs)).toEqual(want.logprobs.top_logprobs);
    expect(joined(parts, (p) => p.token_versions)).toEqual(want.token_versions);
    // Each chunk's text is its token's: "5" first, then " 9", " 2", … (the tokenizer joins with spaces).
    expect(parts.map((p) => p.text)).toEqual(want.token_ids.map((id: number, i: number) => (i === 0 ? `${id}` : ` ${id}`)));
    expect(parts.map((p) => p.prompt_token_ids)).toEqual([PROMPT, ...Array(11).fill(null)]);
    expect(parts.map((p) => p.finish_reason)).toEqual([...Array(11).fill(null), 'length']);
    expect(parts.every((p) => p.stop_reason === null)).toBe(true);
  });

  it('a stop string across two tokens is held back and trimmed as in the non-streamed text; with include_stop_str_in_output it is streamed', async () => {
    const free = (await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 30, seed: 7, return_token_ids: true })).json.choices[0];
    const ids: number[] = free.token_ids;
    const stop = `${ids[3]} ${ids[4]}`; // ends the text at token 4 at the latest
    for (const include of [false, true]) {
      const body = { prompt: PROMPT, max_tokens: 30, seed: 7, stop: [stop], include_stop_str_in_output: include, return_token_ids: true, logprobs: 0 };
      const want = (await post(`${s.url}/v1/completions`, body)).json.choices[0];
      expect(want.finish_reason).toBe('stop');
      expect(want.stop_reason).toBe(stop);
      expect(want.text.endsWith(stop)).toBe(include);
      const parts = choiceChunks(chunksOf(await streamEvents(body)), 0);
      expect(parts.map((p) => p.text).join('')).toBe(want.text);
      expect(joined(parts, (p) => p.token_ids)).toEqual(want.token_ids);
      expect(joined(parts, (p) => p.logprobs.token_logprobs)).toEqual(want.logprobs.token_logprobs);
      expect(parts.filter((p) => p.finish_reason !== null)).toEqual([expect.objectContaining({ finish_reason: 'stop', stop_reason: stop })]);
      expect(parts.at(-1).finish_reason).toBe('stop');
    }
  });

  it('ends with [DONE]; one finish_reason per choice, in its last chunk; include_usage adds a choice-less usage chunk counting the streamed tokens', async () => {
    const body = { prompt: ['5 9 2', '1 2'], max_tokens: 5, seed: 3, logprobs: 0, stream_options: { include_usage: true } };
    const whole = (await post(`${s.url}/v1/completions`, { ...body, stream_options: undefined })).json;
    const chunks = chunksOf(await streamEvents(body));
    const usage = chunks.at(-1);
    expect(usage.choices).toEqual([]);
    expect(chunks.slice(0, -1).every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
    let streamed = 0;
    for (const index of [0, 1]) {
      const parts = choiceChunks(chunks, index);
      expect(parts.filter((p) => p.finish_reason !== null)).toHaveLength(1);
      expect(parts.at(-1).finish_reason).toBe('length');
      expect(parts.map((p) => p.text).join('')).toBe(whole.choices[index].text);
      streamed += joined(parts, (p) => p.logprobs.tokens).length;
    }
    expect(streamed).toBe(10);
    expect(usage.usage).toEqual({ prompt_tokens: 5, completion_tokens: streamed, total_tokens: 5 + streamed });
    expect(usage.usage).toEqual(whole.usage);

    const running = chunksOf(await streamEvents({ prompt: PROMPT, max_tokens: 4, seed: 3, stream_options: { include_usage: true, continuous_usage_stats: true } }));
    expect(running.map((c) => c.usage.completion_tokens)).toEqual([1, 2, 3, 4, 4]);
    expect(running.map((c) => c.usage.prompt_tokens)).toEqual([4, 4, 4, 4, 4]);
  });

  it('n = 2 and a list of prompts: every choice streams under its own index, adding up to the non-streamed choice of that index', async () => {
    const body = { prompt: ['5 9 2', '1 2'], n: 2, max_tokens: 4, seed: 1, return_token_ids: true, return_tokens_as_token_ids: true, logprobs: 0 };
    const whole = (await post(`${s.url}/v1/completions`, body)).json;
    const chunks = chunksOf(await streamEvents(body));
    expect(new Set(chunks.flatMap((c) => c.choices.map((p: any) => p.index)))).toEqual(new Set([0, 1, 2, 3]));
    for (const index of [0, 1, 2, 3]) {
      const parts = choiceChunks(chunks, index);
      const want = whole.choices[index];
      expect(parts.map((p) => p.text).join('')).toBe(want.text);
      expect(joined(parts, (p) => p.token_ids)).toEqual(want.token_ids);
      expect(joined(parts, (p) => p.logprobs.tokens)).toEqual(want.token_ids.map((id: number) => `token_id:${id}`));
      expect(parts[0].prompt_token_ids).toEqual(index < 2 ? [5, 9, 2] : [1, 2]);
      expect(parts.filter((p) => p.finish_reason !== null)).toHaveLength(1);
    }
    // Seeds seed and seed + 1 for the two samples of a prompt, as in the non-streamed answer.
    expect(whole.choices[0].token_ids).not.toEqual(whole.choices[1].token_ids);
  });

  it('the official openai client reads the stream and gets the non-streamed text and usage', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const params = { model: 'tiny', prompt: '5 9 2 17', max_tokens: 10, seed: 4 };
    const whole = await client.completions.create(params);
    const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '', finish: string | null = null, chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      chunks++;
      for (const c of chunk.choices) {
        text += c.text;
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(chunks).toBe(11);
    expect(text).toBe(whole.choices[0]!.text);
    expect(finish).toBe('length');
    expect(usage).toEqual({ prompt_tokens: 4, completion_tokens: 10, total_tokens: 14 });
  });

  it('a pause (abort) ends every streamed choice with finish_reason abort and the tokens sampled so far, then [DONE]', async () => {
    const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: PROMPT, max_tokens: 450, seed: 9, stream: true, return_token_ids: true }) });
    const reader = res.body!.getReader();
    const first = await reader.read(); // the first token is out: the generation is running
    expect(first.done).toBe(false);
    expect((await post(`${s.url}/pause?mode=abort`, null)).status).toBe(200);
    let text = new TextDecoder().decode(first.value);
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    expect((await post(`${s.url}/resume`, null)).status).toBe(200);
    const parts = choiceChunks(chunksOf(text.slice(0, -2).split('\n\n')), 0);
    const ids = joined(parts, (p) => p.token_ids);
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.length).toBeLessThan(450);
    expect(parts.filter((p) => p.finish_reason !== null)).toEqual([parts.at(-1)]);
    expect(parts.at(-1).finish_reason).toBe('abort');
    expect(parts.map((p) => p.text).join('')).toBe(ids.join(' '));
  });

  it('a client that disconnects aborts its generation in the engine', async () => {
    const base = s.engine.stats.tokensSampled;
    const ctl = new AbortController();
    const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: PROMPT, max_tokens: 450, stream: true }), signal: ctl.signal });
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    ctl.abort();
    await until(() => s.server.control.inFlight() === 0 && s.engine.load().active === 0, 'request aborted');
    const after = s.engine.stats.tokensSampled;
    await new Promise((r) => setTimeout(r, 30));
    expect(s.engine.stats.tokensSampled).toBe(after);
    expect(after - base).toBeLessThan(450);
  });

  it('a request refused before its first token gets a plain JSON error, not a stream', async () => {
    const bad = await post(`${s.url}/v1/completions`, { prompt: PROMPT, stream: true, top_p: 1.5 });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/top_p must be in \(0, 1\]/);
    const engine = await post(`${s.url}/v1/completions`, { prompt: PROMPT, stream: true, temperature: 1e-320 });
    expect(engine.status).toBe(400);
    expect(engine.json.error.message).toMatch(/too small/);
  });
});

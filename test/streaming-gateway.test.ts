/**
 * Incremental streaming through the agent gateway, read with the official `openai` SDK's stream
 * iterators: the first chunk reaches the client while the engine is still sampling (checked against
 * the engine's own token counter at the moment the chunk is read), the reassembled stream equals
 * the non-streamed answer for the same seed, a stop string split across tokens never leaks into the
 * streamed text, and a call on a finished rollout is refused before any byte. `StreamedText` (the
 * hold-back logic) is checked on its own with a byte-level tokenizer, where characters split across
 * tokens and stop strings split across tokens happen on purpose.
 *
 * The model is a tiny untrained Qwen2-family model with the tiny BPE tokenizer (as in
 * gateway-limits): the tests check the protocol and the timing, not what the model says.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import fc from 'fast-check';
import OpenAI from 'openai';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { modelConfigFromArch } from '../src/engine/hf-model.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { Transformer } from '../src/engine/model.ts';
import { startGatewayServer, StreamedText, type GatewayServer } from '../src/gateway/server.ts';
import { tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const tokenizer = HfTokenizer.fromDirectory(FIXTURE);
const arch = tinyArch('qwen2', { maxPositions: 512 });
const hi = [{ role: 'user' as const, content: 'hi' }];

let engine: BuiltinEngine;
let g: GatewayServer;
const clientFor = (rollout: string) => new OpenAI({ baseURL: `${g.url}/rollouts/${rollout}/v1`, apiKey: 'x', maxRetries: 0 });

beforeAll(async () => {
  const model = new Transformer(modelConfigFromArch(arch, { contextLength: 512 }), new JsBackend(), 5);
  engine = new BuiltinEngine(model, tokenizer, { maxBatch: 4, seed: 2 });
  g = await startGatewayServer({ engine, port: 0 });
});

afterAll(async () => {
  await g?.close();
});

describe('gateway streaming is incremental', () => {
  it('chat: the first chunk is read before the engine has sampled the last token; the stream reassembles the non-streamed answer', async () => {
    const req = { model: 'm', messages: hi, max_tokens: 120, seed: 12, logprobs: true } as const;
    const plain = await clientFor('inc-plain').chat.completions.create(req);
    const total = plain.usage!.completion_tokens;
    expect(total).toBeGreaterThan(40); // a long completion, so "before the end" means something

    const start = engine.stats.tokensSampled;
    const stream = await clientFor('inc-stream').chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let sampledAtFirstChunk = -1, chunks = 0, content = '', finish: string | null = null;
    const logprobs: number[] = [];
    let usage: unknown = null;
    for await (const chunk of stream) {
      if (sampledAtFirstChunk < 0) sampledAtFirstChunk = engine.stats.tokensSampled - start;
      chunks++;
      const choice = chunk.choices[0];
      content += choice?.delta.content ?? '';
      finish = choice?.finish_reason ?? finish;
      for (const x of choice?.logprobs?.content ?? []) logprobs.push(x.logprob);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(engine.stats.tokensSampled - start).toBe(total); // same seed, same tokens
    expect(sampledAtFirstChunk).toBeGreaterThanOrEqual(1);
    expect(sampledAtFirstChunk).toBeLessThan(total / 2);
    expect(chunks).toBeGreaterThan(total / 2); // about one chunk per token
    expect(content).toBe(plain.choices[0]!.message.content);
    expect(finish).toBe(plain.choices[0]!.finish_reason);
    expect(logprobs).toEqual(plain.choices[0]!.logprobs!.content!.map((x) => x.logprob));
    expect(usage).toEqual(plain.usage);
    expect(g.recorder.get('inc-stream')!.calls[0]!.ids).toEqual(g.recorder.get('inc-plain')!.calls[0]!.ids);
  });

  it('completions: the first chunk is read before the engine has sampled the last token; text and logprobs reassemble', async () => {
    const req = { model: 'm', prompt: 'Once upon a time', max_tokens: 100, seed: 1, logprobs: 0 } as const;
    const plain = await clientFor('cinc-plain').completions.create(req);
    const total = plain.usage!.completion_tokens;
    expect(total).toBeGreaterThan(40);
    const start = engine.stats.tokensSampled;
    const stream = await clientFor('cinc-stream').completions.create({ ...req, stream: true });
    let sampledAtFirstChunk = -1, text = '';
    const lps: number[] = [], offsets: number[] = [];
    for await (const chunk of stream) {
      if (sampledAtFirstChunk < 0) sampledAtFirstChunk = engine.stats.tokensSampled - start;
      text += chunk.choices[0]?.text ?? '';
      lps.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
      offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
    }
    expect(sampledAtFirstChunk).toBeGreaterThanOrEqual(1);
    expect(sampledAtFirstChunk).toBeLessThan(total / 2);
    expect(text).toBe(plain.choices[0]!.text);
    expect(lps).toEqual(plain.choices[0]!.logprobs!.token_logprobs);
    expect(offsets).toEqual(plain.choices[0]!.logprobs!.text_offset);
  });

  it('a stop string split across tokens never reaches the streamed content; the answer is cut where the non-streamed one is', async () => {
    // Find a spot where a stop string spans two tokens: the last character of token k and all of
    // token k+1. (This untrained model writes many partial UTF-8 bytes, so the stream also holds those.)
    const free = await clientFor('stop-free').chat.completions.create({ model: 'm', messages: hi, max_tokens: 60, seed: 12 });
    const ids = g.recorder.get('stop-free')!.calls[0]!.ids;
    let stop = '', k = -1;
    for (let i = 2; i < ids.length - 1 && k < 0; i++) {
      const upto = tokenizer.decode(ids.slice(0, i + 1)), next = tokenizer.decode([ids[i + 1]!]);
      const full = tokenizer.decode(ids.slice(0, i + 2));
      const candidate = upto.slice(-1) + next;
      // Plain text on both sides, and the first place the text contains it (where the engine stops).
      if (full !== upto + next || /[\uFFFD\uD800-\uDFFF]/.test(candidate) || next.length === 0 || tokenizer.decode([ids[i]!]).length === 0) continue;
      if (full.indexOf(candidate) !== full.length - candidate.length) continue;
      [stop, k] = [candidate, i];
    }
    expect(k).toBeGreaterThan(0);
    const expected = tokenizer.decode(ids.slice(0, k + 2)).slice(0, -stop.length);
    expect(free.choices[0]!.message.content!.startsWith(expected)).toBe(true);

    const req = { model: 'm', messages: hi, max_tokens: 60, seed: 12, stop: [stop] };
    const plain = await clientFor('stop-plain').chat.completions.create(req);
    expect(plain.choices[0]!.message.content).toBe(expected);
    expect(plain.choices[0]!.finish_reason).toBe('stop');
    const stream = await clientFor('stop-stream').chat.completions.create({ ...req, stream: true });
    const pieces: string[] = [];
    for await (const chunk of stream) pieces.push(chunk.choices[0]?.delta.content ?? '');
    expect(pieces.join('')).toBe(expected);
    // Every prefix the client saw is a prefix of the cut answer: the stop string's first character
    // (sampled one token before the engine stopped) was held back, not sent and then regretted.
    let seen = '';
    for (const p of pieces) {
      seen += p;
      expect(expected.startsWith(seen)).toBe(true);
    }
  });

  it('refuses a streamed call on a finished rollout with a plain 409 before any byte; records a streamed call once it is done', async () => {
    const c = clientFor('done-1');
    const first = await c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 3, stream: true });
    for await (const _ of first) void _;
    expect(g.recorder.get('done-1')!.calls).toHaveLength(1);
    expect((await fetch(`${g.url}/v1/rollouts/done-1/reward`, { method: 'POST', body: '{"reward": 1}' })).status).toBe(200);
    const sampled = engine.stats.tokensSampled;
    const res = await fetch(`${g.url}/rollouts/done-1/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: hi, max_tokens: 3, stream: true }) });
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/rollout done-1 is finished/);
    expect(engine.stats.tokensSampled).toBe(sampled); // nothing was generated
    expect(g.recorder.get('done-1')!.calls).toHaveLength(1);
  });

  it('a client that leaves mid-stream aborts its generation and nothing is recorded', async () => {
    const ctl = new AbortController();
    const stream = await clientFor('gone-1').chat.completions.create({ model: 'm', messages: hi, max_tokens: 400, seed: 12, stream: true }, { signal: ctl.signal });
    const start = engine.stats.tokensSampled;
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 3) ctl.abort();
    } catch {
      // the SDK may end the iteration or throw an abort error: either way the client left
    }
    expect(n).toBe(3);
    // The engine lets go of the row: it stops sampling well before 400 tokens.
    await new Promise((r) => setTimeout(r, 200));
    const after = engine.stats.tokensSampled;
    await new Promise((r) => setTimeout(r, 200));
    expect(engine.stats.tokensSampled).toBe(after);
    expect(after - start).toBeLessThan(400);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    expect(g.recorder.get('gone-1')?.calls ?? []).toHaveLength(0);
  });
});

describe('StreamedText', () => {
  // A byte-level tokenizer: token id = one UTF-8 byte, so characters split across tokens.
  const enc = new TextEncoder(), dec = new TextDecoder();
  const decode = (ids: readonly number[]) => dec.decode(Uint8Array.from(ids));
  const STOP_ID = 300;
  const tok = (id: number, index: number) => ({ id, logprob: -1, version: 0, index });

  it('releases only prefixes of the final answer: split characters, stop strings split across tokens, a stop token (property)', () => {
    const pieces = fc.constantFrom('a', 'b', ' ', 'é', '€', '😀', 'ab', 'STOP', 'ST');
    fc.assert(
      fc.property(fc.array(pieces, { minLength: 1, maxLength: 10 }), fc.subarray(['STOP', 'b€', 'a😀a']), fc.boolean(), (parts, stops, endWithStopToken) => {
        // The engine's rule: stop after the first token whose text ends with a stop string.
        const bytes = [...enc.encode(parts.join(''))];
        const ids: number[] = [];
        let stoppedByString = false;
        for (const b of bytes) {
          ids.push(b);
          if (stops.some((s) => decode(ids).endsWith(s))) {
            stoppedByString = true;
            break;
          }
        }
        if (!stoppedByString && endWithStopToken) ids.push(STOP_ID);
        // The gateway's final answer: the stop token left out, or the stop string cut.
        const visible = ids.at(-1) === STOP_ID ? ids.slice(0, -1) : ids;
        let answer = decode(visible);
        const s = stoppedByString ? stops.find((x) => answer.endsWith(x)) : undefined;
        if (s) answer = answer.slice(0, -s.length);

        const st = new StreamedText((x) => decode(x.filter((id) => id !== STOP_ID)), new Set([STOP_ID]), stops);
        let released = '';
        const seenTokens: number[] = [];
        ids.forEach((id, i) => {
          const { tokens, piece } = st.push(tok(id, i));
          seenTokens.push(...tokens.map((t) => t.id));
          released += piece;
          expect(released).toBe(st.text);
          expect(answer.startsWith(released)).toBe(true);
          expect(released).not.toMatch(/\uFFFD/);
        });
        expect(seenTokens).toEqual(visible); // the stop token is never reported as visible
        expect(st.visible).toEqual(visible);
      }),
      { numRuns: 500 },
    );
  });

  it('holds back at most the longest stop string (less one character, unless it is complete) and releases the rest at once', () => {
    const st = new StreamedText(decode, new Set(), ['xyz']);
    const push = (s: string) => [...enc.encode(s)].map((b, i) => st.push(tok(b, i)).piece).join('');
    expect(push('hello x')).toBe('hello ');
    expect(push('y')).toBe('');
    expect(push('a')).toBe('xya'); // not the stop string after all
    expect(push('€')).toBe('€'); // held while its three bytes arrive, released with the last
    expect(st.text).toBe('hello xya€');
  });
});

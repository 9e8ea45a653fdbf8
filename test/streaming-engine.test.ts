/**
 * The per-token hook (`SamplingParams.onToken`) of the built-in, remote and scripted engines, and
 * SGLang-style streaming of `agentrl serve inference`'s /generate that it makes incremental:
 *   - the built-in engine calls the hook once per token, in order, with the completion's ids,
 *     logprobs and versions (across a weight update in the middle of the generation);
 *   - a throwing hook fails its own request only; the rest of the batch finishes unchanged;
 *   - the remote engine calls it for each returned token in order; the scripted engine at the end;
 *   - /generate with stream: true sends its first event before the engine has sampled the last
 *     token, every event cumulative, the last one equal to the non-streamed answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { RemoteEngine } from '../src/engine/remote/remote-engine.ts';
import { SglangClient } from '../src/engine/remote/sglang-client.ts';
import { ScriptedEngine } from '../src/engine/scripted-engine.ts';
import type { SampledToken } from '../src/engine/types.ts';
import { post, serveTiny, tinyModel, tokenizer, type Served } from './fixtures/serve-inference/setup.ts';

const PROMPT = [5, 9, 2, 17];

function engineOf(seed = 3): BuiltinEngine {
  return new BuiltinEngine(tinyModel(seed), tokenizer, { maxBatch: 4, seed: 11 });
}

describe('BuiltinEngine onToken', () => {
  it('is called once per token, in order, with the completion\'s ids, logprobs and versions, also across a weight update', async () => {
    const engine = engineOf();
    const other = tinyModel(8).params;
    const seen: SampledToken[] = [];
    let resolvedAt = -1;
    const p = engine.generate(PROMPT, {
      maxTokens: 12, seed: 4, topK: 10,
      onToken: (t) => {
        seen.push(t);
        if (t.index === 4) engine.setWeights(other, 7); // takes effect before the next token
      },
    }).then((c) => ((resolvedAt = seen.length), c));
    const c = await p;
    expect(resolvedAt).toBe(12); // every hook call came before the completion resolved
    expect(seen.map((t) => t.index)).toEqual([...Array(12).keys()]);
    expect(seen.map((t) => t.id)).toEqual(c.ids);
    expect(seen.map((t) => t.logprob)).toEqual(c.logprobs);
    expect(seen.map((t) => t.version)).toEqual(c.versions);
    expect(c.versions).toEqual([0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7]);
  });

  it('a hook that throws fails its own request; the other rows of the batch finish as if it were not there', async () => {
    const alone = await engineOf().generate([1, 2, 3], { maxTokens: 10, seed: 9 });
    const engine = engineOf();
    const bad = engine.generate(PROMPT, { maxTokens: 10, seed: 4, onToken: (t) => {
      if (t.index === 2) throw new Error('listener broke');
    } });
    const good: number[] = [];
    const ok = engine.generate([1, 2, 3], { maxTokens: 10, seed: 9, onToken: (t) => good.push(t.id) });
    await expect(bad).rejects.toThrow(/generate: the onToken hook threw at generated token 2: listener broke/);
    const c = await ok;
    expect(c.ids).toEqual(alone.ids); // per-request seeds: batch company does not change the tokens
    expect(good).toEqual(c.ids);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    // The engine keeps serving.
    expect((await engine.generate(PROMPT, { maxTokens: 3, seed: 1 })).ids).toHaveLength(3);
  });
});

describe('onToken of the scripted and remote engines', () => {
  it('ScriptedEngine calls it for every token of the scripted text, in order', async () => {
    const e = new ScriptedEngine(tokenizer, () => '3 1 4 1 5');
    e.setVersion(2);
    const seen: SampledToken[] = [];
    const c = await e.generate([1], { maxTokens: 4, onToken: (t) => seen.push(t) });
    expect(seen).toEqual([3, 1, 4, 1].map((id, index) => ({ id, logprob: 0, version: 2, index })));
    expect(c.ids).toEqual([3, 1, 4, 1]);
  });

  let s: Served;
  beforeAll(async () => {
    s = await serveTiny(3);
  });
  afterAll(async () => {
    await s.server.close();
  });

  it('RemoteEngine calls it for each returned token in order (servers answer whole), and a throw fails the request', async () => {
    const remote = new RemoteEngine({ servers: [new SglangClient(s.url)], tokenizer, retries: 0 });
    const seen: SampledToken[] = [];
    const c = await remote.generate(PROMPT, { maxTokens: 9, seed: 5, onToken: (t) => seen.push(t) });
    expect(c.ids).toHaveLength(9);
    expect(seen).toEqual(c.ids.map((id, index) => ({ id, logprob: c.logprobs[index], version: c.versions[index], index })));
    await expect(remote.generate(PROMPT, { maxTokens: 9, seed: 5, onToken: () => {
      throw new Error('nope');
    } })).rejects.toThrow(/onToken hook threw at generated token 0: nope/);
    await remote.close();
  });
});

describe('SGLang /generate stream: true', () => {
  let s: Served;
  beforeAll(async () => {
    s = await serveTiny(3);
  });
  afterAll(async () => {
    await s.server.close();
  });

  it('sends one cumulative event per token as it is sampled, the first before the last token exists, then the whole answer and [DONE]', async () => {
    const body = { input_ids: PROMPT, return_logprob: true, sampling_params: { max_new_tokens: 150, seed: 6 } };
    const plain = await post(`${s.url}/generate`, body);
    expect(plain.json.output_ids).toHaveLength(150);
    const start = s.engine.stats.tokensSampled;
    const res = await fetch(`${s.url}/generate`, { method: 'POST', body: JSON.stringify({ ...body, stream: true }) });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const utf8 = new TextDecoder();
    let buf = '', sampledAtFirstEvent = -1;
    const events: string[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += utf8.decode(value, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        if (sampledAtFirstEvent < 0) sampledAtFirstEvent = s.engine.stats.tokensSampled - start;
        events.push(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
    expect(s.engine.stats.tokensSampled - start).toBe(150);
    expect(sampledAtFirstEvent).toBeGreaterThanOrEqual(1);
    expect(sampledAtFirstEvent).toBeLessThan(75);
    expect(events).toHaveLength(152);
    expect(events.at(-1)).toBe('data: [DONE]');
    const data = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
    data.slice(0, 150).forEach((d, i) => {
      expect(d.output_ids).toEqual(plain.json.output_ids.slice(0, i + 1));
      expect(d.text).toBe(plain.json.output_ids.slice(0, i + 1).join(' '));
      expect(d.meta_info.completion_tokens).toBe(i + 1);
      expect(d.meta_info.output_token_logprobs).toEqual(plain.json.meta_info.output_token_logprobs.slice(0, i + 1));
    });
    expect(data.slice(0, 150).every((d) => d.meta_info.finish_reason === null)).toBe(true);
    const withoutId = (o: { meta_info: Record<string, unknown> }) => ({ ...o, meta_info: { ...o.meta_info, id: '' } }); // rids are random
    expect(withoutId(data[150])).toEqual(withoutId(plain.json));
  });

  it('marks each event of a streamed batch with its index', async () => {
    const res = await fetch(`${s.url}/generate`, { method: 'POST', body: JSON.stringify({ input_ids: [PROMPT, [1, 2]], stream: true, sampling_params: { max_new_tokens: 3, seed: 2 } }) });
    const data = (await res.text()).split('\n\n').filter((e) => e && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice('data: '.length)));
    expect(data).toHaveLength(2 * 4);
    for (const index of [0, 1]) {
      const mine = data.filter((d) => d.index === index);
      expect(mine.map((d) => d.output_ids.length)).toEqual([1, 2, 3, 3]);
      expect(mine.at(-1).meta_info.finish_reason).toEqual({ type: 'length', length: 3 });
    }
  });
});

/**
 * Contract tests of the remote inference clients and the RemoteEngine against stub HTTP servers
 * that answer exactly the documented vLLM / SGLang shapes: the requests carry token ids and the
 * sampling settings under the documented names, the answers' ids / logprobs / versions / finish
 * reasons come back as a SampledCompletion decoded locally; 4xx is final, 5xx and timeouts are
 * retried (elsewhere when possible), an unreachable server is marked down; a caller's abort returns
 * the partial tokens the server reports; a weight update pauses with abort, loads, resumes and
 * re-sends each interrupted request with its tokens so far; routing is least-loaded with pins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { RemoteEngine, hashIds, type RemoteEngineOptions } from '../src/engine/remote/remote-engine.ts';
import { VllmClient } from '../src/engine/remote/vllm-client.ts';
import { SglangClient } from '../src/engine/remote/sglang-client.ts';
import type { InferenceServerClient } from '../src/engine/remote/server-client.ts';
import { createRemoteEngine, parseRemoteEngineSection } from '../src/engine/remote/config.ts';
import { GenerationAbortedError } from '../src/engine/builtin-engine.ts';
import { Transformer } from '../src/engine/model.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { idTokenizer } from './helpers/id-tokenizer.ts';

const V = 16;
const EOS = 15;
const tok = idTokenizer(V, EOS);

interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  body: Record<string, unknown>;
  res: ServerResponse;
}

type Handler = (call: Call) => void | Promise<void>;

interface Stub {
  url: string;
  calls: Call[];
  close(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.writableEnded) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

async function stub(handler: Handler): Promise<Stub> {
  const calls: Call[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const call: Call = { method: req.method ?? 'GET', path: u.pathname, query: u.searchParams, body: await readBody(req), res };
      calls.push(call);
      await handler(call);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const s: Stub = {
    url, calls,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  cleanups.push(() => s.close());
  return s;
}

/** A port nothing listens on (bound, then closed). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function engine(servers: InferenceServerClient[], o: Partial<RemoteEngineOptions> = {}): RemoteEngine {
  const e = new RemoteEngine({ servers, tokenizer: tok, timeoutMs: 5000, controlTimeoutMs: 5000, backoffMs: 5, downMs: 60_000, ...o });
  cleanups.push(() => e.close());
  return e;
}

/** A vLLM /inference/v1/generate answer. */
function vllmAnswer(ids: number[], lps: number[], finish: string, extra: Record<string, unknown> = {}) {
  return { request_id: 'x', choices: [{ index: 0, token_ids: ids, logprobs: { content: ids.map((id, i) => ({ token: `token_id:${id}`, logprob: lps[i], bytes: null, top_logprobs: [] })) }, finish_reason: finish, ...extra }] };
}

/** An SGLang /generate answer. */
function sglangAnswer(ids: number[], lps: number[], finish: string, weightVersion = 'default') {
  return { text: '', output_ids: ids, meta_info: { id: 'x', finish_reason: finish === 'length' ? { type: 'length', length: ids.length } : finish === 'abort' ? { type: 'abort', message: 'Abort' } : { type: 'stop', matched: ids[ids.length - 1] }, prompt_tokens: 3, completion_tokens: ids.length, output_token_logprobs: ids.map((id, i) => [lps[i], id, null]), weight_version: weightVersion } };
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
};

describe('vLLM client shapes', () => {
  it('/inference/v1/generate: token ids in, ids + logprobs + finish reason out, text decoded locally', async () => {
    const s = await stub((c) => json(c.res, 200, vllmAnswer([4, 5, 6], [-0.5, -1.25, -2], 'length')));
    const e = engine([new VllmClient(s.url)]);
    const out = await e.generate([1, 2, 3], { maxTokens: 3, temperature: 0.7, topP: 0.9, topK: 5, stopIds: [9], seed: 42 });
    expect(out).toEqual({ ids: [4, 5, 6], logprobs: [-0.5, -1.25, -2], versions: [0, 0, 0], text: '4 5 6', finishReason: 'length', temperature: 0.7 });
    expect(s.calls).toHaveLength(1);
    const c = s.calls[0]!;
    expect(c.path).toBe('/inference/v1/generate');
    expect(c.body.token_ids).toEqual([1, 2, 3]);
    expect(typeof c.body.request_id).toBe('string');
    expect(c.body.sampling_params).toEqual({ max_tokens: 3, temperature: 0.7, top_p: 0.9, top_k: 5, seed: 42, stop_token_ids: [EOS, 9], logprobs: 0 });
  });

  it('/v1/completions: prompt as ids with return_token_ids and logprobs; per-token weight versions are used when reported', async () => {
    const s = await stub((c) => json(c.res, 200, { id: 'cmpl', choices: [{ index: 0, text: 'ignored', token_ids: [7, EOS], logprobs: { tokens: ['a', 'b'], token_logprobs: [-0.25, -0.75], top_logprobs: [], text_offset: [0, 1] }, finish_reason: 'stop', token_versions: [3, 4] }] }));
    const e = engine([new VllmClient(s.url, { api: 'completions', model: 'policy' })], { initialVersion: 4 });
    const out = await e.generate([1, 2], { maxTokens: 8, stop: ['x y'] });
    expect(out).toEqual({ ids: [7, EOS], logprobs: [-0.25, -0.75], versions: [3, 4], text: `7 ${EOS}`, finishReason: 'eos', temperature: 1 });
    const c = s.calls[0]!;
    expect(c.path).toBe('/v1/completions');
    expect(c.body).toMatchObject({ model: 'policy', prompt: [1, 2], max_tokens: 8, temperature: 1, return_token_ids: true, logprobs: 1, stop: ['x y'], include_stop_str_in_output: true, stop_token_ids: [EOS] });
    expect(c.body).not.toHaveProperty('top_p');
    expect(c.body).not.toHaveProperty('top_k');
  });

  it('a 2xx answer without logprobs is a protocol error naming the field, not retried', async () => {
    const s = await stub((c) => json(c.res, 200, { choices: [{ index: 0, token_ids: [4], finish_reason: 'length' }] }));
    const e = engine([new VllmClient(s.url)]);
    await expect(e.generate([1], { maxTokens: 1 })).rejects.toThrow(/choices\[0\]\.logprobs\.content is missing/);
    expect(s.calls).toHaveLength(1);
  });
});

describe('SGLang client shapes', () => {
  it('/generate: input_ids, rid, return_logprob, logprob_start_len −1; output_token_logprobs and a numeric weight_version', async () => {
    const s = await stub((c) => json(c.res, 200, sglangAnswer([8, 9], [-0.125, -3], 'length', '2')));
    const e = engine([new SglangClient(s.url)], { initialVersion: 2 });
    const out = await e.generate([3, 4, 5], { maxTokens: 2, temperature: 1.5, topK: 3 });
    expect(out).toEqual({ ids: [8, 9], logprobs: [-0.125, -3], versions: [2, 2], text: '8 9', finishReason: 'length', temperature: 1.5 });
    const c = s.calls[0]!;
    expect(c.path).toBe('/generate');
    expect(c.body).toMatchObject({ input_ids: [3, 4, 5], return_logprob: true, logprob_start_len: -1 });
    expect(typeof c.body.rid).toBe('string');
    expect(c.body.sampling_params).toEqual({ max_new_tokens: 2, temperature: 1.5, top_k: 3, stop_token_ids: [EOS] });
  });

  it('an output_token_logprobs entry for another token than output_ids is a protocol error', async () => {
    const s = await stub((c) => json(c.res, 200, { output_ids: [8], meta_info: { finish_reason: { type: 'length' }, output_token_logprobs: [[-1, 9, null]] } }));
    const e = engine([new SglangClient(s.url)]);
    await expect(e.generate([3], { maxTokens: 1 })).rejects.toThrow(/output_token_logprobs\[0\] is for token 9 but output_ids\[0\] is 8/);
  });
});

describe('RemoteEngine failures', () => {
  it('a 4xx is not retried and the error names the URL, the status and the server\'s message', async () => {
    const s = await stub((c) => json(c.res, 400, { object: 'error', message: 'max_tokens is too large', code: 400 }));
    const e = engine([new VllmClient(s.url)], { retries: 3 });
    await expect(e.generate([1], { maxTokens: 4 })).rejects.toThrow(new RegExp(`${s.url}/inference/v1/generate answered 400: .*max_tokens is too large`));
    expect(s.calls).toHaveLength(1);
    expect(e.stats.retries).toBe(0);
  });

  it('a 5xx is retried with backoff and the retry succeeds', async () => {
    let n = 0;
    const s = await stub((c) => (n++ === 0 ? json(c.res, 503, { message: 'overloaded' }) : json(c.res, 200, sglangAnswer([4], [-1], 'length'))));
    const e = engine([new SglangClient(s.url)], { retries: 2 });
    const out = await e.generate([1], { maxTokens: 1 });
    expect(out.ids).toEqual([4]);
    expect(s.calls.filter((c) => c.path === '/generate')).toHaveLength(2);
    expect(e.stats.retries).toBe(1);
    expect(e.serverStatus()[0]!.down).toBe(false); // one 5xx does not take a server down
  });

  it('retries give up after engine.retries with the last error and the servers in the message', async () => {
    const s = await stub((c) => json(c.res, 500, { message: 'boom' }));
    const e = engine([new SglangClient(s.url)], { retries: 1 });
    await expect(e.generate([1], { maxTokens: 1 })).rejects.toThrow(/gave up after 2 failed attempt\(s\) \(engine\.retries = 1\); last error: .*answered 500/);
    expect(s.calls).toHaveLength(2);
  });

  it('a timeout marks the server down and the request moves to the other server', async () => {
    const hung = await stub(() => undefined); // never answers
    const ok = await stub((c) => json(c.res, 200, vllmAnswer([5, 6], [-1, -1], 'length')));
    const e = engine([new VllmClient(hung.url), new VllmClient(ok.url)], { timeoutMs: 200, retries: 1 });
    // Pin the first request to the hung server: least-loaded picks server 0 on a tie.
    const out = await e.generate([1, 2], { maxTokens: 2 });
    expect(out.ids).toEqual([5, 6]);
    expect(hung.calls).toHaveLength(1);
    expect(ok.calls).toHaveLength(1);
    const st = e.serverStatus();
    expect(st[0]!.down).toBe(true);
    expect(st[0]!.lastError).toMatch(/no answer within 200 ms/);
    // Later requests skip the down server.
    await e.generate([3], { maxTokens: 2 });
    expect(hung.calls).toHaveLength(1);
    expect(ok.calls).toHaveLength(2);
  });

  it('with no retries left, a timeout is reported as such', async () => {
    const hung = await stub(() => undefined);
    const e = engine([new SglangClient(hung.url)], { timeoutMs: 100, retries: 0 });
    await expect(e.generate([1], { maxTokens: 1 })).rejects.toThrow(/no answer within 100 ms/);
  });

  it('an unreachable server is marked down and its requests go elsewhere; its other in-flight requests move at once', async () => {
    const dead = await deadUrl();
    const held: Call[] = [];
    const ok = await stub((c) => void held.push(c));
    const e = engine([new SglangClient(ok.url), new SglangClient(dead)], { retries: 2, balanceSlack: 0 });
    const a = e.generate([1], { maxTokens: 1, affinity: 'a' }); // → ok (index 0 on a tie)
    await until(() => held.length === 1, 'first request');
    const b = e.generate([2], { maxTokens: 1, affinity: 'b' }); // → dead (least loaded): refused, moved to ok
    await until(() => held.length === 2, 'the moved request');
    for (const c of held) json(c.res, 200, sglangAnswer([Number((c.body.input_ids as number[])[0]) + 10], [-1], 'length'));
    expect((await a).ids).toEqual([11]);
    expect((await b).ids).toEqual([12]);
    const st = e.serverStatus();
    expect(st[1]!.down).toBe(true);
    expect(st[1]!.lastError).toMatch(/ECONNREFUSED/);
    expect(st[0]!.down).toBe(false);
  });

  it('marking a server down moves its in-flight requests (which then keep their tokens so far)', async () => {
    // Server A takes two requests and hangs; the third request times out on it → A is down → the
    // other two are moved to B at once, without waiting for their own timeouts.
    const aCalls: Call[] = [];
    const a = await stub((c) => void aCalls.push(c));
    const b = await stub((c) => json(c.res, 200, vllmAnswer([9], [-0.5], 'length')));
    const e = engine([new VllmClient(a.url), new VllmClient(b.url)], { timeoutMs: 60_000, retries: 2, balanceSlack: 10 });
    const reqs = [e.generate([1], { maxTokens: 1, affinity: 't' }), e.generate([1], { maxTokens: 1, affinity: 't' })];
    await until(() => aCalls.length === 2, 'two requests on A');
    // A third request on A that gets a connection reset: A is marked down, its two requests move.
    const third = e.generate([1], { maxTokens: 1, affinity: 't' });
    await until(() => aCalls.length === 3, 'third request on A');
    aCalls[2]!.res.socket!.destroy();
    const outs = await Promise.all([...reqs, third]);
    expect(outs.map((o) => o.ids)).toEqual([[9], [9], [9]]);
    expect(e.stats.moved).toBe(2);
    expect(b.calls).toHaveLength(3);
  });
});

describe('RemoteEngine aborts', () => {
  it('the caller\'s abort asks the server to abort the request and rejects with the partial tokens it answered (vLLM)', async () => {
    let held: Call | null = null;
    const s = await stub((c) => {
      if (c.path === '/inference/v1/generate') held = c;
      if (c.path === '/abort_requests') {
        json(c.res, 200, {});
        if (held && (c.body.request_ids as string[]).includes(held.body.request_id as string)) json(held.res, 200, vllmAnswer([4, 5], [-0.1, -0.2], 'abort'));
      }
    });
    const e = engine([new VllmClient(s.url)]);
    const ctl = new AbortController();
    const p = e.generate([1, 2], { maxTokens: 10, signal: ctl.signal });
    await until(() => held !== null, 'the request');
    ctl.abort(new Error('caller gave up'));
    const err = await p.then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(GenerationAbortedError);
    expect((err as GenerationAbortedError).partial).toEqual({ ids: [4, 5], logprobs: [-0.1, -0.2], versions: [0, 0] });
    expect((err as Error).cause).toEqual(new Error('caller gave up'));
    expect(s.calls.find((c) => c.path === '/abort_requests')!.body).toEqual({ request_ids: [held!.body.request_id] });
  });

  it('SGLang: abort by rid; a server that never answers the abort still lets the caller go after abortGraceMs', async () => {
    const s = await stub((c) => {
      if (c.path === '/abort_request') json(c.res, 200, {});
    });
    const e = engine([new SglangClient(s.url)], { abortGraceMs: 50 });
    const ctl = new AbortController();
    const p = e.generate([1], { maxTokens: 10, signal: ctl.signal });
    await until(() => s.calls.length === 1, 'the request');
    ctl.abort();
    const err = await p.then(() => null, (x: unknown) => x);
    expect(err).toBeInstanceOf(GenerationAbortedError);
    expect((err as GenerationAbortedError).partial.ids).toEqual([]);
    await until(() => s.calls.some((c) => c.path === '/abort_request'), 'the abort call');
    expect(s.calls.find((c) => c.path === '/abort_request')!.body).toEqual({ rid: s.calls[0]!.body.rid });
  });

  it('an already aborted signal rejects without a request', async () => {
    const s = await stub((c) => json(c.res, 500, {}));
    const e = engine([new SglangClient(s.url)]);
    const ctl = new AbortController();
    ctl.abort();
    await expect(e.generate([1], { maxTokens: 1, signal: ctl.signal })).rejects.toBeInstanceOf(GenerationAbortedError);
    expect(s.calls).toHaveLength(0);
  });
});

describe('RemoteEngine generation rules', () => {
  it('a token constraint is rejected with a message naming the fix', async () => {
    const s = await stub((c) => json(c.res, 200, {}));
    const e = engine([new SglangClient(s.url)]);
    await expect(e.generate([1], { maxTokens: 1, constraint: () => null })).rejects.toThrow(/constraint .*cannot be sent to a remote inference server.*trial\.constrained: false/);
    expect(s.calls).toHaveLength(0);
  });

  it('stop strings, stop ids and EOS are enforced on the returned ids even when the server ran past them', async () => {
    const answers = [[4, 7, 1, 2], [3, 9, 5], [6, EOS, 8]];
    let n = 0;
    const s = await stub((c) => {
      const ids = answers[n++]!;
      json(c.res, 200, vllmAnswer(ids, ids.map((i) => -i / 10), 'length'));
    });
    const e = engine([new VllmClient(s.url)]);
    const a = await e.generate([1], { maxTokens: 4, stop: ['7 1'] });
    expect(a).toMatchObject({ ids: [4, 7, 1], logprobs: [-0.4, -0.7, -0.1], finishReason: 'stop', text: '4 7 1' });
    const b = await e.generate([1], { maxTokens: 3, stopIds: [9] });
    expect(b).toMatchObject({ ids: [3, 9], finishReason: 'stop' });
    const c = await e.generate([1], { maxTokens: 3 });
    expect(c).toMatchObject({ ids: [6, EOS], finishReason: 'eos' });
  });

  it('the context length caps the request budget and invalid arguments are rejected like the built-in engine does', async () => {
    const s = await stub((c) => json(c.res, 200, vllmAnswer([4, 4], [-1, -1], 'length')));
    const e = engine([new VllmClient(s.url)], { contextLength: 5 });
    const out = await e.generate([1, 2, 3], { maxTokens: 10 });
    expect((s.calls[0]!.body.sampling_params as { max_tokens: number }).max_tokens).toBe(2);
    expect(out.finishReason).toBe('length');
    await expect(e.generate([1, 2, 3, 4, 5], { maxTokens: 1 })).rejects.toThrow(/context length is 5/);
    await expect(e.generate([], { maxTokens: 1 })).rejects.toThrow(/empty prompt/);
    await expect(e.generate([V], { maxTokens: 1 })).rejects.toThrow(/outside the vocabulary/);
    await expect(e.generate([1], { maxTokens: 1, temperature: 0 })).rejects.toThrow(/temperature must be/);
    await expect(e.generate([1], { maxTokens: 1, topP: 1.5 })).rejects.toThrow(/topP must be/);
    expect(s.calls).toHaveLength(1);
  });

  it('a token id outside the tokenizer\'s vocabulary is reported (a server serving another model)', async () => {
    const s = await stub((c) => json(c.res, 200, vllmAnswer([V + 3], [-1], 'length')));
    const e = engine([new VllmClient(s.url)]);
    await expect(e.generate([1], { maxTokens: 1 })).rejects.toThrow(/token id 19, outside the tokenizer's vocabulary \[0, 16\)/);
  });
});

describe('RemoteEngine routing', () => {
  it('least-loaded: concurrent requests spread over the servers; one affinity stays on one server', async () => {
    const held: Call[][] = [[], []];
    const servers = await Promise.all([0, 1].map((i) => stub((c) => void held[i]!.push(c))));
    const e = engine(servers.map((s) => new SglangClient(s.url)), { balanceSlack: 0 });
    const ps = [0, 1, 2, 3].map((i) => e.generate([i + 1], { maxTokens: 1, affinity: `t${i}` }));
    await until(() => held[0]!.length + held[1]!.length === 4, 'four requests');
    expect([held[0]!.length, held[1]!.length]).toEqual([2, 2]);
    expect(e.load()).toEqual({ active: 4, queued: 0 });
    for (const c of held.flat()) json(c.res, 200, sglangAnswer([4], [-1], 'length'));
    await Promise.all(ps);
    // A trajectory's next calls go where its first call went (loads are equal again).
    const where = (i: number) => (held[0]!.some((c) => (c.body.input_ids as number[])[0] === i + 1) ? 0 : 1);
    for (const i of [0, 1, 2, 3]) {
      const before = held[where(i)]!.length;
      const p = e.generate([9, 9], { maxTokens: 1, affinity: `t${i}` });
      await until(() => held[0]!.length + held[1]!.length === 4 + i + 1, 'the next call');
      expect(held[where(i)]!.length).toBe(before + 1);
      json(held[where(i)]!.at(-1)!.res, 200, sglangAnswer([4], [-1], 'length'));
      await p;
    }
  });

  it('without affinity the prompt prefix pins; a pinned server is left when it is busier than the slack allows', async () => {
    const held: Call[][] = [[], []];
    const servers = await Promise.all([0, 1].map((i) => stub((c) => void held[i]!.push(c))));
    const e = engine(servers.map((s) => new VllmClient(s.url)), { balanceSlack: 1, pinPrefixTokens: 2 });
    // Same first two ids → same pin. Server 0 takes the first; the second stays there (load 1 ≤ 0 + 1);
    // the third would make it 2 > 0 + 1: it goes to server 1.
    const ps = [[1, 2, 3], [1, 2, 4], [1, 2, 5]].map((p) => e.generate(p, { maxTokens: 1 }));
    await until(() => held[0]!.length + held[1]!.length === 3, 'three requests');
    expect(held[0]!.map((c) => c.body.token_ids)).toEqual([[1, 2, 3], [1, 2, 4]]);
    expect(held[1]!.map((c) => c.body.token_ids)).toEqual([[1, 2, 5]]);
    for (const c of held.flat()) json(c.res, 200, vllmAnswer([4], [-1], 'length'));
    await Promise.all(ps);
    expect(hashIds([1, 2, 3], 2)).toBe(hashIds([1, 2, 9], 2));
    expect(hashIds([1, 2, 3], 2)).not.toBe(hashIds([2, 1, 3], 2));
  });
});

describe('RemoteEngine weight updates (pause with abort, load, resume, re-send)', () => {
  const CFG = { vocabSize: V, contextLength: 32, nLayer: 1, nHead: 1, nEmbd: 4 };

  for (const kind of ['vllm', 'sglang'] as const) {
    it(`${kind}: an interrupted request keeps its tokens and version, and is re-sent with them and the remaining budget`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'agentrl-remote-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const log: string[] = [];
      let held: Call | null = null;
      let paused = false;
      let served = 0;
      const genPath = kind === 'vllm' ? '/inference/v1/generate' : '/generate';
      const answer = (ids: number[], lps: number[], finish: string) => (kind === 'vllm' ? vllmAnswer(ids, lps, finish) : sglangAnswer(ids, lps, finish, String(served)));
      const s = await stub((c) => {
        log.push(c.path);
        if (c.path === genPath) {
          if (paused) throw new Error('a request reached the server while it was paused');
          const prompt = (c.body.token_ids ?? c.body.input_ids) as number[];
          if (prompt.length === 2) held = c; // the first part: answered by the pause
          else json(c.res, 200, answer([7, 8, 9], [-0.7, -0.8, -0.9], 'length'));
        } else if (c.path === '/pause' || c.path === '/pause_generation') {
          expect(kind === 'vllm' ? c.query.get('mode') : c.body.mode).toBe('abort');
          paused = true;
          json(held!.res, 200, answer([4, 5], [-0.4, -0.5], 'abort'));
          json(c.res, 200, {});
        } else if (c.path === '/update_weights_from_disk') {
          const path = c.body.model_path as string;
          const version = JSON.parse(readFileSync(join(path, 'agentrl_weights.json'), 'utf8')).agentrl_weight_version as number;
          expect(c.body.weight_version).toBe(String(version));
          served = version;
          json(c.res, 200, { success: true, message: 'ok', num_paused_requests: 0 });
        } else if (c.path === '/resume' || c.path === '/continue_generation') {
          paused = false;
          json(c.res, 200, {});
        } else json(c.res, 404, { message: `no route ${c.path}` });
      });
      const model = new Transformer(CFG, new JsBackend(), 1);
      const client = kind === 'vllm' ? new VllmClient(s.url) : new SglangClient(s.url);
      const e = engine([client], { weightSync: { dir, model } });
      const p = e.generate([1, 2], { maxTokens: 5, temperature: 0.9 });
      await until(() => held !== null, 'the first part');
      const newWeights = new Float32Array(model.params.length).fill(0.25);
      e.setWeights(newWeights, 1);
      expect(e.version()).toBe(1);
      // A request made during the update waits for it (it would otherwise reach a paused server).
      const during = e.generate([3, 3, 3], { maxTokens: 3 });
      const out = await p;
      expect(out.ids).toEqual([4, 5, 7, 8, 9]);
      expect(out.logprobs).toEqual([-0.4, -0.5, -0.7, -0.8, -0.9]);
      expect(out.versions).toEqual([0, 0, 1, 1, 1]);
      expect(out.finishReason).toBe('length');
      const gens = s.calls.filter((c) => c.path === genPath);
      expect(gens).toHaveLength(3);
      const resent = gens.find((c) => ((c.body.token_ids ?? c.body.input_ids) as number[])[0] === 1 && c !== held)!;
      expect(resent.body.token_ids ?? resent.body.input_ids).toEqual([1, 2, 4, 5]);
      expect(kind === 'vllm' ? (resent.body.sampling_params as { max_tokens: number }).max_tokens : (resent.body.sampling_params as { max_new_tokens: number }).max_new_tokens).toBe(3);
      expect((await during).versions).toEqual([1, 1, 1]);
      await e.weightsSynced();
      const controls = log.filter((x) => x !== genPath);
      expect(controls).toEqual(kind === 'vllm' ? ['/pause', '/update_weights_from_disk', '/resume'] : ['/pause_generation', '/update_weights_from_disk', '/continue_generation']);
      expect(e.stats).toMatchObject({ interruptions: 1, weightUpdates: 1 });
      // The weights written are the ones given, in the directory the server was told to load.
      const loadCall = s.calls.find((c) => c.path === '/update_weights_from_disk')!;
      expect(loadCall.body.model_path).toBe(join(dir, 'v1'));
      expect(Array.from(model.params.subarray(0, 4))).toEqual([0.25, 0.25, 0.25, 0.25]);
      // The next update replaces the directory of the previous one.
      await e.syncWeights(new Float32Array(model.params.length).fill(0.5), 2);
      expect(existsSync(join(dir, 'v2'))).toBe(true);
      expect(existsSync(join(dir, 'v1'))).toBe(false);
    });
  }

  it('a server that was down during an update gets the current weights before its next request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-remote-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const aHeld: Call[] = [];
    const a = await stub((c) => (c.path === '/inference/v1/generate' ? void aHeld.push(c) : json(c.res, 200, { success: true })));
    let resetPause = true;
    const b = await stub((c) => {
      if (c.path === '/pause' && resetPause) {
        resetPause = false;
        c.res.socket!.destroy(); // unreachable during the update
        return;
      }
      if (c.path === '/inference/v1/generate') json(c.res, 200, vllmAnswer([4], [-1], 'length'));
      else json(c.res, 200, { success: true });
    });
    const model = new Transformer(CFG, new JsBackend(), 1);
    const e = engine([new VllmClient(a.url), new VllmClient(b.url)], { weightSync: { dir, model }, downMs: 30 });
    await e.syncWeights(new Float32Array(model.params.length).fill(0.5), 1);
    expect(e.serverStatus().map((x) => x.loadedVersion)).toEqual([1, -1]);
    expect(e.serverStatus()[1]!.lastError).toMatch(/^pause: /);
    await until(() => !e.serverStatus()[1]!.down, "B's down period to end");
    const first = e.generate([1], { maxTokens: 1 }); // → A (tie), held there
    await until(() => aHeld.length === 1, 'a request on A');
    const out = await e.generate([2], { maxTokens: 1 }); // → B (less loaded), after it loads version 1
    expect(out.versions).toEqual([1]);
    expect(b.calls.map((c) => c.path)).toEqual(['/pause', '/update_weights_from_disk', '/inference/v1/generate']);
    expect(b.calls[1]!.body).toEqual({ model_path: join(dir, 'v1'), weight_version: '1' });
    json(aHeld[0]!.res, 200, vllmAnswer([5], [-1], 'length'));
    expect((await first).versions).toEqual([1]);
  });

  it('a server that refuses to load the weights fails the update; later generate calls say so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-remote-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const s = await stub((c) => {
      if (c.path === '/update_weights_from_disk') json(c.res, 200, { success: false, message: 'shape mismatch for model.norm.weight' });
      else json(c.res, 200, {});
    });
    const model = new Transformer(CFG, new JsBackend(), 1);
    const e = engine([new SglangClient(s.url)], { weightSync: { dir, model } });
    await expect(e.syncWeights(Float32Array.from(model.params), 1)).rejects.toThrow(/load weights failed on .*shape mismatch for model\.norm\.weight/);
    expect(s.calls.map((c) => c.path)).toEqual(['/pause_generation', '/update_weights_from_disk', '/continue_generation']);
    await expect(e.generate([1], { maxTokens: 1 })).rejects.toThrow(/may not serve version 1/);
  });

  it('setWeights without weightSync names the option', async () => {
    const s = await stub((c) => json(c.res, 200, {}));
    const e = engine([new SglangClient(s.url)]);
    expect(() => e.setWeights(new Float32Array(3), 1)).toThrow(/weightSync \{dir, model\}/);
  });
});

describe('control endpoints', () => {
  it('vLLM: sleep, wake_up, abort all; SGLang: release/resume memory, abort all', async () => {
    const s = await stub((c) => json(c.res, 200, {}));
    const v = new VllmClient(s.url + '/');
    const g = new SglangClient(s.url);
    const o = { timeoutMs: 1000 };
    await v.sleep(2, o);
    await v.wakeUp(['weights'], o);
    await v.abort('all', o);
    await g.sleep(1, o);
    await g.wakeUp(undefined, o);
    await g.abort('all', o);
    expect(s.calls.map((c) => [c.method, c.path + (c.query.size ? '?' + c.query.toString() : ''), c.body])).toEqual([
      ['POST', '/sleep?level=2', {}], ['POST', '/wake_up?tags=weights', {}], ['POST', '/abort_requests', {}],
      ['POST', '/release_memory_occupation', { tags: ['kv_cache'] }], ['POST', '/resume_memory_occupation', {}], ['POST', '/abort_request', { abort_all: true }],
    ]);
  });

  it('weight version: vLLM GET /weight_info, SGLang GET /get_weight_version (a string, as SGLang reports it)', async () => {
    const s = await stub((c) => json(c.res, 200, c.path === '/weight_info' ? { weight_version: 7 } : { weight_version: '8' }));
    expect(await new VllmClient(s.url).weightVersion({ timeoutMs: 1000 })).toBe(7);
    expect(await new SglangClient(s.url).weightVersion({ timeoutMs: 1000 })).toBe(8);
    expect(s.calls.map((c) => [c.method, c.path])).toEqual([['GET', '/weight_info'], ['GET', '/get_weight_version']]);
  });
});

describe('engine config section', () => {
  it('parses with defaults and builds an engine of the right kind', async () => {
    const sec = parseRemoteEngineSection({ kind: 'vllm', urls: ['http://127.0.0.1:1'], api: 'completions', model: 'm' });
    expect(sec).toMatchObject({ kind: 'vllm', api: 'completions', timeoutMs: 300_000, retries: 3, balanceSlack: 2 });
    const model = new Transformer(CFG_FOR_CONFIG, new JsBackend(), 1);
    const e = createRemoteEngine(parseRemoteEngineSection({ kind: 'sglang', urls: ['http://a:1', 'http://b:2'], weightSyncDir: 'runs/x' }), { tokenizer: tok, model });
    cleanups.push(() => e.close());
    expect(e.serverStatus().map((s) => s.url)).toEqual(['http://a:1', 'http://b:2']);
    expect(e.contextLength).toBe(CFG_FOR_CONFIG.contextLength);
  });

  it('errors name the field', () => {
    expect(() => parseRemoteEngineSection({ kind: 'tgi', urls: ['http://a'] })).toThrow(/engine\.kind/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: ['ftp://a'] })).toThrow(/engine\.urls\.0: must be an http/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: [] })).toThrow(/engine\.urls: give at least one server URL/);
    expect(() => parseRemoteEngineSection({ kind: 'sglang', urls: ['http://a'], api: 'completions' })).toThrow(/engine\.api: only for kind 'vllm'/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a'], retries: -1 })).toThrow(/engine\.retries/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a'], timeout: 5 })).toThrow(/engine\.timeout: unknown key \(did you mean 'timeoutMs'\?\)/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a', 'http://a'] })).toThrow(/engine\.urls: lists a server twice/);
    expect(() => parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a'], timeoutMs: 600_000 })).toThrow(/engine\.timeoutMs: at most 300000/);
    const model = new Transformer(CFG_FOR_CONFIG, new JsBackend(), 1);
    expect(() => createRemoteEngine(parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a'], contextLength: 100 }), { tokenizer: tok, model })).toThrow(/engine\.contextLength: 100 is larger than the model's context length 24/);
    expect(() => createRemoteEngine(parseRemoteEngineSection({ kind: 'vllm', urls: ['http://a'], weightSyncDir: 'x' }), { tokenizer: tok })).toThrow(/weightSyncDir is set but no model/);
  });
});

const CFG_FOR_CONFIG = { vocabSize: V, contextLength: 24, nLayer: 1, nHead: 1, nEmbd: 4 };

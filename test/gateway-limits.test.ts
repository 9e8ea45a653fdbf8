/**
 * The agent gateway's edges, with the official `openai` client and plain fetch against real HTTP
 * servers on port 0: the token when bound beyond loopback, the three ways a rollout id travels,
 * body size (413) and rate (429) limits, OpenAI-style 400s naming the field, the reward endpoint,
 * token-id prompts on /v1/completions, greedy decoding, the Hermes tool-call parser and its
 * streaming twin, and `agentrl serve gateway` as a process writing trajectories as JSONL.
 *
 * The model is a tiny untrained Qwen2-family model with the tiny BPE tokenizer: these tests check
 * the protocol and the records, not what the model says.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import OpenAI from 'openai';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { modelConfigFromArch } from '../src/engine/hf-model.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { Transformer } from '../src/engine/model.ts';
import { runServeGateway } from '../src/gateway/cli.ts';
import { startGatewayServer, type GatewayServer } from '../src/gateway/server.ts';
import { parseToolCalls, ToolCallStreamer } from '../src/gateway/tool-calls.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const ROOT = join(import.meta.dirname, '..');
const tokenizer = HfTokenizer.fromDirectory(FIXTURE);
const arch = tinyArch('qwen2', { maxPositions: 128 });
const TOKEN = 'test-token-0123456789abcdef';
const servers: GatewayServer[] = [];

function newEngine(): BuiltinEngine {
  const model = new Transformer(modelConfigFromArch(arch, { contextLength: 128 }), new JsBackend(), 5);
  return new BuiltinEngine(model, tokenizer, { maxBatch: 4, seed: 2 });
}

async function gateway(o: Partial<Parameters<typeof startGatewayServer>[0]> = {}): Promise<GatewayServer> {
  const g = await startGatewayServer({ engine: newEngine(), port: 0, ...o });
  servers.push(g);
  return g;
}

/** The APIError an SDK call rejects with. */
async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

const hi = [{ role: 'user' as const, content: 'hi' }];
type ErrorBody = { error: { message: string; param: string | null; code: string | null } };

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe('gateway beyond loopback', () => {
  it('refuses to start on 0.0.0.0 without a token', async () => {
    await expect(startGatewayServer({ engine: newEngine(), host: '0.0.0.0', port: 0 })).rejects.toThrow(/bound to 0\.0\.0\.0, beyond loopback: it needs a bearer token/);
    await expect(startGatewayServer({ engine: newEngine(), host: '0.0.0.0', port: 0, token: 'short' })).rejects.toThrow(/at least 16 characters/);
  });

  it('answers 401 to a client without the token and 200 with it; the rollout id travels as <token>:<id>', async () => {
    const g = await gateway({ host: '0.0.0.0', token: TOKEN });
    const wrong = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'not-the-token', defaultHeaders: { 'X-Rollout-Id': 'r0' }, maxRetries: 0 });
    const e = await apiError(wrong.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 }));
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(e.status).toBe(401);
    expect(e.code).toBe('invalid_api_key');
    // No Authorization header at all, and the loopback-only `rollout-<id>` key: also refused.
    const bare = await fetch(`${g.url}/v1/models`);
    expect(bare.status).toBe(401);
    expect(bare.headers.get('www-authenticate')).toBe('Bearer');
    const e2 = await apiError(new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'rollout-r0', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 }));
    expect(e2.status).toBe(401);
    expect(g.recorder.size).toBe(0);

    const ok = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: `${TOKEN}:r1`, maxRetries: 0 });
    const r = await ok.chat.completions.create({ model: 'm', messages: hi, max_tokens: 3 });
    expect(r.choices).toHaveLength(1);
    expect(g.recorder.get('r1')!.calls).toHaveLength(1);
    const withHeader = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: TOKEN, defaultHeaders: { 'X-Rollout-Id': 'r2' }, maxRetries: 0 });
    await withHeader.chat.completions.create({ model: 'm', messages: hi, max_tokens: 3 });
    expect(g.recorder.get('r2')!.calls).toHaveLength(1);
    // The reward endpoint is behind the token too.
    expect((await fetch(`${g.url}/v1/rollouts/r1/reward`, { method: 'POST', body: '{"reward": 1}' })).status).toBe(401);
    expect((await fetch(`${g.url}/v1/rollouts/r1/reward`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"reward": 1}' })).status).toBe(200);
  });

  it('agentrl serve gateway refuses to start beyond loopback without a token, before loading anything', async () => {
    const saved = process.env.AGENTRL_GATEWAY_TOKEN;
    delete process.env.AGENTRL_GATEWAY_TOKEN;
    try {
      await expect(runServeGateway({ model: '/nonexistent', host: '0.0.0.0', port: 0, maxBody: 1000, maxBatch: 1, seed: 0 })).rejects.toThrow(/needs a bearer token \(--token or AGENTRL_GATEWAY_TOKEN\)/);
    } finally {
      if (saved !== undefined) process.env.AGENTRL_GATEWAY_TOKEN = saved;
    }
  });
});

describe('rollout ids on a loopback gateway', () => {
  let g: GatewayServer;
  beforeAll(async () => {
    g = await gateway();
  });

  it('takes the id from the path prefix, the X-Rollout-Id header or a rollout-<id> API key', async () => {
    await new OpenAI({ baseURL: `${g.url}/rollouts/by-path/v1`, apiKey: 'x', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
    await new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', defaultHeaders: { 'X-Rollout-Id': 'by-header' }, maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
    await new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'rollout-by-key', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
    for (const id of ['by-path', 'by-header', 'by-key']) expect(g.recorder.get(id)!.calls).toHaveLength(1);
  });

  it('refuses a model call without a rollout id, or with two different ones', async () => {
    const none = await apiError(new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 }));
    expect(none.status).toBe(400);
    expect(none.param).toBe('rollout_id');
    expect(none.message).toMatch(/no rollout id/);
    const two = await apiError(new OpenAI({ baseURL: `${g.url}/rollouts/a/v1`, apiKey: 'rollout-b', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 }));
    expect(two.status).toBe(400);
    expect(two.message).toMatch(/given differently/);
  });

  it('finishes a rollout with one reward report; a second report, a later call or an unknown id are refused', async () => {
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/rw/v1`, apiKey: 'x', maxRetries: 0 });
    await c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
    const status = await (await fetch(`${g.url}/v1/rollouts/rw`)).json();
    expect(status).toEqual({ id: 'rw', calls: 1, reward: null, finished: false });
    const post = (id: string, body: unknown) => fetch(`${g.url}/v1/rollouts/${id}/reward`, { method: 'POST', body: JSON.stringify(body) });
    const r1 = await post('rw', { reward: 0.5 });
    expect(r1.status).toBe(200);
    expect(await r1.json()).toEqual({ id: 'rw', reward: 0.5, calls: 1 });
    expect((await post('rw', { reward: 1 })).status).toBe(409);
    const late = await apiError(c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 }));
    expect(late.status).toBe(409);
    expect(g.recorder.get('rw')!.calls).toHaveLength(1);
    expect((await post('nobody', { reward: 1 })).status).toBe(404);
    const bad = await post('rw2', { reward: 'high' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error.param).toBe('reward');
    const traj = g.recorder.take('rw');
    expect(traj.reward).toBe(0.5);
    expect(traj.samples.map((s) => s.reward)).toEqual([0.5]);
  });
});

describe('limits and malformed requests', () => {
  it('answers 413 to a body over --max-body', async () => {
    const g = await gateway({ maxBodyBytes: 2000 });
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/big/v1`, apiKey: 'x', maxRetries: 0 });
    const e = await apiError(c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }], max_tokens: 2 }));
    expect(e.status).toBe(413);
    expect(e.message).toMatch(/larger than the gateway's limit of 2000 bytes/);
    // Still serves bodies under the limit.
    await c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2 });
  });

  it('answers 429 with Retry-After past --rate-limit requests per second from one client', async () => {
    const g = await gateway({ rateLimit: 2 });
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/rl/v1`, apiKey: 'x', maxRetries: 0 });
    await c.models.list();
    await c.models.list();
    const e = await apiError(c.models.list());
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect(e.status).toBe(429);
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // /health is not limited (probes).
    expect((await fetch(`${g.url}/health`)).status).toBe(200);
  });

  it('answers 400 naming the field for what it cannot serve or parse', async () => {
    const g = await gateway();
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/bad/v1`, apiKey: 'x', maxRetries: 0 });
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ n: 2 }, 'n', /only n = 1/],
      [{ messages: [] }, 'messages', /at least 1/],
      [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role', /unknown role/],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /Required/],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type', /only text parts/],
      [{ temperature: 3 }, 'temperature', /less than or equal to 2/],
      [{ presence_penalty: 0.5 }, 'presence_penalty', /not supported/],
      [{ top_logprobs: 3, logprobs: true }, 'top_logprobs', /sampled token/],
      [{ tool_choice: 'required', tools: [{ type: 'function', function: { name: 'f' } }] }, 'tool_choice', /"auto"/],
      [{ tools: [{ type: 'function', function: { name: 'bad name' } }] }, 'tools[0].function.name', /letters, digits/],
      [{ response_format: { type: 'json_object' } }, 'response_format', /structured outputs/],
      [{ max_tokens: 500 }, 'max_tokens', /at most \d+ tokens are left/],
    ];
    for (const [patch, param, message] of cases) {
      const e = await apiError(c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 2, ...patch } as never));
      expect([e.status, e.param], JSON.stringify(patch)).toEqual([400, param]);
      expect(e.message).toMatch(message);
    }
    const notJson = await fetch(`${g.url}/rollouts/bad/v1/chat/completions`, { method: 'POST', body: '{"messages": [' });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as ErrorBody).error.code).toBe('invalid_json');
    expect((await fetch(`${g.url}/v1/embeddings`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(`${g.url}/v1/chat/completions`)).status).toBe(405);
    expect(g.recorder.get('bad')).toBeUndefined(); // nothing was sampled
  });
});

describe('sampling through the gateway', () => {
  it('/v1/completions takes token ids as the prompt and records them as given; streaming gives the same text', async () => {
    const g = await gateway();
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/ids/v1`, apiKey: 'x', maxRetries: 0 });
    const prompt = [268, 72, 101, 269, 10];
    const r = await c.completions.create({ model: 'm', prompt, max_tokens: 6, seed: 4, logprobs: 0 });
    const call = g.recorder.get('ids')!.calls[0]!;
    expect(call.promptIds).toEqual(prompt);
    expect(call.endpoint).toBe('completions');
    expect(r.choices[0]!.logprobs!.token_logprobs).toEqual(call.logprobs.slice(0, r.choices[0]!.logprobs!.tokens!.length));
    const stream = await c.completions.create({ model: 'm', prompt, max_tokens: 6, seed: 4, stream: true });
    let text = '', finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(r.choices[0]!.text);
    expect(finish).toBe(r.choices[0]!.finish_reason);
    const calls = g.recorder.get('ids')!.calls;
    expect(calls[1]!.ids).toEqual(calls[0]!.ids);
    // vLLM's return_token_ids extension: the ids, as recorded.
    const res = await fetch(`${g.url}/rollouts/ids/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: 3, return_token_ids: true }) });
    const body = (await res.json()) as { choices: { prompt_token_ids: number[]; token_ids: number[] }[] };
    expect(body.choices[0].prompt_token_ids).toEqual(prompt);
    expect(body.choices[0].token_ids).toEqual(g.recorder.get('ids')!.calls[2]!.ids);
    const e = await apiError(c.completions.create({ model: 'm', prompt: [1, 2, 999], max_tokens: 2 }));
    expect([e.status, e.param]).toEqual([400, 'prompt[2]']);
  });

  it('streams per-token logprobs that the SDK reassembles into the non-streamed ones', async () => {
    const g = await gateway();
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/slp/v1`, apiKey: 'x', maxRetries: 0 });
    const req = { model: 'm', messages: hi, max_tokens: 6, seed: 5, logprobs: true } as const;
    const plain = await c.chat.completions.create(req);
    const streamed = await c.chat.completions.stream(req).finalChatCompletion();
    expect(streamed.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
    expect(streamed.choices[0]!.logprobs!.content!.map((x) => x.logprob)).toEqual(plain.choices[0]!.logprobs!.content!.map((x) => x.logprob));
    expect(plain.choices[0]!.logprobs!.content!.length).toBeGreaterThan(0);
  });

  it('samples temperature 0 greedily (top-k 1): logprobs 0 under the kept set, recorded as masks', async () => {
    const g = await gateway();
    const c = new OpenAI({ baseURL: `${g.url}/rollouts/greedy/v1`, apiKey: 'x', maxRetries: 0 });
    const a = await c.chat.completions.create({ model: 'm', messages: hi, temperature: 0, max_tokens: 5, seed: 1 });
    const b = await c.chat.completions.create({ model: 'm', messages: hi, temperature: 0, max_tokens: 5, seed: 2 });
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    const call = g.recorder.get('greedy')!.calls[0]!;
    expect(call.logprobs.every((x) => x === 0)).toBe(true);
    expect(call.temperature).toBe(1);
    expect(call.masks!.every((m) => m !== null && m.reduce((s, v) => s + v, 0) === 1)).toBe(true);
    await fetch(`${g.url}/v1/rollouts/greedy/reward`, { method: 'POST', body: '{"reward": 0}' });
    const sample = g.recorder.take('greedy').samples[0]!;
    const masks = sample.seq.constraintMasks!;
    expect(masks.slice(0, call.promptIds.length).every((m) => m === null)).toBe(true);
    call.ids.forEach((id, i) => expect(masks[call.promptIds.length + i]![id]).toBe(1));
  });
});

describe('Hermes tool-call parsing', () => {
  const ids = () => {
    let n = 0;
    return () => `call_${n++}`;
  };

  it('parses calls and the content around them; malformed blocks leave the text as content', () => {
    const two = 'Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>{"name": "b"}</tool_call>\n';
    expect(parseToolCalls(two, ids())).toEqual({
      content: 'Let me check.',
      toolCalls: [
        { id: 'call_0', type: 'function', function: { name: 'a', arguments: '{"x":1}' } },
        { id: 'call_1', type: 'function', function: { name: 'b', arguments: '{}' } },
      ],
    });
    expect(parseToolCalls('no calls <tool', ids())).toEqual({ content: 'no calls <tool', toolCalls: [] });
    for (const [text, why] of [
      ['<tool_call>{"name": "a", "arguments": {"x": 1}}', /has no <\/tool_call>/],
      ['<tool_call>{"name": "a", "arguments": {x}}</tool_call>', /not JSON/],
      ['<tool_call>["a"]</tool_call>', /expected a JSON object/],
      ['<tool_call>{"arguments": {}}</tool_call>', /"name" must be a non-empty string/],
      ['<tool_call>{"name": "a", "arguments": "x=1"}</tool_call>', /"arguments" must be a JSON object/],
    ] as const) {
      const p = parseToolCalls(text, ids());
      expect(p.content).toBe(text);
      expect(p.toolCalls).toEqual([]);
      expect(p.malformed).toMatch(why);
    }
  });

  it('streams content deltas that add up to the parsed content, whatever the text (property)', () => {
    const pieces = fc.constantFrom('Hi', ' ', '\n', '<', '<tool', '<tool_call>', '</tool_call>', '{"name": "f", "arguments": {}}', 'x', '{"bad"');
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 12 }), fc.array(fc.nat(40), { maxLength: 8 }), (parts, cuts) => {
        const text = parts.join('');
        const streamer = new ToolCallStreamer(ids());
        let streamed = '';
        for (const cut of [...cuts.map((k) => Math.min(k, text.length)).sort((a, b) => a - b), text.length]) streamed += streamer.push(text.slice(0, cut)).content ?? '';
        const end = streamer.finish(text);
        streamed += end.content ?? '';
        const parsed = parseToolCalls(text, ids());
        expect(streamed).toBe(parsed.content ?? '');
        expect(end.toolCalls ?? []).toEqual(parsed.toolCalls);
      }),
      { numRuns: 300 },
    );
  });
});

describe('agentrl serve gateway (process)', () => {
  it('serves a model directory and writes each rewarded rollout as one JSON line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-gateway-cli-'));
    try {
      await writeHfModelDir(join(dir, 'model'), arch, randomHfTensors(arch, 1), { dtype: 'F32', tokenizerFrom: FIXTURE });
      const child = spawn(process.execPath, [join(ROOT, 'bin', 'agentrl.mjs'), 'serve', 'gateway', '--model', join(dir, 'model'), '--port', '0', '--out', join(dir, 'out'), '--context-length', '128'], {
        env: { ...process.env, AGENTRL_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /at (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('exit', (code) => reject(new Error(`serve gateway exited with ${code}: ${out}`)));
      });
      const c = new OpenAI({ baseURL: `${url}/rollouts/cli-1/v1`, apiKey: 'x', maxRetries: 0 });
      const r = await c.chat.completions.create({ model: 'm', messages: hi, max_tokens: 4, seed: 9 });
      expect(r.choices).toHaveLength(1);
      expect((await fetch(`${url}/v1/rollouts/cli-1/reward`, { method: 'POST', body: '{"reward": 2, "info": {"judge": "exact"}}' })).status).toBe(200);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out).toMatch(/1 trajectories written/);
      const lines = readFileSync(join(dir, 'out', 'trajectories.jsonl'), 'utf8').trim().split('\n');
      expect(lines).toHaveLength(1);
      const t = JSON.parse(lines[0]!);
      expect(t).toMatchObject({ id: 'cli-1', groupId: 'cli-1', reward: 2, info: { judge: 'exact', calls: 1 } });
      const seq = t.samples[0].seq;
      const promptLen = seq.mask.indexOf(1);
      expect(tokenizer.decode(seq.ids.slice(0, promptLen))).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
      expect(seq.ids.length - promptLen).toBe(r.usage!.completion_tokens);
      expect(seq.logprobs.slice(promptLen).every((x: number) => x < 0)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { judgePrompt, LlmJudge, parseJudgeReply } from '../src/rewards/judge.ts';
import { ToolError } from '../src/tools/types.ts';

interface Seen {
  url: string;
  auth: string | undefined;
  body: { model: string; messages: { role: string; content: string }[]; temperature: number; max_tokens?: number };
}

/** A chat-completions server on 127.0.0.1 whose k-th request (0-based) is answered by handlers[min(k, last)]. */
async function fakeServer(handlers: ((res: ServerResponse) => void)[]): Promise<{ baseUrl: string; seen: Seen[]; server: Server }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization, body: JSON.parse(data) });
      handlers[Math.min(seen.length - 1, handlers.length - 1)]!(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen, server };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const chat = (content: string) => (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }));
};
const status = (code: number, text = 'oops') => (res: ServerResponse) => {
  res.writeHead(code, { 'content-type': 'text/plain' });
  res.end(text);
};
const hang = () => () => undefined; // never answers: the client's timeout fires

const fast = { timeoutMs: 2_000, retries: 2, backoffMs: 1 };
const input = { question: 'What is the capital of France?', prediction: 'Paris', golds: ['Paris'] };

describe('LlmJudge against a local chat-completions server', () => {
  it('posts the prompt to {baseUrl}/chat/completions with the bearer key from the environment and reads "Correct"', async () => {
    const { baseUrl, seen } = await fakeServer([chat('{"rationale": "Same city.", "judgement": "Correct"}')]);
    const judge = new LlmJudge({ baseUrl, model: 'judge-model', env: { OPENAI_API_KEY: 'sk-test' }, limits: fast });
    expect(await judge.judge(input)).toEqual({ correct: true, rationale: 'Same city.', attempts: 1 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe('/v1/chat/completions');
    expect(seen[0]!.auth).toBe('Bearer sk-test');
    expect(seen[0]!.body).toEqual({ model: 'judge-model', messages: [{ role: 'user', content: judgePrompt(input) }], temperature: 0.6 });
  });

  it('reads "Incorrect" in a fenced block surrounded by prose; apiKey and apiKeyEnv choose the key', async () => {
    const reply = 'Let me compare.\n```json\n{\n  "rationale": "Lyon is not Paris.",\n  "judgement": "Incorrect",\n}\n```\nDone.';
    const { baseUrl, seen } = await fakeServer([chat(reply)]);
    const byOption = new LlmJudge({ baseUrl: `${baseUrl}/`, model: 'm', apiKey: 'opt-key', maxTokens: 1024, limits: fast });
    expect(await byOption.judge({ ...input, prediction: 'Lyon' })).toEqual({ correct: false, rationale: 'Lyon is not Paris.', attempts: 1 });
    const byEnv = new LlmJudge({ baseUrl, model: 'm', apiKeyEnv: 'MY_JUDGE_KEY', env: { MY_JUDGE_KEY: 'env-key' }, limits: fast });
    await byEnv.judge(input);
    const anonymous = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: fast });
    await anonymous.judge(input);
    expect(seen.map((s) => s.auth)).toEqual(['Bearer opt-key', 'Bearer env-key', undefined]);
    expect(seen[0]!.body.max_tokens).toBe(1024);
    expect(seen[0]!.url).toBe('/v1/chat/completions');
  });

  it('retries unreadable replies: two garbage replies, then a good one', async () => {
    const { baseUrl, seen } = await fakeServer([chat('I think it is fine.'), chat('{"judgement": "Maybe"}'), chat('{"rationale": "ok", "judgement": "correct"}')]);
    const judge = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: fast });
    expect(await judge.judge(input)).toEqual({ correct: true, rationale: 'ok', attempts: 3 });
    expect(seen).toHaveLength(3);
  });

  it('fails with a clear error after the last attempt when every reply is garbage', async () => {
    const { baseUrl, seen } = await fakeServer([chat('no idea, sorry')]);
    const judge = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: fast });
    const err = await judge.judge(input).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).attempts).toBe(3);
    expect((err as Error).message).toContain(`${baseUrl}/chat/completions`);
    expect((err as Error).message).toMatch(/failed after 3 attempts: no \{"judgement": "Correct" \| "Incorrect"\} object in the reply; last reply: "no idea, sorry"/);
    expect(seen).toHaveLength(3);
  });

  it('retries HTTP 500 and timeouts, then succeeds', async () => {
    const { baseUrl, seen } = await fakeServer([status(500, 'overloaded'), hang(), chat('{"rationale": "r", "judgement": "Incorrect"}')]);
    const judge = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: { timeoutMs: 300, retries: 2, backoffMs: 1 } });
    expect(await judge.judge(input)).toEqual({ correct: false, rationale: 'r', attempts: 3 });
    expect(seen).toHaveLength(3);
  });

  it('gives up on persistent 500s naming the endpoint and the body', async () => {
    const { baseUrl, seen } = await fakeServer([status(503, 'model loading')]);
    const judge = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: fast });
    await expect(judge.judge(input)).rejects.toThrow(new RegExp(`failed after 3 attempts: HTTP 503 from ${baseUrl}/chat/completions: model loading; no reply was received`));
    expect(seen).toHaveLength(3);
  });

  it('does not retry a refused key, and says which key to check', async () => {
    const { baseUrl, seen } = await fakeServer([status(401, 'invalid api key')]);
    const judge = new LlmJudge({ baseUrl, model: 'm', apiKeyEnv: 'JUDGE_KEY', env: { JUDGE_KEY: 'bad' }, limits: fast });
    await expect(judge.judge(input)).rejects.toThrow(/HTTP 401 .*invalid api key.*check the API key \(apiKey, or \$JUDGE_KEY\)/);
    expect(seen).toHaveLength(1);
  });

  it('retries a reply that is not a chat completion', async () => {
    const { baseUrl } = await fakeServer([(res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"error": "weird"}'); }]);
    const judge = new LlmJudge({ baseUrl, model: 'm', env: {}, limits: { ...fast, retries: 1 } });
    await expect(judge.judge(input)).rejects.toThrow(/failed after 2 attempts: the reply is not a chat completion.*last reply: .*weird/);
  });
});

describe('LlmJudge options', () => {
  it('rejects bad options naming the field', () => {
    expect(() => new LlmJudge({ baseUrl: 'not a url', model: 'm' })).toThrow(/LLM judge options: baseUrl: Invalid url/);
    expect(() => new LlmJudge({ baseUrl: 'http://127.0.0.1:1/v1', model: '' })).toThrow(/model/);
    expect(() => new LlmJudge({ baseUrl: 'http://127.0.0.1:1/v1', model: 'm', temprature: 1 } as never)).toThrow(/Unrecognized key/);
  });

  it('an explicitly named key variable must be set', () => {
    expect(() => new LlmJudge({ baseUrl: 'http://127.0.0.1:1/v1', model: 'm', apiKeyEnv: 'NOPE_KEY', env: {} })).toThrow(/apiKeyEnv names NOPE_KEY, but it is not set; export NOPE_KEY=<key> or pass apiKey/);
  });
});

describe('judgePrompt', () => {
  it('states the question, the labeled answer(s) and the prediction cut to 500 characters', () => {
    const p = judgePrompt({ question: 'Q?', prediction: 'x'.repeat(600), golds: ['a', 'b'] });
    expect(p).toContain('Question: Q?');
    expect(p).toContain('Labeled Answer: any one of ["a","b"]');
    expect(p).toContain(`Predicted Answer: ${'x'.repeat(500)}\n`);
    expect(p).not.toContain('x'.repeat(501));
    expect(judgePrompt({ question: 'Q?', prediction: 'p', golds: 'a' })).toContain('Labeled Answer: a\n');
    expect(() => judgePrompt({ question: 'Q?', prediction: 'p', golds: [] })).toThrow(/gold answer list is empty/);
  });
});

describe('parseJudgeReply', () => {
  it.each([
    ['{"rationale": "same", "judgement": "Correct"}', { correct: true, rationale: 'same' }],
    ['```json\n{"rationale": "differs", "judgement": "Incorrect"}\n```', { correct: false, rationale: 'differs' }],
    ['Sure! {"rationale": "a {brace} inside", "judgement": " CORRECT "} Hope that helps.', { correct: true, rationale: 'a {brace} inside' }],
    ['{"rationale": "trailing comma", "judgement": "Correct",}', { correct: true, rationale: 'trailing comma' }],
    ['<think>maybe {"judgement": "Incorrect"}?</think>\n{"rationale": "checked", "judgement": "Correct"}', { correct: true, rationale: 'checked' }],
    ['{"result": {"rationale": "nested", "judgement": "Incorrect"}}', { correct: false, rationale: 'nested' }],
    ['Template: {"judgement": "Correct" or "Incorrect"}\nAnswer: {"rationale": "r", "judgement": "Incorrect"}', { correct: false, rationale: 'r' }],
    ["{'rationale': 'python dict', 'judgement': 'Correct'}", { correct: true, rationale: 'python dict' }], // read by the field fallback
    ['{"rationale": "broken \\"json\\"", "judgement": "Correct" "extra"}', { correct: true, rationale: 'broken \\"json\\"' }],
    ['{"rationale": 42, "judgement": "Incorrect"}', { correct: false, rationale: '42' }],
  ])('%j', (reply, want) => {
    expect(parseJudgeReply(reply)).toEqual(want);
  });

  it.each(['', 'Correct', '{"judgement": "Partially correct"}', '{"rationale": "no verdict"}', '{"judgement": true}'])('%j is unreadable', (reply) => {
    expect(parseJudgeReply(reply)).toBeNull();
  });
});

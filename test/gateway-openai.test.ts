/**
 * The agent gateway driven by the official `openai` npm client, on a real tiny model: a Qwen2-family
 * model with the byte-level BPE tokenizer of test/fixtures/tiny-bpe, written as a Hugging Face
 * directory (it has no chat template, so the gateway's default ChatML template is used), then
 * fine-tuned (SFT, ~150 steps, a few seconds) to answer three conversations exactly:
 *
 *   tools + "Weather in Paris?"                  → <tool_call>{get_weather, city Paris}</tool_call>
 *   … + that call + tool result "sunny"          → "It is sunny in Paris."
 *   tools + "Break the tool."                    → a <tool_call> block that is not JSON
 *   "Say hello."                                 → "Hello world!"
 *
 * Everything the client sees is sampled by the engine (near-greedy, temperature 0.05) — nothing is
 * scripted — and every check compares the client's view with what the engine recorded.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { ChatTemplate } from '../src/engine/chat-template.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { engineTokenizer, loadModel, type LoadedModel } from '../src/engine/load-model.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { loadNativeBackend } from '../src/engine/native.ts';
import { Transformer } from '../src/engine/model.ts';
import { startGatewayServer, type GatewayServer } from '../src/gateway/server.ts';
import { DEFAULT_CHAT_TEMPLATE } from '../src/gateway/tool-calls.ts';
import { gatewayWorkflow } from '../src/gateway/workflow.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { InProcessTrainer } from '../src/train/policy-trainer.ts';
import { Trainer } from '../src/train/trainer.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const backend = loadNativeBackend() ?? new JsBackend();

const TOOLS: ChatCompletionTool[] = [{
  type: 'function',
  function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
}];
const ASK: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];
const CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const BROKEN_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>';
const afterCall = (id: string): ChatCompletionMessageParam[] => [
  ...ASK,
  { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
  { role: 'tool', tool_call_id: id, content: 'sunny' },
];
const NEAR_GREEDY = { temperature: 0.05, seed: 7 };

let dir: string;
let loaded: LoadedModel;
let trainer: BuiltinTrainer;
let engine: BuiltinEngine;
let gateway: GatewayServer;
let client: OpenAI;

/** A client whose calls are recorded under `rolloutId` (the X-Rollout-Id header). */
function clientFor(rolloutId: string): OpenAI {
  return new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', defaultHeaders: { 'X-Rollout-Id': rolloutId }, maxRetries: 0 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentrl-gateway-'));
  const arch = tinyArch('qwen2', { maxPositions: 1024 });
  await writeHfModelDir(dir, arch, randomHfTensors(arch, 3, 0.05), { dtype: 'F32', tokenizerFrom: FIXTURE });
  loaded = await loadModel(dir, backend, { contextLength: 1024 });
  expect(loaded.chatTemplate).toBeNull(); // the tiny model ships no template: the gateway's default is used
  const tok = loaded.tokenizer;
  // SFT on the exact conversations the gateway will render (same template, same tokenizer).
  const template = ChatTemplate.fromString(DEFAULT_CHAT_TEMPLATE, { specialTokens: { eos_token: '<|im_end|>' } });
  const example = (messages: unknown[], tools: unknown[] | null, target: string): Sample => {
    const seq = emptySeq();
    appendContext(seq, tok.encode(template.render(messages as never, { tools: tools as never, addGenerationPrompt: true })));
    const ids = [...tok.encode(target), tok.eosId];
    appendCompletion(seq, { ids, logprobs: ids.map(() => 0), versions: ids.map(() => 0) });
    return { seq, reward: 0, keys: {} };
  };
  const data = [
    example(ASK, TOOLS, CALL_TEXT),
    example(afterCall('call_x'), TOOLS, 'It is sunny in Paris.'),
    example([{ role: 'user', content: 'Break the tool.' }], TOOLS, BROKEN_TEXT),
    example([{ role: 'user', content: 'Say hello.' }], null, 'Hello world!'),
  ];
  trainer = new BuiltinTrainer(loaded.model, { lr: 1e-2, weightDecay: 0 });
  for (let s = 0; s < 150; s++) trainer.trainStep(data, sftLoss);
  const engineModel = new Transformer(loaded.model.config, backend, 0);
  engineModel.params.set(loaded.model.params);
  engine = new BuiltinEngine(engineModel, engineTokenizer(loaded), { maxBatch: 8, seed: 11 });
  gateway = await startGatewayServer({ engine, stopIds: loaded.stopIds, modelName: 'tiny', port: 0 });
  client = clientFor('setup');
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('agent gateway with the official openai client', () => {
  it('answers a chat completion with the sampled text, and records the call token for token', async () => {
    const c = clientFor('chat-1');
    const r = await c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello.' }], ...NEAR_GREEDY, max_tokens: 20 });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('tiny');
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Hello world!' });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const rec = gateway.recorder.get('chat-1')!;
    expect(rec.calls).toHaveLength(1);
    const call = rec.calls[0]!;
    const tok = loaded.tokenizer;
    // The prompt is the default ChatML rendering; the completion ends with <|im_end|>, which is
    // recorded (the model learns to stop) but not returned.
    expect(tok.decode(call.promptIds)).toBe('<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n');
    expect(call.ids).toEqual([...tok.encode('Hello world!'), tok.eosId]);
    expect(call.versions).toEqual(call.ids.map(() => 0));
    expect(r.usage).toEqual({ prompt_tokens: call.promptIds.length, completion_tokens: call.ids.length, total_tokens: call.promptIds.length + call.ids.length });
  });

  it('cuts the answer at a stop string, as OpenAI does, while the recorded completion keeps it', async () => {
    const r = await clientFor('stop-1').chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Say hello.' }], ...NEAR_GREEDY, max_tokens: 20, stop: [' world'] });
    expect(r.choices[0]!.message.content).toBe('Hello');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const call = gateway.recorder.get('stop-1')!.calls[0]!;
    expect(loaded.tokenizer.decode(call.ids)).toBe('Hello world'); // the built-in engine matches stop strings at token ends
    expect(call.ids).not.toContain(loaded.tokenizer.eosId);
  });

  it('round-trips a tool call: the model calls get_weather, the agent answers, the model uses the result', async () => {
    const c = clientFor('tools-1');
    const first = await c.chat.completions.create({ model: 'm', messages: ASK, tools: TOOLS, ...NEAR_GREEDY, max_tokens: 80 });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toHaveLength(1);
    const tc = choice.message.tool_calls![0]!;
    expect(tc.type).toBe('function');
    if (tc.type !== 'function') throw new Error('unreachable');
    expect(tc.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(tc.function.name).toBe('get_weather');
    expect(JSON.parse(tc.function.arguments)).toEqual({ city: 'Paris' });
    // The agent runs the tool and sends the result back, exactly as an OpenAI agent does.
    const second = await c.chat.completions.create({
      model: 'm', tools: TOOLS, ...NEAR_GREEDY, max_tokens: 40,
      messages: [...ASK, choice.message, { role: 'tool', tool_call_id: tc.id, content: 'sunny' }],
    });
    expect(second.choices[0]!.message.content).toBe('It is sunny in Paris.');
    expect(second.choices[0]!.finish_reason).toBe('stop');
    const calls = gateway.recorder.get('tools-1')!.calls;
    expect(calls.map((x) => [x.finishReason, x.toolCalls])).toEqual([['tool_calls', 1], ['stop', 0]]);
    const tok = loaded.tokenizer;
    expect(tok.decode(calls[0]!.ids)).toBe(`${CALL_TEXT}<|im_end|>`);
    // The second prompt renders the call back in the Hermes format, and the result as a tool response.
    const prompt2 = tok.decode(calls[1]!.promptIds);
    expect(prompt2.endsWith(`<|im_start|>assistant\n${CALL_TEXT}<|im_end|>\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n`)).toBe(true);
    expect(prompt2).toContain('"name": "get_weather"'); // the tool definition is in the system turn
  });

  it('returns a malformed tool call as plain content and records it as invalid', async () => {
    const c = clientFor('broken-1');
    const r = await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Break the tool.' }], tools: TOOLS, ...NEAR_GREEDY, max_tokens: 80 });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.choices[0]!.message.content).toBe(BROKEN_TEXT);
    expect(r.choices[0]!.message.tool_calls).toBeUndefined();
    const call = gateway.recorder.get('broken-1')!.calls[0]!;
    expect(call.malformedToolCall).toMatch(/^tool call 1: not JSON/);
    const reported = await fetch(`${gateway.url}/v1/rollouts/broken-1/reward`, { method: 'POST', body: JSON.stringify({ reward: 0 }) });
    expect(reported.status).toBe(200);
    const traj = gateway.recorder.take('broken-1');
    expect(traj.samples[0]!.step).toMatchObject({ kind: 'turn', valid: false, turn: 0, lastOfEpisode: true });
  });

  it('streams: the SDK reassembles the same content and tool calls as the non-streamed answer', async () => {
    const plain = await clientFor('s-0').chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Say hello.' }], ...NEAR_GREEDY, max_tokens: 20 });
    const stream = clientFor('s-1').chat.completions.stream({ model: 'm', messages: [{ role: 'user', content: 'Say hello.' }], ...NEAR_GREEDY, max_tokens: 20, stream_options: { include_usage: true } });
    let deltas = 0;
    stream.on('content', () => deltas++);
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
    expect(final.choices[0]!.finish_reason).toBe('stop');
    expect(deltas).toBeGreaterThan(3); // token by token, not one blob
    expect(final.usage).toEqual(plain.usage);

    const plainTool = await clientFor('s-2').chat.completions.create({ model: 'm', messages: ASK, tools: TOOLS, ...NEAR_GREEDY, max_tokens: 80 });
    const toolStream = clientFor('s-3').chat.completions.stream({ model: 'm', messages: ASK, tools: TOOLS, ...NEAR_GREEDY, max_tokens: 80 });
    const finalTool = await toolStream.finalChatCompletion();
    const [a, b] = [plainTool.choices[0]!, finalTool.choices[0]!];
    expect(b.finish_reason).toBe('tool_calls');
    expect(b.message.content ?? null).toBe(a.message.content);
    const fn = (m: typeof a.message) => m.tool_calls!.map((t) => (t.type === 'function' ? [t.function.name, JSON.parse(t.function.arguments)] : null));
    expect(fn(b.message)).toEqual(fn(a.message));
    // Same sampled tokens whether streamed or not (same seed, same prompt).
    expect(gateway.recorder.get('s-3')!.calls[0]!.ids).toEqual(gateway.recorder.get('s-2')!.calls[0]!.ids);
    expect(gateway.recorder.get('s-1')!.calls[0]!.ids).toEqual(gateway.recorder.get('s-0')!.calls[0]!.ids);
  });

  it('reports behaviour logprobs in OpenAI\'s format, equal to the recorded ones and to the trainer\'s recomputation', async () => {
    // Temperature 1 with nucleus sampling: real sampling, logprobs far from 0, top-p masks recorded.
    const r = await clientFor('lp-1').chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Weather in Paris?' }], temperature: 1, top_p: 0.95, seed: 3, max_tokens: 24, logprobs: true });
    const call = gateway.recorder.get('lp-1')!.calls[0]!;
    const content = r.choices[0]!.logprobs!.content!;
    const visible = call.finishReason === 'length' ? call.ids.length : call.ids.length - 1;
    expect(content.map((x) => x.logprob)).toEqual(call.logprobs.slice(0, visible));
    expect(content).toHaveLength(visible);
    expect(content.every((x) => Array.isArray(x.top_logprobs) && x.bytes!.length > 0)).toBe(true);
    await fetch(`${gateway.url}/v1/rollouts/lp-1/reward`, { method: 'POST', body: JSON.stringify({ reward: 1 }) });
    const traj = gateway.recorder.take('lp-1');
    const sample = traj.samples[0]!;
    expect(sample.seq.ids).toEqual([...call.promptIds, ...call.ids]);
    expect(sample.temperature).toBe(1);
    expect(sample.seq.constraintMasks?.some((m) => m !== null)).toBe(true);
    // The trainer holds the engine's weights (version 0): recomputed logprobs match the behaviour ones.
    const recomputed = trainer.computeLogprobs([sample])[0]!;
    let maxDiff = 0, trained = 0;
    sample.seq.mask.forEach((m, t) => {
      if (!m) return;
      trained++;
      maxDiff = Math.max(maxDiff, Math.abs(recomputed[t]! - sample.seq.logprobs[t]!));
    });
    expect(trained).toBe(call.ids.length);
    expect(Math.min(...call.logprobs)).toBeLessThan(-0.01); // not a trivially greedy completion
    expect(maxDiff).toBeLessThanOrEqual(1e-5);
  });

  it('trains one Trainer step on rollouts of an unchanged OpenAI agent, and the weights change', async () => {
    const before = Float32Array.from(engine.model.params);
    // The agent: plain OpenAI SDK code given a base URL; reward returned by one member, reported over HTTP by the other.
    const agent = gatewayWorkflow<string>(gateway, async (question, { baseURL, apiKey, rewardURL, rollout, signal }) => {
      const ai = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
      const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: question }];
      const first = await ai.chat.completions.create({ model: 'm', messages, tools: TOOLS, temperature: 0.5, max_tokens: 80 }, { signal });
      const msg = first.choices[0]!.message;
      messages.push(msg);
      for (const tc of msg.tool_calls ?? []) messages.push({ role: 'tool', tool_call_id: tc.id, content: 'sunny' });
      const answer = await ai.chat.completions.create({ model: 'm', messages, tools: TOOLS, temperature: 0.5, max_tokens: 40 }, { signal });
      void answer;
      if (rollout.member === 0) return 0;
      const res = await fetch(rewardURL, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: JSON.stringify({ reward: 1 }) });
      expect(res.status).toBe(200);
    });
    let batch: Sample[] = [];
    const loop = new Trainer<string>({
      config: { steps: 1, batchSize: 1, groupSize: 2, maxStaleness: 0, credit: { kind: 'outcome' }, advantage: { estimator: 'grpo' }, loss: { kind: 'ppo' } },
      engine, trainer: new InProcessTrainer(trainer), source: ['Weather in Paris?'], workflow: agent,
      onBatch: (samples) => (batch = samples),
    });
    const result = await loop.run();
    expect(result.steps).toHaveLength(1);
    expect(engine.version()).toBe(1);
    // Two rollouts × two calls each; each call one sample, with the rollout's reward and opposite advantages.
    expect(batch).toHaveLength(4);
    expect(batch.map((s) => s.step?.turn)).toEqual([0, 1, 0, 1]);
    expect(batch.map((s) => s.reward).sort()).toEqual([0, 0, 1, 1]);
    const adv = batch.map((s) => s.advantage as number);
    expect(adv[0]).toBeCloseTo(-adv[2]!, 6);
    expect(Math.abs(adv[0]!)).toBeGreaterThan(0.1);
    let changed = 0;
    for (let i = 0; i < before.length; i++) if (engine.model.params[i] !== before[i]) changed++;
    expect(changed).toBeGreaterThan(before.length / 2);
    // The workflow took its rollouts' trajectories: only the other tests' rollouts (no reward) are left.
    expect(gateway.recorder.ids().sort()).toEqual(['chat-1', 's-0', 's-1', 's-2', 's-3', 'stop-1', 'tools-1']);
  });
});

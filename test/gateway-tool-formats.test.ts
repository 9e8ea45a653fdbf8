/**
 * The gateway's tool-call formats (src/gateway/tool-formats/): Hermes `<tool_call>` blocks, Llama 3
 * JSON (`{"name", "parameters"}`, optional `<|python_tag|>`, several calls separated by `;`) and
 * Mistral (`[TOOL_CALLS] [{...}, ...]`). Hand-written model outputs → the OpenAI `tool_calls` and
 * content the gateway returns; malformed calls → the whole text as content plus the reason, as for
 * Hermes; a property that any list of calls written in a format parses back to itself, and one that
 * the streamed content adds up to the parsed content. End to end: a gateway with `toolCallFormat:
 * 'llama3-json'` over a scripted engine (the model's text is fixed, so the answers are exact) with the
 * official `openai` client, and `agentrl serve gateway --tool-call-format` refusing unknown values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import fc from 'fast-check';
import OpenAI from 'openai';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { registerServeCommands } from '../src/cli/serve.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { ScriptedEngine } from '../src/engine/scripted-engine.ts';
import { runServeGateway } from '../src/gateway/cli.ts';
import { startGatewayServer, type GatewayServer } from '../src/gateway/server.ts';
import { HERMES, ToolCallStreamer, type ParsedToolCalls, type ToolCallFormat } from '../src/gateway/tool-calls.ts';
import { TOOL_CALL_FORMATS, toolCallFormat, toolCallFormatError } from '../src/gateway/tool-formats/index.ts';
import { LLAMA3_JSON } from '../src/gateway/tool-formats/llama3-json.ts';
import { MISTRAL, newMistralToolCallId } from '../src/gateway/tool-formats/mistral.ts';

/** Ids call_0, call_1, … so expected values can be written out. */
const ids = () => {
  let n = 0;
  return () => `call_${n++}`;
};
const call = (id: string, name: string, args: string) => ({ id, type: 'function' as const, function: { name, arguments: args } });

/** `text` kept whole as content, no calls, and a reason matching `why`: the malformed path every format shares. */
function expectMalformed(format: ToolCallFormat, text: string, why: RegExp): void {
  const p = format.parse(text, ids());
  expect(p.content).toBe(text);
  expect(p.toolCalls).toEqual([]);
  expect(p.malformed).toMatch(why);
}

describe('Llama 3 JSON tool calls', () => {
  it('parses one call, with or without <|python_tag|>, "parameters" or "arguments"; the content is null', () => {
    const one: ParsedToolCalls = { content: null, toolCalls: [call('call_0', 'get_weather', '{"city":"Paris"}')] };
    expect(LLAMA3_JSON.parse('{"name": "get_weather", "parameters": {"city": "Paris"}}', ids())).toEqual(one);
    expect(LLAMA3_JSON.parse('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', ids())).toEqual(one);
    expect(LLAMA3_JSON.parse('\n  {"name": "get_weather", "arguments": {"city": "Paris"}}\n', ids())).toEqual(one);
    expect(LLAMA3_JSON.parse('{"name": "now"}', ids())).toEqual({ content: null, toolCalls: [call('call_0', 'now', '{}')] });
  });

  it('parses several calls separated by ";" (Llama 3.2), a ";" or braces inside a string argument included', () => {
    const text = '<|python_tag|>{"name": "a", "parameters": {"q": "x; {y}"}}; {"name": "b", "parameters": {"n": [1, {"m": 2}]}};\n{"name": "c", "parameters": {}};';
    expect(LLAMA3_JSON.parse(text, ids())).toEqual({
      content: null,
      toolCalls: [call('call_0', 'a', '{"q":"x; {y}"}'), call('call_1', 'b', '{"n":[1,{"m":2}]}'), call('call_2', 'c', '{}')],
    });
  });

  it('returns text that does not start with a call as plain content, JSON later in it included', () => {
    for (const text of ['It is sunny in Paris.', 'The call would be {"name": "a", "parameters": {}}', '', '  \n', '<|eot_id|>']) {
      expect(LLAMA3_JSON.parse(text, ids())).toEqual({ content: text, toolCalls: [] });
    }
  });

  it('keeps a malformed call as content and says why', () => {
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": {x}}', /^tool call 1: not JSON \(/);
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": {"x": 1}', /^tool call 1: not JSON \(the object is never closed\)/);
    expectMalformed(LLAMA3_JSON, '{"answer": 42}', /^tool call 1: "name" must be a non-empty string/);
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": "x=1"}', /^tool call 1: "parameters" must be a JSON object/);
    expectMalformed(LLAMA3_JSON, '<|python_tag|>brave_search.call(query="paris")', /^tool call 1: expected a JSON object \{"name": \.\.\., "parameters": \{\.\.\.\}\} after <\|python_tag\|>/);
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": {}} and then some words', /^after tool call 1: expected ';' before another call, or the end of the text \(got "and then some words"\)/);
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": {}}; {"name": "b", "parameters": []}', /^tool call 2: "parameters" must be a JSON object/);
    expectMalformed(LLAMA3_JSON, '{"name": "a", "parameters": {}}; b()', /^tool call 2: expected a JSON object .* after ';'/);
  });
});

describe('Mistral tool calls', () => {
  it('parses the [TOOL_CALLS] array and the content before it; extra keys like "id" are ignored', () => {
    const text = 'Checking both.\n[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}, {"name": "now", "arguments": {}}]';
    expect(MISTRAL.parse(text, ids())).toEqual({
      content: 'Checking both.',
      toolCalls: [call('call_0', 'get_weather', '{"city":"Paris"}'), call('call_1', 'now', '{}')],
    });
    // Mistral-Nemo writes no space after the token; no content gives null.
    expect(MISTRAL.parse(' [TOOL_CALLS][{"name": "now", "arguments": {}}]', ids())).toEqual({ content: null, toolCalls: [call('call_0', 'now', '{}')] });
  });

  it('gives 9-character alphanumeric ids by default (Mistral templates refuse others)', () => {
    const p = MISTRAL.parse('[TOOL_CALLS] [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]');
    expect(p.toolCalls.map((c) => c.id)).toEqual([expect.stringMatching(/^[A-Za-z0-9]{9}$/), expect.stringMatching(/^[A-Za-z0-9]{9}$/)]);
    expect(p.toolCalls[0]!.id).not.toBe(p.toolCalls[1]!.id);
    expect(new Set(Array.from({ length: 200 }, newMistralToolCallId)).size).toBe(200);
    expect(HERMES.parse('<tool_call>{"name": "a"}</tool_call>').toolCalls[0]!.id).toMatch(/^call_[0-9a-f]{24}$/);
  });

  it('returns text without [TOOL_CALLS] as plain content', () => {
    for (const text of ['Hello.', '[{"name": "a", "arguments": {}}]', 'a [TOOL_CALL', '']) expect(MISTRAL.parse(text, ids())).toEqual({ content: text, toolCalls: [] });
  });

  it('keeps a malformed call as content and says why', () => {
    expectMalformed(MISTRAL, '[TOOL_CALLS] [{"name": "a", "arguments": {x}}]', /^tool calls after \[TOOL_CALLS\]: not JSON \(/);
    expectMalformed(MISTRAL, '[TOOL_CALLS] {"name": "a", "arguments": {}}', /^expected a non-empty JSON array \[\{"name": \.\.\., "arguments": \{\.\.\.\}\}, \.\.\.\] after \[TOOL_CALLS\]/);
    expectMalformed(MISTRAL, '[TOOL_CALLS] []', /^expected a non-empty JSON array/);
    expectMalformed(MISTRAL, 'Sure [TOOL_CALLS] [{"name": "a", "arguments": {}}, {"arguments": {}}]', /^tool call 2: "name" must be a non-empty string/);
    expectMalformed(MISTRAL, '[TOOL_CALLS] [{"name": "a", "arguments": "x=1"}]', /^tool call 1: "arguments" must be a JSON object/);
    expectMalformed(MISTRAL, '[TOOL_CALLS] [{"name": "a", "arguments": {}}][TOOL_CALLS] [{"name": "b", "arguments": {}}]', /not JSON \(.*\); \[TOOL_CALLS\] comes once, before one array of all the calls/);
    // The v11+ layout (Mistral Small 3.1+) is not this format.
    expectMalformed(MISTRAL, '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', /^tool calls after \[TOOL_CALLS\]: not JSON/);
  });
});

describe('Hermes tool calls through the ToolCallFormat interface (unchanged)', () => {
  it('parses blocks and keeps a malformed one as content, as before', () => {
    expect(HERMES.parse('Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>', ids())).toEqual({ content: 'Let me check.', toolCalls: [call('call_0', 'a', '{"x":1}')] });
    expect(HERMES.parse('{"name": "a", "parameters": {}}', ids())).toEqual({ content: '{"name": "a", "parameters": {}}', toolCalls: [] });
    expectMalformed(HERMES, '<tool_call>{"name": "a", "arguments": {x}}</tool_call>', /^tool call 1: not JSON/);
    expectMalformed(HERMES, '<tool_call>{"name": "a", "arguments": "x"}</tool_call>', /^tool call 1: "arguments" must be a JSON object/);
    expectMalformed(HERMES, '<tool_call>{"name": "a", "arguments": {}}', /^tool call 1 has no <\/tool_call>/);
    expectMalformed(HERMES, '<tool_call>["a"]</tool_call>', /^tool call 1: expected a JSON object \{"name": \.\.\., "arguments": \{\.\.\.\}\}/);
    expectMalformed(HERMES, '<tool_call>{"name": "a"}</tool_call><tool_call>{"arguments": {}}</tool_call>', /^tool call 2: "name" must be a non-empty string/);
  });
});

describe('every format (properties)', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/);
  // Strings that stress the scanners (separators, braces, quotes, escapes) as well as random ones.
  const str = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(';', '}', '{"', '\\', '"; {"name": "x"}', ']', '\n'));
  const value = fc.oneof(str, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.array(str, { maxLength: 3 }), fc.jsonValue({ maxDepth: 2 }));
  const args = fc.dictionary(str, value, { maxKeys: 4 });
  const calls = fc.array(fc.record({ name, args }), { minLength: 1, maxLength: 4 });
  const lead = fc.constantFrom('', 'Let me check.', 'Sure:\n', '  ');

  /** Each format's calls written as its models write them (the layout of its reference chat template). */
  const render: Record<keyof typeof TOOL_CALL_FORMATS, (cs: { name: string; args: Record<string, unknown> }[], content: string, variant: boolean) => string> = {
    hermes: (cs, content) => content + cs.map((c) => `<tool_call>\n${JSON.stringify({ name: c.name, arguments: c.args })}\n</tool_call>`).join('\n'),
    'llama3-json': (cs, _content, tag) => (tag ? '<|python_tag|>' : '') + cs.map((c) => `{"name": ${JSON.stringify(c.name)}, "parameters": ${JSON.stringify(c.args)}}`).join('; '),
    mistral: (cs, content, space) => `${content}[TOOL_CALLS]${space ? ' ' : ''}${JSON.stringify(cs.map((c) => ({ name: c.name, arguments: c.args })))}`,
  };

  for (const [formatName, format] of Object.entries(TOOL_CALL_FORMATS)) {
    const write = render[formatName as keyof typeof TOOL_CALL_FORMATS];

    it(`${formatName}: any list of calls written in the format parses back to itself`, () => {
      fc.assert(
        fc.property(calls, lead, fc.boolean(), (cs, content, variant) => {
          const text = write(cs, content, variant);
          const parsed = format.parse(text, ids());
          expect(parsed.malformed).toBeUndefined();
          expect(parsed.toolCalls).toEqual(cs.map((c, i) => call(`call_${i}`, c.name, JSON.stringify(c.args))));
          expect(parsed.toolCalls.map((c) => JSON.parse(c.function.arguments))).toEqual(cs.map((c) => JSON.parse(JSON.stringify(c.args))));
          // Llama 3 calls are the whole text; the others keep the content before them (trailing blanks trimmed).
          expect(parsed.content).toBe(formatName === 'llama3-json' || content.trim() === '' ? null : content.trimEnd());
        }),
        { numRuns: 300 },
      );
    });

    it(`${formatName}: streamed content adds up to the parsed content, whatever the text`, () => {
      const pieces = fc.constantFrom('Hi', ' ', '\n', ';', 'x', '{', '<', '[', '<tool', '<tool_call>', '</tool_call>', '<|python', '<|python_tag|>', '[TOOL', '[TOOL_CALLS]',
        '{"name": "f", "arguments": {}}', '{"name": "g", "parameters": {"a": 1}}', '[{"name": "f", "arguments": {}}]', '{"bad"');
      fc.assert(
        fc.property(fc.array(pieces, { maxLength: 10 }), fc.array(fc.nat(60), { maxLength: 8 }), (parts, cuts) => {
          const text = parts.join('');
          const streamer = new ToolCallStreamer(ids(), format);
          let streamed = '';
          for (const cut of [...cuts.map((k) => Math.min(k, text.length)).sort((a, b) => a - b), text.length]) streamed += streamer.push(text.slice(0, cut)).content ?? '';
          const end = streamer.finish(text);
          streamed += end.content ?? '';
          const parsed = format.parse(text, ids());
          expect(streamed).toBe(parsed.content ?? '');
          expect(end.toolCalls ?? []).toEqual(parsed.toolCalls);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('is selected by name; an unknown name is refused naming the option and the valid values', () => {
    expect(toolCallFormat('hermes')).toBe(HERMES);
    expect(toolCallFormat('llama3-json')).toBe(LLAMA3_JSON);
    expect(toolCallFormat('mistral')).toBe(MISTRAL);
    expect(Object.values(TOOL_CALL_FORMATS).map((f) => f.name)).toEqual(Object.keys(TOOL_CALL_FORMATS));
    expect(toolCallFormatError('llama3-json')).toBeNull();
    expect(() => toolCallFormat('toString')).toThrow('unknown tool-call format "toString" (--tool-call-format / toolCallFormat); valid values: hermes, llama3-json, mistral');
  });
});

describe('a llama3-json gateway, end to end with the openai client', () => {
  const tokenizer = HfTokenizer.fromDirectory(join(import.meta.dirname, 'fixtures', 'tiny-bpe'));
  const TOOLS: ChatCompletionTool[] = [
    { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
  ];
  const TWO_CALLS = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {"tz": "Europe/Paris"}}';
  const BROKEN = '{"name": "get_weather", "parameters": {"city": }}';
  const HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
  /** The "model": a fixed reply per question. */
  const policy = (context: string) =>
    context.includes('Weather and time in Paris?') ? TWO_CALLS
    : context.includes('Break it.') ? BROKEN
    : context.includes('Wrong format.') ? HERMES_CALL
    : 'Hello there.';
  let g: GatewayServer;
  const client = (rollout: string) => new OpenAI({ baseURL: `${g.url}/rollouts/${rollout}/v1`, apiKey: 'x', maxRetries: 0 });
  const ask = (content: string) => [{ role: 'user' as const, content }];

  beforeAll(async () => {
    g = await startGatewayServer({ engine: new ScriptedEngine(tokenizer, policy), port: 0, toolCallFormat: 'llama3-json' });
  });
  afterAll(async () => {
    await g?.close();
  });

  it('returns the calls as OpenAI tool_calls and records the sampled tokens untouched', async () => {
    const r = await client('l3-1').chat.completions.create({ model: 'm', messages: ask('Weather and time in Paris?'), tools: TOOLS });
    const choice = r.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls!.map((t) => (t.type === 'function' ? [t.function.name, t.function.arguments] : null))).toEqual([
      ['get_weather', '{"city":"Paris"}'],
      ['get_time', '{"tz":"Europe/Paris"}'],
    ]);
    expect(choice.message.tool_calls!.map((t) => t.id)).toEqual([expect.stringMatching(/^call_[0-9a-f]{24}$/), expect.stringMatching(/^call_[0-9a-f]{24}$/)]);
    const rec = g.recorder.get('l3-1')!.calls;
    expect(rec).toHaveLength(1);
    // Token out: the ids the engine sampled (the text encoded once), not a re-encoding of the parsed calls.
    expect(rec[0]!.ids).toEqual(tokenizer.encode(TWO_CALLS));
    expect(rec[0]).toMatchObject({ text: TWO_CALLS, toolCalls: 2, finishReason: 'tool_calls' });
    expect(rec[0]!.malformedToolCall).toBeUndefined();
    expect(tokenizer.decode(rec[0]!.promptIds)).toMatch(/Weather and time in Paris\?<\|im_end\|>\n<\|im_start\|>assistant\n$/);
  });

  it('streams the same calls, and no content', async () => {
    const stream = client('l3-2').chat.completions.stream({ model: 'm', messages: ask('Weather and time in Paris?'), tools: TOOLS });
    let content = '';
    stream.on('content', (delta) => (content += delta));
    const final = await stream.finalChatCompletion();
    const m = final.choices[0]!.message;
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    expect(content).toBe('');
    expect(m.tool_calls!.map((t) => (t.type === 'function' ? [t.function.name, JSON.parse(t.function.arguments)] : null))).toEqual([
      ['get_weather', { city: 'Paris' }],
      ['get_time', { tz: 'Europe/Paris' }],
    ]);
    expect(g.recorder.get('l3-2')!.calls[0]).toMatchObject({ ids: tokenizer.encode(TWO_CALLS), toolCalls: 2 });
  });

  it('returns a malformed call as plain content and records it as invalid (as Hermes does)', async () => {
    const r = await client('l3-3').chat.completions.create({ model: 'm', messages: ask('Break it.'), tools: TOOLS });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.choices[0]!.message.content).toBe(BROKEN);
    expect(r.choices[0]!.message.tool_calls).toBeUndefined();
    const rec = g.recorder.get('l3-3')!.calls[0]!;
    expect(rec.malformedToolCall).toMatch(/^tool call 1: not JSON \(/);
    expect(rec).toMatchObject({ toolCalls: 0, finishReason: 'stop', ids: tokenizer.encode(BROKEN) });
  });

  it('parses only its own format: a Hermes block is plain content here; without tools nothing is parsed', async () => {
    const hermes = await client('l3-4').chat.completions.create({ model: 'm', messages: ask('Wrong format.'), tools: TOOLS });
    expect(hermes.choices[0]!.message).toMatchObject({ content: HERMES_CALL });
    expect(hermes.choices[0]!.message.tool_calls).toBeUndefined();
    expect(g.recorder.get('l3-4')!.calls[0]!.malformedToolCall).toBeUndefined();
    const noTools = await client('l3-5').chat.completions.create({ model: 'm', messages: ask('Weather and time in Paris?') });
    expect(noTools.choices[0]!.message.content).toBe(TWO_CALLS);
    expect(noTools.choices[0]!.finish_reason).toBe('stop');
  });

  it('refuses to start with an unknown format', async () => {
    await expect(startGatewayServer({ engine: new ScriptedEngine(tokenizer, policy), port: 0, toolCallFormat: 'foo' as never }))
      .rejects.toThrow('agent gateway: unknown tool-call format "foo" (--tool-call-format / toolCallFormat); valid values: hermes, llama3-json, mistral');
  });
});

describe('agentrl serve gateway --tool-call-format', () => {
  /** The CLI's own commander setup, parsed in-process; resolves with the error and what went to stderr. */
  async function parse(args: string[]): Promise<{ error: unknown; stderr: string; opts: Record<string, unknown> }> {
    let stderr = '';
    const program = new Command().exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
    registerServeCommands(program);
    const saved = process.env.AGENTRL_GATEWAY_TOKEN;
    delete process.env.AGENTRL_GATEWAY_TOKEN;
    try {
      const error: unknown = await program.parseAsync(['serve', 'gateway', ...args], { from: 'user' }).then(() => null, (e: unknown) => e);
      const gateway = program.commands.find((c) => c.name() === 'serve')!.commands.find((c) => c.name() === 'gateway')!;
      return { error, stderr, opts: gateway.opts() };
    } finally {
      if (saved !== undefined) process.env.AGENTRL_GATEWAY_TOKEN = saved;
    }
  }

  it('refuses --tool-call-format foo, naming the flag and the valid values', async () => {
    const { error, stderr } = await parse(['--model', '/nonexistent', '--tool-call-format', 'foo']);
    expect(error).toBeInstanceOf(CommanderError);
    expect((error as CommanderError).exitCode).not.toBe(0);
    expect(stderr).toMatch(/option '--tool-call-format <format>' argument 'foo' is invalid\. Allowed choices are hermes, llama3-json, mistral\./);
  });

  it('passes a valid format through (default hermes) and checks it before loading the model', async () => {
    // --host 0.0.0.0 without a token stops runServeGateway before anything is loaded, after the options were parsed.
    const chosen = await parse(['--model', '/nonexistent', '--host', '0.0.0.0', '--tool-call-format', 'mistral']);
    expect((chosen.error as Error).message).toMatch(/needs a bearer token/);
    expect(chosen.opts.toolCallFormat).toBe('mistral');
    expect((await parse(['--model', '/nonexistent', '--host', '0.0.0.0'])).opts.toolCallFormat).toBe('hermes');
    await expect(runServeGateway({ model: '/nonexistent', host: '127.0.0.1', port: 0, maxBody: 1000, maxBatch: 1, seed: 0, toolCallFormat: 'foo' as never }))
      .rejects.toThrow('serve gateway: unknown tool-call format "foo" (--tool-call-format / toolCallFormat); valid values: hermes, llama3-json, mistral');
  });

  it('refuses a non-hermes format where only the default (hermes) chat template would prompt: a --checkpoint', async () => {
    await expect(runServeGateway({ checkpoint: '/nonexistent', host: '127.0.0.1', port: 0, maxBody: 1000, maxBatch: 1, seed: 0, toolCallFormat: 'llama3-json' }))
      .rejects.toThrow(/--tool-call-format llama3-json needs the model's own chat template .*or use --tool-call-format hermes/);
  });
});

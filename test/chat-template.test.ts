import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { afterEach, describe, expect, it } from 'vitest';
import { ChatTemplate, ChatTemplateError, strftime, type ChatMessage } from '../src/engine/chat-template.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'chat');
const smollm2 = () => ChatTemplate.fromDirectory(join(FIXTURES, 'smollm2-135m-instruct'));
const qwen25 = () => ChatTemplate.fromDirectory(join(FIXTURES, 'qwen2.5-0.5b-instruct'));
const qwen3 = () => ChatTemplate.fromDirectory(join(FIXTURES, 'qwen3-0.6b'));

const SMOL_SYSTEM = '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n';
const QWEN25_SYSTEM = '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n';

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'Bye' },
];
const CONVERSATION_TEXT =
  '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

let tmp: string | undefined;
afterEach(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});
function modelDir(files: Record<string, string>): string {
  tmp = mkdtempSync(join(tmpdir(), 'agentrl-chat-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(tmp, path, '..'), { recursive: true });
    writeFileSync(join(tmp, path), text);
  }
  return tmp;
}

describe('SmolLM2-135M-Instruct (ChatML with a default system prompt)', () => {
  it('renders a single user turn with the generation prompt, adding the default system prompt', () => {
    expect(smollm2().render([{ role: 'user', content: 'Hello' }], { addGenerationPrompt: true })).toBe(
      SMOL_SYSTEM + '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders system + user + assistant + user, with and without the generation prompt', () => {
    const t = smollm2();
    expect(t.render(CONVERSATION, { addGenerationPrompt: true })).toBe(CONVERSATION_TEXT + '<|im_start|>assistant\n');
    expect(t.render(CONVERSATION)).toBe(CONVERSATION_TEXT);
  });

  it('exposes the special tokens of the config', () => {
    const t = smollm2();
    expect(t.bosToken).toBe('<|im_start|>');
    expect(t.eosToken).toBe('<|im_end|>');
    expect(t.specialTokens.pad_token).toBe('<|im_end|>');
    expect(t.specialTokens.unk_token).toBe('<|endoftext|>');
    expect(t.names).toEqual(['default']);
  });
});

describe('Qwen2.5-0.5B-Instruct (tools)', () => {
  it('renders a single user turn with its default system prompt', () => {
    expect(qwen25().render([{ role: 'user', content: 'Hello' }], { addGenerationPrompt: true })).toBe(
      QWEN25_SYSTEM + '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders system + user + assistant + user', () => {
    expect(qwen25().render(CONVERSATION, { addGenerationPrompt: true })).toBe(CONVERSATION_TEXT + '<|im_start|>assistant\n');
  });

  it('renders a tool call round trip: tool schemas in the system prompt, the call, the response', () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 18}' },
    ];
    const expected =
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n' +
      'You may call one or more functions to assist with the user query.\n\n' +
      'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
      '{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city", ' +
      '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>\n\n' +
      'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n{"temp_c": 18}\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n';
    const t = qwen25();
    expect(t.render(messages, { tools: [WEATHER_TOOL], addGenerationPrompt: true })).toBe(expected);
    // Arguments given as an object render the same (a JSON string is parsed first, not quoted by `tojson`).
    const withObjectArgs = structuredClone(messages);
    withObjectArgs[1].tool_calls![0].function.arguments = { city: 'Paris' };
    expect(t.render(withObjectArgs, { tools: [WEATHER_TOOL], addGenerationPrompt: true })).toBe(expected);
    // The caller's messages are not modified.
    expect(messages[1].tool_calls![0].function.arguments).toBe('{"city": "Paris"}');
  });
});

describe('Qwen3-0.6B (thinking)', () => {
  it('thinking on (default): the generation prompt leaves the <think> block to the model', () => {
    expect(qwen3().render([{ role: 'user', content: 'Hello' }], { addGenerationPrompt: true })).toBe(
      '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('thinking off (enable_thinking: false): the generation prompt carries an empty <think> block', () => {
    expect(qwen3().render([{ role: 'user', content: 'Hello' }], { addGenerationPrompt: true, kwargs: { enable_thinking: false } })).toBe(
      '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
  });

  it('keeps the thinking of the last assistant turn and drops it from earlier turns', () => {
    const t = qwen3();
    const reply: ChatMessage = { role: 'assistant', content: 'It is 5.', reasoning_content: 'Add them.' };
    expect(t.render([{ role: 'user', content: 'What is 2+3?' }, reply])).toBe(
      '<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\nIt is 5.<|im_end|>\n',
    );
    // Thinking written inside the content is split out the same way.
    const inline: ChatMessage = { role: 'assistant', content: '<think>\nAdd them.\n</think>\n\nIt is 5.' };
    const history = [{ role: 'user', content: 'What is 2+3?' }, inline, { role: 'user', content: 'Times 4?' }];
    expect(t.render(history, { addGenerationPrompt: true })).toBe(
      '<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\nIt is 5.<|im_end|>\n<|im_start|>user\nTimes 4?<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders a system message and content parts (which this template reads as empty content)', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'ignored by this template' }] },
    ];
    expect(qwen3().render(messages, { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n',
    );
  });
});

describe('template features', () => {
  it('passes content parts through to templates that read them', () => {
    const t = ChatTemplate.fromString("{% for m in messages %}{% for p in m.content %}[{{ p.type }}:{{ p.text }}]{% endfor %}{% endfor %}");
    expect(t.render([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }])).toBe('[text:a][text:b]');
  });

  it('bos_token/eos_token are variables, taken from AddedToken objects too; kwargs may override them', () => {
    const t = ChatTemplate.fromTokenizerConfig({
      chat_template: '{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}',
      bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
      eos_token: { content: '</s>' },
    });
    expect(t.bosToken).toBe('<s>');
    expect(t.render([{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }])).toBe('<s>x</s>y</s>');
    expect(t.render([{ role: 'user', content: 'x' }], { kwargs: { bos_token: '[B]' } })).toBe('[B]x</s>');
  });

  it('a bos_token of null is not defined in the template', () => {
    const t = ChatTemplate.fromTokenizerConfig({ chat_template: '{% if bos_token is defined %}yes{% else %}no{% endif %}', bos_token: null });
    expect(t.render([])).toBe('no');
  });

  it('raise_exception throws a ChatTemplateError carrying the template message', () => {
    const t = ChatTemplate.fromString(
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}",
      { source: 'alternating.jinja' },
    );
    expect(t.render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }])).toBe('ab');
    let err: unknown;
    try {
      t.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ChatTemplateError);
    expect((err as ChatTemplateError).templateMessage).toBe('Conversation roles must alternate user/assistant/user/assistant/...');
    expect((err as Error).message).toBe(
      "chat template 'default' of alternating.jinja raised an exception: Conversation roles must alternate user/assistant/user/assistant/...",
    );
  });

  it('strftime_now formats the given clock like Python strftime', () => {
    const now = new Date(2024, 6, 26, 9, 5, 3); // local time, Friday 26 July 2024, day 208
    const t = ChatTemplate.fromString("Today Date: {{ strftime_now('%d %b %Y') }}");
    expect(t.render([], { now })).toBe('Today Date: 26 Jul 2024');
    expect(strftime(now, '%Y-%m-%d %H:%M:%S %a %A %B %j %-d %-m %I%p %y %% %Q')).toBe('2024-07-26 09:05:03 Fri Friday July 208 26 7 09AM 24 % %Q');
    expect(strftime(new Date(2023, 0, 5, 0, 0, 0), '%d/%m %I %p %j')).toBe('05/01 12 AM 005');
    expect(strftime(new Date(2023, 0, 5, 13, 0, 0), '%I %p')).toBe('01 PM');
  });

  it('range, namespace and loop variables behave as in Jinja', () => {
    const t = ChatTemplate.fromString('{% set ns = namespace(n=0) %}{% for i in range(1, 7, 2) %}{% set ns.n = ns.n + i %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}={{ ns.n }}');
    expect(t.render([])).toBe('1,3,5=9');
  });

  it('refuses kwargs that would replace the renderer variables, and malformed messages', () => {
    const t = smollm2();
    expect(() => t.render([], { kwargs: { messages: [] } })).toThrow(/template kwarg 'messages' is set by the renderer itself/);
    expect(() => t.render([{ role: 'user', content: 'a' }, { content: 'b' } as unknown as ChatMessage])).toThrow(/chat message 1\.role: Required/);
    expect(() => t.render([{ role: 'user', content: 42 } as unknown as ChatMessage])).toThrow(/chat message 0\.content/);
  });
});

describe('loading', () => {
  it('a tokenizer_config.json without chat_template: a clear error naming the file and suggesting a template', () => {
    const dir = modelDir({ 'tokenizer_config.json': JSON.stringify({ eos_token: '<|endoftext|>' }) });
    let err: unknown;
    try {
      ChatTemplate.fromDirectory(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ChatTemplateError);
    expect((err as Error).message).toContain(join(dir, 'tokenizer_config.json'));
    expect((err as Error).message).toMatch(/has no chat_template .*pass a template explicitly/);
    // Passing a template is the way out; the config still provides the special tokens.
    const t = ChatTemplate.fromDirectory(dir, { template: '{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}' });
    expect(t.render([{ role: 'user', content: 'hi' }])).toBe('hi<|endoftext|>');
  });

  it('a directory with no tokenizer files at all is refused', () => {
    const dir = modelDir({ 'config.json': '{}' });
    expect(() => ChatTemplate.fromDirectory(dir)).toThrow(/neither tokenizer_config\.json nor chat_template\.jinja/);
  });

  it('a template syntax error names the template and carries the parser message', () => {
    const bad = '{% for m in %}{{ m }}{% endfor %}';
    let parserMessage = '';
    try {
      new Template(bad);
    } catch (e) {
      parserMessage = (e as Error).message;
    }
    expect(parserMessage).toMatch(/Unexpected token/);
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: bad }, { source: 'x/tokenizer_config.json' })).toThrow(
      `chat template 'default' of x/tokenizer_config.json does not parse: ${parserMessage}`,
    );
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'default', template: 'ok' }, { name: 'tool_use', template: bad }] })).toThrow(
      /chat template 'tool_use' of tokenizer_config\.json does not parse: Unexpected token/,
    );
  });

  it('a list of named templates: default unless a name is asked; tool_use when tools are given', () => {
    const config = {
      chat_template: [
        { name: 'default', template: 'D{% for m in messages %}{{ m.content }}{% endfor %}' },
        { name: 'tool_use', template: 'T{{ tools | length }}' },
        { name: 'rag', template: 'R{{ documents[0].text }}' },
      ],
    };
    const t = ChatTemplate.fromTokenizerConfig(config);
    expect(t.names).toEqual(['default', 'tool_use', 'rag']);
    expect(t.render([{ role: 'user', content: 'x' }])).toBe('Dx');
    expect(t.render([], { tools: [WEATHER_TOOL] })).toBe('T1');
    expect(t.render([], { templateName: 'rag', documents: [{ text: 'doc' }] })).toBe('Rdoc');
    expect(() => t.render([], { templateName: 'nope' })).toThrow(/has no chat template named 'nope' \(it has: default, tool_use, rag\)/);
    // Fixed at load.
    expect(ChatTemplate.fromTokenizerConfig(config, { name: 'rag' }).render([], { documents: [{ text: 'z' }] })).toBe('Rz');
    expect(() => ChatTemplate.fromTokenizerConfig(config, { name: 'chat' })).toThrow(/has no chat template named 'chat'/);
    // No default and none asked.
    const noDefault = ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'a', template: 'A' }, { name: 'b', template: 'B' }] });
    expect(() => noDefault.render([])).toThrow(/several chat templates and none named 'default' \(a, b\)/);
    expect(noDefault.render([], { templateName: 'b' })).toBe('B');
  });

  it('chat_template.jinja replaces the config template; additional_chat_templates/*.jinja add named ones', () => {
    const dir = modelDir({
      'tokenizer_config.json': JSON.stringify({
        chat_template: [{ name: 'default', template: 'FROM CONFIG' }, { name: 'rag', template: 'RAG FROM CONFIG' }],
        eos_token: { content: '<|im_end|>' },
      }),
      'chat_template.jinja': '{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\n{% endfor %}',
      'additional_chat_templates/tool_use.jinja': 'tools={{ tools[0].function.name }}',
    });
    const t = ChatTemplate.fromDirectory(dir);
    expect(t.source).toBe(join(dir, 'chat_template.jinja'));
    expect(t.names).toEqual(['default', 'tool_use']); // the config's templates, 'rag' included, are replaced
    expect(t.render([{ role: 'user', content: 'hi' }])).toBe('user: hi<|im_end|>\n');
    expect(t.render([], { tools: [WEATHER_TOOL] })).toBe('tools=get_weather');
  });

  it('chat_template.jinja alone (no tokenizer_config.json) is enough', () => {
    const dir = modelDir({ 'chat_template.jinja': '{{ messages | length }}' });
    expect(ChatTemplate.fromDirectory(dir).render([{ role: 'user', content: 'a' }])).toBe('1');
  });

  it('malformed configs are refused naming the field', () => {
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: 7 })).toThrow(/chat_template must be a string or a list/);
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'a' }] })).toThrow(/chat_template\[0\] must be an object \{ name: string, template: string \}/);
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: 'x', eos_token: 5 })).toThrow(/eos_token must be a string or an object with a string 'content'/);
    const dir = modelDir({ 'tokenizer_config.json': '{ not json' });
    expect(() => ChatTemplate.fromDirectory(dir)).toThrow(/tokenizer_config\.json is not valid JSON/);
  });
});

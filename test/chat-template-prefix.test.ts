import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ChatTemplate,
  ChatTemplateError,
  checkPrefixExtension,
  encodeChat,
  PREFIX_PROBE_CONVERSATION,
  type ChatMessage,
} from '../src/engine/chat-template.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'chat');
const tok = HfTokenizer.fromDirectory(join(import.meta.dirname, 'fixtures', 'tiny-bpe'));
const smollm2 = ChatTemplate.fromDirectory(join(FIXTURES, 'smollm2-135m-instruct'));
const qwen25 = ChatTemplate.fromDirectory(join(FIXTURES, 'qwen2.5-0.5b-instruct'));
const qwen3 = ChatTemplate.fromDirectory(join(FIXTURES, 'qwen3-0.6b'));

// tiny-bpe: byte-level BPE whose byte tokens have the byte's value as id; merges give 'hello' 262,
// 'Ġworld' 266, 'he' 257, 'Ġthe' 260; specials <|endoftext|> 267, <|im_start|> 268, <|im_end|> 269.
const IM_START = 268;
const IM_END = 269;
const ENDOFTEXT = 267;
const bytes = (s: string) => [...Buffer.from(s, 'utf8')];

afterEach(() => {
  vi.restoreAllMocks();
});

describe('encodeChat', () => {
  it('tokenizes the rendered prompt with special tokens as their ids', () => {
    const ids = encodeChat(qwen3, tok, [{ role: 'user', content: 'hello world' }], { addGenerationPrompt: true });
    expect(ids).toEqual([IM_START, ...bytes('user\n'), 262, 266, IM_END, 10, IM_START, ...bytes('assistant\n')]);
    expect(tok.decode(ids)).toBe(qwen3.render([{ role: 'user', content: 'hello world' }], { addGenerationPrompt: true }));
  });

  it('adds no BOS of its own: a template that writes bos_token gets exactly one', () => {
    const t = ChatTemplate.fromTokenizerConfig({
      chat_template: '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
      bos_token: { content: '<|endoftext|>', special: true },
    });
    expect(encodeChat(t, tok, [{ role: 'user', content: 'hello' }])).toEqual([ENDOFTEXT, 262]);
    // And a template without bos_token starts with no special token at all.
    expect(encodeChat(ChatTemplate.fromString('{{ messages[0].content }}'), tok, [{ role: 'user', content: 'hello' }])).toEqual([262]);
  });

  it('SmolLM2: the default system turn and ChatML markers map to ids', () => {
    const ids = encodeChat(smollm2, tok, [{ role: 'user', content: 'hello' }], { addGenerationPrompt: true });
    expect(ids.filter((id) => id === IM_START)).toHaveLength(3);
    expect(ids.filter((id) => id === IM_END)).toHaveLength(2);
    expect(ids[0]).toBe(IM_START);
    expect(ids.slice(-11)).toEqual([IM_START, ...bytes('assistant\n')]);
  });
});

describe('checkPrefixExtension', () => {
  it('ChatML templates that keep history verbatim pass (SmolLM2, Qwen2.5)', () => {
    for (const t of [smollm2, qwen25]) {
      expect(checkPrefixExtension(t, tok, PREFIX_PROBE_CONVERSATION)).toEqual({ ok: true, turnsChecked: 2, mismatch: null });
      const withSystem: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, ...PREFIX_PROBE_CONVERSATION];
      expect(checkPrefixExtension(t, tok, withSystem, { mode: 'strict' }).ok).toBe(true);
    }
  });

  it('Qwen2.5 passes a tool call round trip', () => {
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
      { role: 'tool', content: '{"temp_c": 18}' },
      { role: 'assistant', content: 'It is 18 C.' },
      { role: 'user', content: 'Thanks' },
    ];
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    expect(checkPrefixExtension(qwen25, tok, conversation, { tools, mode: 'strict' })).toEqual({ ok: true, turnsChecked: 2, mismatch: null });
  });

  it('flags Qwen3 at turn 1, where the next prompt drops the <think> block', () => {
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'What is 2+3?' },
      { role: 'assistant', content: 'It is 5.', reasoning_content: 'Add them.' },
      { role: 'user', content: 'Times 4?' },
      { role: 'assistant', content: 'It is 20.' },
      { role: 'user', content: 'Thanks' },
    ];
    const r = checkPrefixExtension(qwen3, tok, conversation, { snippetTokens: 24 });
    expect(r.ok).toBe(false);
    expect(r.turnsChecked).toBe(1);
    // 31 tokens = <|im_start|> user(4) \n "What is 2+3?"(What 4, Ġis 3, Ġ2 2, + 3 ? 3) <|im_end|> \n <|im_start|> assistant(9) \n
    const sharedPrefix = '<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n';
    expect(tok.encode(sharedPrefix)).toHaveLength(31);
    expect(r.mismatch).toMatchObject({ turn: 1, messageIndex: 1, tokenIndex: 31, kind: 'history-rewritten' });
    expect(r.mismatch!.context.endsWith('<|im_end|>\n<|im_start|>assistant\n')).toBe(true);
    expect(r.mismatch!.expected.startsWith('<think>\nAdd them.\n')).toBe(true);
    expect(r.mismatch!.actual.startsWith('It is 5.<|im_end|>\n<|im_start|>user\nTimes')).toBe(true);
  });

  it('flags Qwen3 with thinking off too: the empty <think> block of the prompt is not kept in history', () => {
    const r = checkPrefixExtension(qwen3, tok, PREFIX_PROBE_CONVERSATION, { kwargs: { enable_thinking: false }, snippetTokens: 40 });
    expect(r.mismatch).toMatchObject({ turn: 1, messageIndex: 1, kind: 'history-rewritten' });
    expect(r.mismatch!.expected.startsWith('<think>\n\n</think>\n\nIt is 5.')).toBe(true);
    expect(r.mismatch!.actual.startsWith('It is 5.<|im_end|>')).toBe(true);
  });

  it('flags Qwen3 at turn 2 when turn 1 was a tool call inside the same user query', () => {
    // Turn 1 (a tool call with thinking) is still after the last user query in turn 2's prompt, so it
    // keeps its <think> block and passes; the new user message after turn 2 drops both blocks.
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', reasoning_content: 'Call the tool.', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', content: '18' },
      { role: 'assistant', content: 'It is 18 C.', reasoning_content: 'Report it.' },
      { role: 'user', content: 'Thanks' },
    ];
    const turn2Prompt =
      '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
      '<|im_start|>assistant\n<think>\nCall the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n18\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n';
    expect(qwen3.render(conversation.slice(0, 3), { addGenerationPrompt: true })).toBe(turn2Prompt);
    const r = checkPrefixExtension(qwen3, tok, conversation);
    expect(r.turnsChecked).toBe(2);
    // The first difference lies inside turn 1, where its <think> block was: 35 shared tokens
    // (<|im_start|> user 4 \n, "Weather in Paris?" = W e a t he r, Ġ i n, Ġ P a r i s, ? = 16, <|im_end|> \n <|im_start|> assistant 9 \n),
    // then "<think>" and "<tool_call>" share their first two byte tokens "<" "t" in tiny-bpe: 37.
    expect(tok.encode('<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n')).toHaveLength(35);
    expect(r.mismatch).toMatchObject({ turn: 2, messageIndex: 3, tokenIndex: 37, kind: 'history-rewritten' });
    expect(r.mismatch!.context.endsWith('assistant\n<t')).toBe(true);
    expect(r.mismatch!.expected.startsWith('hink>\nCall the tool.')).toBe(true);
    expect(r.mismatch!.actual.startsWith('ool_call>\n{"name"')).toBe(true);
  });

  it('reports a reply the template renders unlike its own generation prompt', () => {
    // Thinking disabled in the prompt, yet the stored reply has reasoning: the rendered reply is not an
    // extension of "<think>\n\n</think>\n\n".
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'What is 2+3?' },
      { role: 'assistant', content: 'It is 5.', reasoning_content: 'Add them.' },
      { role: 'user', content: 'Thanks' },
    ];
    const r = checkPrefixExtension(qwen3, tok, conversation, { kwargs: { enable_thinking: false } });
    // 31 shared tokens, then < t h i n k > \n = 8 more, then the prompt has "\n" where the reply has "Add".
    expect(r.mismatch).toMatchObject({ turn: 1, messageIndex: 1, tokenIndex: 39, kind: 'reply-not-after-prompt' });
    expect(r.mismatch!.expected.startsWith('\n</think>')).toBe(true);
    expect(r.mismatch!.actual.startsWith('Add them.')).toBe(true);
  });

  it('compares token ids, not only text: a reply that merges across the turn boundary is caught', () => {
    // This template writes no separator after the role, so the reply "llo" joins "he" from the
    // prompt: the model saw [he] then generated [l l o ...], but the next prompt holds [hello].
    const t = ChatTemplate.fromString(
      "{% for m in messages %}{% if m.role == 'assistant' %}he{{ m.content }}<|im_end|>{% else %}<|im_start|>{{ m.content }}<|im_end|>{% endif %}{% endfor %}{% if add_generation_prompt %}he{% endif %}",
    );
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'llo' },
      { role: 'user', content: 'y' },
    ];
    const r = checkPrefixExtension(t, tok, conversation);
    expect(r.mismatch).toMatchObject({ turn: 1, messageIndex: 1, tokenIndex: 3, kind: 'history-rewritten', expected: 'hello<|im_end|>' });
    expect(r.mismatch!.actual.startsWith('hello<|im_end|><|im_start|>y')).toBe(true);
  });

  it('the generated turn ends at the end-of-turn token: what the template writes after it is not generated', () => {
    // A final assistant message gets "\n\n" after <|im_end|>, an earlier one "\n"; the model only ever
    // generated up to <|im_end|>, so the history still extends its tokens.
    const t = ChatTemplate.fromString(
      "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% if loop.last and m.role == 'assistant' %}{{ '\\n\\n' }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>{% endif %}",
    );
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'r' },
      { role: 'user', content: 'y' },
    ];
    expect(checkPrefixExtension(t, tok, conversation)).toEqual({ ok: true, turnsChecked: 1, mismatch: null });
    // With another end-of-turn text, the reply runs on to the template's "\n\n", which the history lacks.
    const r = checkPrefixExtension(t, tok, conversation, { endOfTurn: '<|endoftext|>' });
    expect(r.mismatch).toMatchObject({ turn: 1, tokenIndex: 8, expected: '\n<|endoftext|>', actual: '<|im_start|>y<|im_end|>\n<|im_start|>' });
  });

  it('a template that leaves the final reply open gets the EOS the model would have generated', () => {
    // The final assistant message is rendered without <|im_end|>; the model still ends its turn with
    // it (tokenizer EOS), and this template closes past turns with <|endoftext|> instead: flagged.
    const t = ChatTemplate.fromString(
      "{% for m in messages %}<|im_start|>{{ m.content }}{% if m.role != 'assistant' %}<|im_end|>{% elif not loop.last %}<|endoftext|>{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>{% endif %}",
    );
    const conversation: ChatMessage[] = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'r' },
      { role: 'user', content: 'y' },
    ];
    // generated: <|im_start|> x <|im_end|> <|im_start|> r <|im_end|>; next prompt has <|endoftext|> at index 5.
    expect(checkPrefixExtension(t, tok, conversation).mismatch).toMatchObject({ turn: 1, tokenIndex: 5, expected: '<|im_end|>', actual: '<|endoftext|><|im_start|>y<|im_end|><|im_start|>' });
  });

  it('strict mode throws on a mismatch and on a conversation with nothing to check', () => {
    expect(() => checkPrefixExtension(qwen3, tok, PREFIX_PROBE_CONVERSATION, { mode: 'strict', label: 'Qwen/Qwen3-0.6B' })).toThrow(ChatTemplateError);
    expect(() => checkPrefixExtension(qwen3, tok, PREFIX_PROBE_CONVERSATION, { mode: 'strict', label: 'Qwen/Qwen3-0.6B' })).toThrow(
      /the chat template of Qwen\/Qwen3-0\.6B does not keep turn 1 \(message 1\) verbatim/,
    );
    const single: ChatMessage[] = [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }];
    expect(checkPrefixExtension(smollm2, tok, single)).toEqual({ ok: true, turnsChecked: 0, mismatch: null });
    expect(() => checkPrefixExtension(smollm2, tok, single, { mode: 'strict' })).toThrow(/nothing was checked/);
  });

  it('warn mode prints one warning naming the model and the turn, and none for a template that passes', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const r = checkPrefixExtension(qwen3, tok, PREFIX_PROBE_CONVERSATION, { mode: 'warn', label: 'Qwen/Qwen3-0.6B' });
    expect(r.ok).toBe(false);
    expect(warn).toHaveBeenCalledTimes(1);
    const text = String(warn.mock.calls[0][0]);
    expect(text).toContain('Qwen/Qwen3-0.6B');
    expect(text).toContain('turn 1');
    expect(text).toContain('"<think>');
    warn.mockClear();
    expect(checkPrefixExtension(smollm2, tok, PREFIX_PROBE_CONVERSATION, { mode: 'warn', label: 'SmolLM2' }).ok).toBe(true);
    expect(warn).not.toHaveBeenCalled();
    // Without a label the warning names the template file.
    checkPrefixExtension(qwen3, tok, PREFIX_PROBE_CONVERSATION, { mode: 'warn' });
    expect(String(warn.mock.calls[0][0])).toContain(join('qwen3-0.6b', 'tokenizer_config.json'));
  });

  it('warn mode reports a template that cannot render the probe instead of throwing', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const t = ChatTemplate.fromString("{% if messages | length > 2 %}{{ raise_exception('Only one turn is supported') }}{% endif %}ok");
    const r = checkPrefixExtension(t, tok, PREFIX_PROBE_CONVERSATION, { mode: 'warn', label: 'one-turn-model' });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/Only one turn is supported/);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/could not check whether the chat template of one-turn-model .*Only one turn is supported/);
    expect(() => checkPrefixExtension(t, tok, PREFIX_PROBE_CONVERSATION)).toThrow(/Only one turn is supported/);
  });
});

/**
 * Tool calls in the Hermes / Qwen2.5 format, the one most open-weight chat templates use:
 *
 *   <tool_call>
 *   {"name": "get_weather", "arguments": {"city": "Paris"}}
 *   </tool_call>
 *
 * `parseToolCalls` turns a completion's text into OpenAI `tool_calls` plus the remaining content;
 * anything malformed (bad JSON, no name, arguments not an object, an unclosed block) leaves the whole
 * text as plain content and says why, so a model that writes a broken call gets its text back (and
 * the call is recorded as invalid) instead of an error. `ToolCallStreamer` does the same
 * incrementally for SSE: content is streamed as soon as it cannot be the start of a tool call, and
 * what the streamed deltas add up to is exactly what `parseToolCalls` returns for the whole text.
 *
 * Other models write calls differently; `ToolCallFormat` is what the gateway needs of a format (parse
 * a whole text; say how much of a partial text is surely content) and `HERMES` is this one. The
 * others (Llama 3 JSON, Mistral) are in src/gateway/tool-formats/, which selects one by name.
 *
 * `DEFAULT_CHAT_TEMPLATE` is the ChatML template (Qwen2.5's layout, tool instructions shortened)
 * used for models that ship none (base models, the tiny test models, agentrl checkpoints): tools go
 * into the system turn, assistant tool calls are rendered in the format above, and tool results
 * come back as `<tool_response>` blocks in a user turn.
 */
import { randomBytes } from 'node:crypto';

export const TOOL_CALL_OPEN = '<tool_call>';
export const TOOL_CALL_CLOSE = '</tool_call>';

/** An OpenAI tool call of an assistant message (`arguments` is a JSON string, as OpenAI returns it). */
export interface OpenAIToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ParsedToolCalls {
  /** Text outside the tool-call blocks (null when there is none and calls were made). */
  content: string | null;
  toolCalls: OpenAIToolCall[];
  /** Why the text was kept as plain content although it contains `<tool_call>`; absent when fine. */
  malformed?: string;
}

/**
 * A way of writing tool calls in a completion's text. Malformed calls are never an error: `parse`
 * returns the whole text as content with `malformed` saying why (the turn is recorded as invalid).
 */
export interface ToolCallFormat {
  /** The name `--tool-call-format` selects it by. */
  readonly name: string;
  /** A fresh tool-call id of the shape the format's chat templates accept. */
  newId(): string;
  /** Split a whole completion's text into content and calls. */
  parse(text: string, makeId?: () => string): ParsedToolCalls;
  /**
   * For a text that is the start of a completion: the length of its prefix that is content whatever
   * follows (no tool call can start inside it), so a streamer may send it now.
   */
  contentPrefix(text: string): number;
}

/** `call_` + 24 hex characters, like OpenAI's ids. */
export function newToolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

/**
 * Split a completion's text into content and tool calls. With calls, the content is the text
 * before, between and after the blocks, whitespace-only pieces dropped, trailing whitespace trimmed,
 * null when empty. Without a `<tool_call>` the text is returned unchanged.
 */
export function parseToolCalls(text: string, makeId: () => string = newToolCallId): ParsedToolCalls {
  if (!text.includes(TOOL_CALL_OPEN)) return { content: text, toolCalls: [] };
  const pieces: string[] = [];
  const toolCalls: OpenAIToolCall[] = [];
  let at = 0;
  for (;;) {
    const open = text.indexOf(TOOL_CALL_OPEN, at);
    if (open < 0) {
      pieces.push(text.slice(at));
      break;
    }
    pieces.push(text.slice(at, open));
    const close = text.indexOf(TOOL_CALL_CLOSE, open + TOOL_CALL_OPEN.length);
    if (close < 0) return { content: text, toolCalls: [], malformed: `tool call ${toolCalls.length + 1} has no ${TOOL_CALL_CLOSE}` };
    const call = parseOneCall(text.slice(open + TOOL_CALL_OPEN.length, close));
    if (typeof call === 'string') return { content: text, toolCalls: [], malformed: `tool call ${toolCalls.length + 1}: ${call}` };
    toolCalls.push({ id: makeId(), type: 'function', function: call });
    at = close + TOOL_CALL_CLOSE.length;
  }
  return { content: joinContent(pieces), toolCalls };
}

/** Content of a text with tool calls: the outside pieces, whitespace-only ones dropped, trimmed at the end. */
export function joinContent(pieces: readonly string[]): string | null {
  const joined = pieces.filter((p) => p.trim() !== '').join('').trimEnd();
  return joined === '' ? null : joined;
}

/** The JSON inside one block, or why it is not a call. */
function parseOneCall(body: string): { name: string; arguments: string } | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  return callFromJson(value, 'arguments');
}

/** Where a format's calls keep their arguments; both are accepted, the format's own one named in messages. */
export type ArgsKey = 'arguments' | 'parameters';

/** One parsed JSON value as a call `{"name", "<argsKey>": {...}}` (arguments as a JSON string, OpenAI's shape), or why it is not one. */
export function callFromJson(value: unknown, argsKey: ArgsKey = 'arguments'): { name: string; arguments: string } | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `expected a JSON object {"name": ..., "${argsKey}": {...}}`;
  const v = value as Record<string, unknown>;
  if (typeof v.name !== 'string' || v.name === '') return '"name" must be a non-empty string';
  const args = v[argsKey] ?? v[argsKey === 'arguments' ? 'parameters' : 'arguments'] ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return `"${argsKey}" must be a JSON object`;
  return { name: v.name, arguments: JSON.stringify(args) };
}

/** What one step of the streamer emits. */
export interface StreamDelta {
  content?: string;
  toolCalls?: OpenAIToolCall[];
}

/**
 * Incremental `format.parse` (Hermes unless told). `push(fullTextSoFar)` returns the content that is
 * safe to send now (it can no longer become part of a tool call or of the content's trimmed tail);
 * `finish(text)` parses the whole text and returns the rest: the remaining content and every tool
 * call. The concatenated content deltas equal `format.parse(text).content ?? ''`.
 */
export class ToolCallStreamer {
  private sent = '';
  private done = false;
  private readonly makeId: () => string;

  constructor(makeId?: () => string, private readonly format: ToolCallFormat = HERMES) {
    this.makeId = makeId ?? (() => format.newId());
  }

  push(text: string): StreamDelta {
    if (this.done) return {};
    let safe = this.format.contentPrefix(text);
    // Trailing whitespace is dropped when calls follow, so hold it until that is known.
    while (safe > 0 && /\s/.test(text[safe - 1]!)) safe--;
    if (safe <= this.sent.length) return {};
    const piece = text.slice(this.sent.length, safe);
    this.sent += piece;
    return { content: piece };
  }

  finish(text: string): StreamDelta & { parsed: ParsedToolCalls } {
    this.done = true;
    const parsed = this.format.parse(text, this.makeId);
    const content = parsed.content ?? '';
    if (!content.startsWith(this.sent)) throw new Error(`ToolCallStreamer: streamed content ${JSON.stringify(this.sent)} is not a prefix of the parsed content ${JSON.stringify(content)}`);
    const rest = content.slice(this.sent.length);
    this.sent = content;
    return { ...(rest ? { content: rest } : {}), ...(parsed.toolCalls.length ? { toolCalls: parsed.toolCalls } : {}), parsed };
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of `marker`. */
function partialMarkerSuffix(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (marker.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}

/** Content is surely content up to `marker` (a call's opening), or up to a tail that could still begin it. */
export function contentBeforeMarker(text: string, marker: string): number {
  const open = text.indexOf(marker);
  return open >= 0 ? open : text.length - partialMarkerSuffix(text, marker);
}

/** Hermes / Qwen2.5: `<tool_call>{"name", "arguments"}</tool_call>` blocks anywhere in the text. */
export const HERMES: ToolCallFormat = {
  name: 'hermes',
  newId: newToolCallId,
  parse: (text, makeId) => parseToolCalls(text, makeId),
  contentPrefix: (text) => contentBeforeMarker(text, TOOL_CALL_OPEN),
};

/**
 * ChatML with Hermes-style tools (Qwen2.5's layout): the system turn lists the tools as JSON inside
 * `<tools>` and says how to call them; an assistant turn renders its calls as `<tool_call>` blocks;
 * consecutive tool results are one user turn of `<tool_response>` blocks. Ends with
 * `<|im_start|>assistant\n` when a generation prompt is asked for.
 */
export const DEFAULT_CHAT_TEMPLATE = `{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions. Their signatures are within <tools></tools>:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
{{- '\\n</tools>\\n\\nTo call a function, return a JSON object with its name and arguments within <tool_call></tool_call> tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' + (tool_call.arguments | tojson) + '}\\n</tool_call>' }}
{%- endfor %}{%- endif %}
{{- '<|im_end|>\\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}`;

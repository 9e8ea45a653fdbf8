/**
 * Llama 3.1 / 3.2 JSON tool calls (vLLM's `llama3_json` parser, the format Meta's templates ask for):
 * the whole assistant text is the call, optionally after the `<|python_tag|>` token, and Llama 3.2
 * may put several calls in one text separated by `;`:
 *
 *   {"name": "get_weather", "parameters": {"city": "Paris"}}
 *   <|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}
 *
 * A text whose first non-blank character is `{` (or that starts with `<|python_tag|>`) is a tool-call
 * attempt: it parses whole or it is malformed (kept as content, recorded as an invalid turn), so a
 * reply that is JSON but not a call is penalised like a broken `<tool_call>` block. Any other text
 * is plain content, even if JSON follows later in it. "arguments" is accepted for "parameters", as
 * vLLM does. Only the JSON format is parsed: Llama 3.1's built-in tools
 * (`<|python_tag|>brave_search.call(...)`) and Llama 3.2's pythonic calls are malformed here.
 */
import { callFromJson, newToolCallId, type ParsedToolCalls, type ToolCallFormat, type OpenAIToolCall } from '../tool-calls.ts';

export const PYTHON_TAG = '<|python_tag|>';

export const LLAMA3_JSON: ToolCallFormat = {
  name: 'llama3-json',
  newId: newToolCallId,
  parse: parseLlama3Json,
  contentPrefix(text) {
    const t = text.trimStart();
    // Until the first non-blank character is known (or while it could still be `<|python_tag|>`), hold everything.
    if (t === '' || t.startsWith('{') || t.startsWith(PYTHON_TAG) || PYTHON_TAG.startsWith(t)) return 0;
    return text.length;
  },
};

function parseLlama3Json(text: string, makeId: () => string = newToolCallId): ParsedToolCalls {
  let at = skipBlanks(text, 0);
  if (text.startsWith(PYTHON_TAG, at)) at = skipBlanks(text, at + PYTHON_TAG.length);
  else if (text[at] !== '{') return { content: text, toolCalls: [] };
  const malformed = (why: string): ParsedToolCalls => ({ content: text, toolCalls: [], malformed: why });
  const toolCalls: OpenAIToolCall[] = [];
  for (let n = 1; ; n++) {
    if (text[at] !== '{') return malformed(`tool call ${n}: expected a JSON object {"name": ..., "parameters": {...}}${n === 1 ? ` after ${PYTHON_TAG}` : ' after \';\''}`);
    const end = jsonObjectEnd(text, at);
    if (end < 0) return malformed(`tool call ${n}: not JSON (the object is never closed)`);
    let value: unknown;
    try {
      value = JSON.parse(text.slice(at, end));
    } catch (e) {
      return malformed(`tool call ${n}: not JSON (${(e as Error).message})`);
    }
    const call = callFromJson(value, 'parameters');
    if (typeof call === 'string') return malformed(`tool call ${n}: ${call}`);
    toolCalls.push({ id: makeId(), type: 'function', function: call });
    at = skipBlanks(text, end);
    if (at === text.length) break;
    if (text[at] !== ';') return malformed(`after tool call ${n}: expected ';' before another call, or the end of the text (got ${JSON.stringify(text.slice(at, at + 20))})`);
    at = skipBlanks(text, at + 1);
    if (at === text.length) break; // a trailing ';' ends the list
  }
  return { content: null, toolCalls };
}

function skipBlanks(text: string, at: number): number {
  while (at < text.length && /\s/.test(text[at]!)) at++;
  return at;
}

/**
 * End (exclusive) of the JSON object that starts at `text[start] === '{'`, found by matching brackets
 * outside strings; -1 when it is never closed. Only finds the span: JSON.parse judges it. Needed
 * because calls are separated by `;`, which may also occur inside a string argument.
 */
export function jsonObjectEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

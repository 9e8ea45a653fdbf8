/**
 * Mistral tool calls (vLLM's `mistral` parser for tokenizers before v11: Mistral-7B-Instruct-v0.3,
 * Mistral-Nemo, …): optional content, then the `[TOOL_CALLS]` token and one JSON array of calls:
 *
 *   [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "b", "arguments": {}}]
 *
 * (Nemo writes no space after the token; any whitespace is accepted.) Extra keys in a call, like the
 * `"id"` Mistral's templates render into past calls, are ignored. The v11+ layout
 * (`[TOOL_CALLS]name[ARGS]{...}`, Mistral Small 3.1+) is not parsed: it is reported as malformed.
 *
 * Ids are 9 alphanumeric characters, not OpenAI's `call_…`: Mistral's own chat templates refuse any
 * other id when the agent sends the call back on its next turn ("Tool call IDs should be alphanumeric
 * strings with length 9!").
 */
import { randomInt } from 'node:crypto';
import { callFromJson, contentBeforeMarker, joinContent, type OpenAIToolCall, type ParsedToolCalls, type ToolCallFormat } from '../tool-calls.ts';

export const TOOL_CALLS_TOKEN = '[TOOL_CALLS]';

const ALPHANUMERIC = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** 9 random alphanumeric characters, the only tool-call id Mistral's templates accept. */
export function newMistralToolCallId(): string {
  let id = '';
  for (let i = 0; i < 9; i++) id += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)];
  return id;
}

export const MISTRAL: ToolCallFormat = {
  name: 'mistral',
  newId: newMistralToolCallId,
  parse: parseMistral,
  contentPrefix: (text) => contentBeforeMarker(text, TOOL_CALLS_TOKEN),
};

function parseMistral(text: string, makeId: () => string = newMistralToolCallId): ParsedToolCalls {
  const open = text.indexOf(TOOL_CALLS_TOKEN);
  if (open < 0) return { content: text, toolCalls: [] };
  const malformed = (why: string): ParsedToolCalls => ({ content: text, toolCalls: [], malformed: why });
  // Everything after the first token is the array (a later `[TOOL_CALLS]` can only be inside a string of it).
  const rest = text.slice(open + TOOL_CALLS_TOKEN.length);
  let value: unknown;
  try {
    value = JSON.parse(rest);
  } catch (e) {
    const hint = rest.includes(TOOL_CALLS_TOKEN) ? `; ${TOOL_CALLS_TOKEN} comes once, before one array of all the calls` : '';
    return malformed(`tool calls after ${TOOL_CALLS_TOKEN}: not JSON (${(e as Error).message})${hint}`);
  }
  if (!Array.isArray(value) || value.length === 0) return malformed(`expected a non-empty JSON array [{"name": ..., "arguments": {...}}, ...] after ${TOOL_CALLS_TOKEN}`);
  const toolCalls: OpenAIToolCall[] = [];
  for (const [i, item] of value.entries()) {
    const call = callFromJson(item, 'arguments');
    if (typeof call === 'string') return malformed(`tool call ${i + 1}: ${call}`);
    toolCalls.push({ id: makeId(), type: 'function', function: call });
  }
  return { content: joinContent([text.slice(0, open)]), toolCalls };
}

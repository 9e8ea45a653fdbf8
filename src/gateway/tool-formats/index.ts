/**
 * The tool-call formats the gateway parses, by the name `--tool-call-format` (GatewayOptions'
 * `toolCallFormat`) selects: the format the served model was trained to write its calls in.
 */
import { HERMES, type ToolCallFormat } from '../tool-calls.ts';
import { LLAMA3_JSON } from './llama3-json.ts';
import { MISTRAL } from './mistral.ts';

export const TOOL_CALL_FORMATS = { hermes: HERMES, 'llama3-json': LLAMA3_JSON, mistral: MISTRAL } as const satisfies Record<string, ToolCallFormat>;
export type ToolCallFormatName = keyof typeof TOOL_CALL_FORMATS;
export const TOOL_CALL_FORMAT_NAMES = Object.keys(TOOL_CALL_FORMATS) as ToolCallFormatName[];

/** Why `name` is not a tool-call format (naming the option and the valid values), or null when it is one. */
export function toolCallFormatError(name: unknown): string | null {
  if (typeof name === 'string' && Object.hasOwn(TOOL_CALL_FORMATS, name)) return null;
  return `unknown tool-call format ${JSON.stringify(name)} (--tool-call-format / toolCallFormat); valid values: ${TOOL_CALL_FORMAT_NAMES.join(', ')}`;
}

/** The format named `name`; throws `toolCallFormatError`'s message for anything else. */
export function toolCallFormat(name: string): ToolCallFormat {
  const problem = toolCallFormatError(name);
  if (problem) throw new Error(problem);
  return TOOL_CALL_FORMATS[name as ToolCallFormatName];
}

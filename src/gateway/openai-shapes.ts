/**
 * The OpenAI request shapes the agent gateway accepts (`POST /v1/chat/completions`,
 * `POST /v1/completions`), validated with zod at the boundary, and OpenAI-style errors.
 *
 * Fields that change what is sampled but that the gateway cannot honour exactly (n > 1, penalties,
 * logit_bias, top_logprobs, structured outputs, forced tool choice) are refused with a 400 naming
 * the field, never silently ignored: a trajectory must be what the policy sampled. Unknown fields
 * (`user`, `metadata`, `store`, `parallel_tool_calls`, …) are accepted and ignored, as vLLM does,
 * so agents written for OpenAI run unchanged.
 */
import { z } from 'zod';

/** An HTTP error in OpenAI's JSON form: `{"error": {"message", "type", "param", "code"}}`. */
export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
    /** Extra response headers (Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const textPart = z.object({ type: z.literal('text'), text: z.string() }).passthrough();
/** Message content: a string, or parts; only text parts are served (the built-in engine is text-only). */
const content = z.union([z.string(), z.array(z.object({ type: z.string() }).passthrough())]);

const toolCall = z
  .object({
    id: z.string().optional(),
    type: z.literal('function').optional(),
    function: z.object({ name: z.string().min(1), arguments: z.union([z.string(), z.record(z.unknown())]) }).passthrough(),
  })
  .passthrough();

const message = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content, name: z.string().optional() }).passthrough(),
  z.object({ role: z.literal('developer'), content, name: z.string().optional() }).passthrough(),
  z.object({ role: z.literal('user'), content, name: z.string().optional() }).passthrough(),
  z
    .object({
      role: z.literal('assistant'),
      content: content.nullable().optional(),
      tool_calls: z.array(toolCall).optional(),
      name: z.string().optional(),
    })
    .passthrough(),
  z.object({ role: z.literal('tool'), content, tool_call_id: z.string(), name: z.string().optional() }).passthrough(),
]);
export type ChatRequestMessage = z.infer<typeof message>;

const tool = z.object({
  type: z.literal('function'),
  function: z
    .object({
      name: z.string().min(1).regex(/^[A-Za-z0-9_-]+$/, 'tool names are letters, digits, _ and - (as OpenAI requires)'),
      description: z.string().optional(),
      parameters: z.record(z.unknown()).optional(),
      strict: z.boolean().nullable().optional(),
    })
    .passthrough(),
});
export type ChatTool = z.infer<typeof tool>;

const stop = z.union([z.string(), z.array(z.string()).max(16)]).nullable().optional();

/** Sampling fields shared by both endpoints (OpenAI names, plus vLLM's `top_k` and agentrl's nothing else). */
const sampling = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  /** vLLM's extension; 0 or -1 = off. */
  top_k: z.number().int().min(-1).nullable().optional(),
  stop,
  seed: z.number().int().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullable().optional(),
  n: z.number().int().nullable().optional(),
  presence_penalty: z.number().nullable().optional(),
  frequency_penalty: z.number().nullable().optional(),
  logit_bias: z.record(z.number()).nullable().optional(),
};

export const ChatCompletionRequestSchema = z
  .object({
    ...sampling,
    messages: z.array(message).min(1),
    max_completion_tokens: z.number().int().min(1).nullable().optional(),
    logprobs: z.boolean().nullable().optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    tools: z.array(tool).nullable().optional(),
    tool_choice: z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })]).nullable().optional(),
    response_format: z.object({ type: z.string() }).passthrough().nullable().optional(),
  })
  .passthrough();
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

export const CompletionRequestSchema = z
  .object({
    ...sampling,
    /** Text, or token ids (token-in: the ids are used as given). A batch of prompts is refused. */
    prompt: z.union([z.string(), z.array(z.number().int().min(0)).min(1), z.array(z.string()).length(1), z.array(z.array(z.number().int().min(0)).min(1)).length(1)]),
    /** OpenAI's completions logprobs: the number of top alternatives; only 0 is served (the sampled token's logprob). */
    logprobs: z.number().int().min(0).max(5).nullable().optional(),
    echo: z.boolean().nullable().optional(),
    best_of: z.number().int().nullable().optional(),
    suffix: z.string().nullable().optional(),
  })
  .passthrough();
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

/** `POST /v1/rollouts/{id}/reward`. */
export const RewardRequestSchema = z.object({ reward: z.number().finite(), info: z.record(z.unknown()).optional() }).strict();

/** Parse a body against `schema`; a failure is a 400 naming the first bad field as OpenAI's `param`. */
export function parseRequest<S extends z.ZodTypeAny>(schema: S, body: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[') || null;
  const detail =
    issue.code === 'invalid_union_discriminator' ? 'unknown role (roles: system, developer, user, assistant, tool)'
    : issue.code === 'invalid_union' ? 'missing, or not one of the accepted forms (see the OpenAI API reference for this field)'
    : issue.message;
  throw new OpenAIError(400, `invalid ${what} request: ${param ?? 'body'}: ${detail}`, param);
}

/**
 * Refuse what the gateway cannot sample exactly; the message names the field and what to send
 * instead. `top_logprobs` / completions `logprobs` > 0 need the alternatives' logprobs, which the
 * engine does not report.
 */
export function checkUnsupported(r: ChatCompletionRequest | CompletionRequest): void {
  const bad = (param: string, why: string) => {
    throw new OpenAIError(400, `${param}: ${why}`, param, 'invalid_request_error', 'unsupported_parameter');
  };
  if (r.n != null && r.n !== 1) bad('n', `only n = 1 is served (got ${r.n}); send n parallel requests instead (each is one call of the rollout)`);
  if (r.presence_penalty) bad('presence_penalty', 'penalties are not supported (they would change the sampled distribution the trainer recomputes); leave it 0');
  if (r.frequency_penalty) bad('frequency_penalty', 'penalties are not supported (they would change the sampled distribution the trainer recomputes); leave it 0');
  if (r.logit_bias && Object.keys(r.logit_bias).length > 0) bad('logit_bias', 'logit_bias is not supported; leave it out');
  if ('messages' in r) {
    const c = r as ChatCompletionRequest;
    if (c.top_logprobs) bad('top_logprobs', 'only the sampled token\'s logprob is reported (logprobs: true); leave top_logprobs at 0');
    if (c.response_format && c.response_format.type !== 'text') bad('response_format', `structured outputs (${c.response_format.type}) are not supported; use { type: 'text' } and parse the reply`);
    if (c.tool_choice != null && typeof c.tool_choice === 'object') bad('tool_choice', 'forcing a named tool is not supported; use "auto" (the model decides) or "none"');
    if (c.tool_choice === 'required') bad('tool_choice', '"required" is not supported; use "auto" (the model decides) or "none"');
    if (c.max_tokens != null && c.max_completion_tokens != null && c.max_tokens !== c.max_completion_tokens) {
      bad('max_completion_tokens', `max_tokens (${c.max_tokens}) and max_completion_tokens (${c.max_completion_tokens}) disagree; send one of them`);
    }
  } else {
    const c = r as CompletionRequest;
    if (c.logprobs) bad('logprobs', 'only the sampled token\'s logprob is reported; send logprobs: 0');
    if (c.echo) bad('echo', 'echo is not supported; the prompt ids are recorded with the call');
    if (c.best_of != null && c.best_of !== 1) bad('best_of', 'only best_of = 1 is served');
    if (c.suffix) bad('suffix', 'suffix (fill-in-the-middle) is not supported');
  }
}

/** Content as one string: text parts joined (OpenAI's meaning); other parts are refused naming the message. */
export function contentText(c: string | { type: string; [k: string]: unknown }[] | null | undefined, where: string): string | null {
  if (c === null || c === undefined) return null;
  if (typeof c === 'string') return c;
  return c
    .map((part, i) => {
      const p = textPart.safeParse(part);
      if (!p.success) throw new OpenAIError(400, `${where}.content[${i}]: only text parts are served (got type '${part.type}'); the model is text-only`, `${where}.content[${i}].type`);
      return p.data.text;
    })
    .join('');
}

/**
 * LLM-as-judge (ASearcher's evaluation and LRM reward): ask a chat model, through any OpenAI-compatible
 * `POST {baseUrl}/chat/completions`, whether the predicted answer is equivalent to the labeled one.
 * The reply is read as JSON `{"rationale": …, "judgement": "Correct" | "Incorrect"}`; judges wrap it
 * in code fences, prose, a reasoning block or a trailing comma, so the reader is tolerant. An
 * unreadable reply, HTTP 5xx/408/429 or a timeout is retried (sampling at temperature 0.6 gives a new
 * reply); after the last attempt the error names the endpoint and the last reply.
 */
import { z } from 'zod';
import { callWithRetries, postJson, ToolLimitsOverrideSchema } from '../tools/retry.ts';
import { DEFAULT_TOOL_LIMITS, ToolError, type ToolLimits } from '../tools/types.ts';

export const DEFAULT_JUDGE_API_KEY_ENV = 'OPENAI_API_KEY';

const JudgeOptionsSchema = z
  .object({
    /** The API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:30000/v1 (without /chat/completions). */
    baseUrl: z.string().url(),
    model: z.string().min(1),
    /** The bearer token; overrides apiKeyEnv. */
    apiKey: z.string().min(1).optional(),
    /** Environment variable holding the token (default OPENAI_API_KEY; when that default is unset, no Authorization header is sent, as local servers need none). */
    apiKeyEnv: z.string().min(1).optional(),
    /** Where to read apiKeyEnv from; process.env by default. */
    env: z.record(z.string().optional()).optional(),
    temperature: z.number().min(0).max(2).default(0.6),
    /** Sent as max_tokens when set (ASearcher: 1,024). */
    maxTokens: z.number().int().positive().optional(),
    /** The prediction is cut to this many characters in the prompt (ASearcher: 500). */
    maxPredictionChars: z.number().int().positive().default(500),
    limits: ToolLimitsOverrideSchema.optional(),
  })
  .strict();

export type JudgeOptions = z.input<typeof JudgeOptionsSchema>;

/** A judge call: 60 s per attempt, 5 attempts. */
export const DEFAULT_JUDGE_LIMITS: ToolLimits = { ...DEFAULT_TOOL_LIMITS, timeoutMs: 60_000, retries: 4, maxBytes: 1_000_000 };

export interface JudgeInput {
  question: string;
  prediction: string;
  golds: string | readonly string[];
}

export interface JudgeVerdict {
  correct: boolean;
  rationale: string;
  /** HTTP requests made (1 when the first reply was usable). */
  attempts: number;
}

/** The user message sent to the judge. */
export function judgePrompt(input: JudgeInput, maxPredictionChars = 500): string {
  const golds = typeof input.golds === 'string' ? [input.golds] : [...input.golds];
  if (golds.length === 0) throw new Error('LLM judge: the gold answer list is empty; give at least one labeled answer');
  const labeled = golds.length === 1 ? golds[0]! : `any one of ${JSON.stringify(golds)}`;
  return [
    'You are an evaluation assistant. Decide whether the predicted answer is equivalent to the labeled answer.',
    '',
    `Question: ${input.question}`,
    '',
    `Labeled Answer: ${labeled}`,
    '',
    `Predicted Answer: ${input.prediction.slice(0, maxPredictionChars)}`,
    '',
    'Is the predicted answer **equivalent** to the labeled answer? Judge "Correct" if they are equivalent and "Incorrect" if they are not.',
    '',
    'Reply in this JSON format:',
    '```json',
    '{',
    '    "rationale": "<why, as text>",',
    '    "judgement": "Correct" or "Incorrect"',
    '}',
    '```',
  ].join('\n');
}

/**
 * Every balanced `{…}` span of the text, in the order they close (inner objects before the object
 * around them), found in one pass; quotes are tracked inside braces only, where JSON strings live.
 */
function jsonObjectSpans(text: string): string[] {
  const spans: string[] = [];
  const starts: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"' && starts.length > 0) inString = true;
    else if (c === '{') starts.push(i);
    else if (c === '}' && starts.length > 0) spans.push(text.slice(starts.pop()!, i + 1));
  }
  return spans;
}

function parseLoose(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    // The reply format invites a trailing comma ("judgement": "Correct",}); JSON forbids it.
    try {
      return JSON.parse(s.replace(/,(\s*[}\]])/g, '$1'));
    } catch {
      return undefined;
    }
  }
}

const VerdictSchema = z.object({ judgement: z.string(), rationale: z.unknown().optional() });

/** The verdict in a judge reply, or null when none can be read. Later objects win (a reply may quote the template first). */
export function parseJudgeReply(reply: string): { correct: boolean; rationale: string } | null {
  // A reasoning model's thoughts come before its answer.
  const answer = reply.includes('</think>') ? reply.slice(reply.lastIndexOf('</think>') + '</think>'.length) : reply;
  const spans = jsonObjectSpans(answer);
  for (let i = spans.length - 1; i >= 0; i--) {
    const v = VerdictSchema.safeParse(parseLoose(spans[i]!));
    if (!v.success) continue;
    const j = v.data.judgement.trim().toLowerCase();
    if (j !== 'correct' && j !== 'incorrect') continue;
    const r = v.data.rationale;
    return { correct: j === 'correct', rationale: typeof r === 'string' ? r : r === undefined ? '' : JSON.stringify(r) };
  }
  // Last resort (as ASearcher's reader): a judgement field in otherwise broken JSON, e.g. single quotes.
  const fields = [...answer.matchAll(/["']judgement["']\s*:\s*["']?\s*(correct|incorrect)\b/gi)];
  const last = fields.at(-1);
  if (!last) return null;
  const rationale = /["']rationale["']\s*:\s*(["'])((?:(?!\1)[^\\]|\\.)*)\1/.exec(answer)?.[2] ?? '';
  return { correct: last[1]!.toLowerCase() === 'correct', rationale };
}

const ChatReplySchema = z.object({ choices: z.array(z.object({ message: z.object({ content: z.string() }) })).min(1) });

/** A reusable judge for one endpoint and model. */
export class LlmJudge {
  readonly url: string;
  private readonly options: z.output<typeof JudgeOptionsSchema>;
  private readonly limits: ToolLimits;
  private readonly headers: Record<string, string>;
  private readonly keyEnv: string;

  constructor(options: JudgeOptions) {
    const parsed = JudgeOptionsSchema.safeParse(options);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ');
      throw new Error(`LLM judge options: ${issues}`);
    }
    this.options = parsed.data;
    this.url = `${parsed.data.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    this.limits = { ...DEFAULT_JUDGE_LIMITS, ...parsed.data.limits };
    const env = parsed.data.env ?? process.env;
    const envVar = (this.keyEnv = parsed.data.apiKeyEnv ?? DEFAULT_JUDGE_API_KEY_ENV);
    const key = parsed.data.apiKey ?? env[envVar];
    if (!key && parsed.data.apiKeyEnv !== undefined) {
      throw new Error(`LLM judge: apiKeyEnv names ${envVar}, but it is not set; export ${envVar}=<key> or pass apiKey`);
    }
    this.headers = key ? { authorization: `Bearer ${key}` } : {};
  }

  /** Judge one prediction; rejects with a ToolError after the last attempt. */
  async judge(input: JudgeInput, signal?: AbortSignal): Promise<JudgeVerdict> {
    const { model, temperature, maxTokens, maxPredictionChars } = this.options;
    const body = {
      model,
      messages: [{ role: 'user', content: judgePrompt(input, maxPredictionChars) }],
      temperature,
      ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    };
    // Written by the attempts (a closure), read after the last one.
    const seen = { attempts: 0, reply: null as string | null };
    const tool = `LLM judge at ${this.url} (model ${model})`;
    try {
      const verdict = await callWithRetries(
        tool,
        this.limits,
        async (s) => {
          seen.attempts++;
          const raw = await postJson(this.url, body, { signal: s, maxBytes: this.limits.maxBytes, headers: this.headers });
          const chat = ChatReplySchema.safeParse(raw);
          if (!chat.success) {
            seen.reply = JSON.stringify(raw);
            throw new Error('the reply is not a chat completion (no choices[0].message.content)');
          }
          seen.reply = chat.data.choices[0]!.message.content;
          const v = parseJudgeReply(seen.reply);
          if (!v) throw new Error('no {"judgement": "Correct" | "Incorrect"} object in the reply');
          return v;
        },
        signal,
      );
      return { ...verdict, attempts: seen.attempts };
    } catch (e) {
      if (!(e instanceof ToolError)) throw e;
      const reply = seen.reply === null ? 'no reply was received' : `last reply: ${JSON.stringify(seen.reply.slice(0, 500))}`;
      const hint = /HTTP (401|403)/.test(e.message) ? `; check the API key (apiKey, or $${this.keyEnv})` : '';
      throw new ToolError(`${e.message}; ${reply}${hint}`, e.tool, e.attempts, { cause: e.cause ?? e });
    }
  }
}

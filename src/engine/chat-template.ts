/**
 * Chat templates of Hugging Face models: load the Jinja template a model ships
 * (`tokenizer_config.json`'s `chat_template`, or `chat_template.jinja` next to it) and render a
 * conversation into the exact prompt text transformers' `apply_chat_template` produces, then into
 * token ids with the model's tokenizer (src/engine/hf-tokenizer.ts).
 *
 * Rendering follows transformers (`render_jinja_template`): Jinja with trim_blocks/lstrip_blocks
 * (the `@huggingface/jinja` interpreter, the one transformers.js uses), variables `messages`,
 * `tools`, `documents`, `add_generation_prompt`, the special tokens of the config (`bos_token`,
 * `eos_token`, … as plain strings) and any extra template kwargs (e.g. Qwen3's `enable_thinking`);
 * globals `raise_exception` (thrown as a ChatTemplateError carrying the template's message) and
 * `strftime_now`. Tokenizing adds no special tokens: the template writes `bos_token` itself where the
 * model wants one, so adding it again would double it (transformers tokenizes with
 * `add_special_tokens=False` for the same reason).
 *
 * `checkPrefixExtension` guards multi-turn token-in-token-out training: the prompt of turn t+1 must
 * start with the exact tokens of turn t (its prompt plus the reply as generated). Templates that
 * rewrite history (Qwen3 drops earlier `<think>` blocks) break that, and the check says where.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { z } from 'zod';

/** One part of a multi-part message content (`{type: 'text', text}`, images, …); templates decide what to do with them. */
export interface ChatContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

/** An assistant tool call, OpenAI style. `arguments` may be a JSON string (it is parsed, see `render`) or an object. */
export interface ChatToolCall {
  id?: string;
  type?: string;
  function: { name: string; arguments: string | Record<string, unknown> };
  [key: string]: unknown;
}

export interface ChatMessage {
  /** 'system' | 'user' | 'assistant' | 'tool' (templates may know others). */
  role: string;
  content?: string | ChatContentPart[] | null;
  /** Thinking text of an assistant turn, for templates that render it separately (Qwen3). */
  reasoning_content?: string | null;
  tool_calls?: ChatToolCall[];
  /** For role 'tool': the id of the call answered, and the tool's name. */
  tool_call_id?: string;
  name?: string;
  /** Templates may read any other field. */
  [key: string]: unknown;
}

/** A tool offered to the model: an OpenAI-style function schema `{type: 'function', function: {name, description, parameters}}`. */
export type ChatToolSchema = Record<string, unknown>;

export interface ChatRenderOptions {
  /** End with the opening of an assistant turn (default false, as in transformers). */
  addGenerationPrompt?: boolean;
  tools?: readonly ChatToolSchema[] | null;
  /** Retrieval documents, for templates that take them (passed through as `documents`). */
  documents?: readonly Record<string, unknown>[] | null;
  /** Extra template variables, e.g. `{ enable_thinking: false }`; they may override the special tokens. */
  kwargs?: Record<string, unknown>;
  /** Which named template to use (tokenizer configs may hold several, e.g. 'default' and 'tool_use'). */
  templateName?: string;
  /** The clock `strftime_now` reads (default: now). */
  now?: Date;
}

/** Why a template could not be loaded or rendered. `templateMessage` is the text of a `raise_exception(...)`. */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
  constructor(message: string, readonly templateName?: string, readonly templateMessage?: string) {
    super(message);
  }
}

/** Special-token fields of tokenizer_config.json passed to templates (when set). */
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
/** Variables the renderer sets itself; kwargs may not replace them (transformers would fail the same way). */
const RESERVED_KWARGS = new Set(['messages', 'tools', 'documents', 'add_generation_prompt']);
export const DEFAULT_TEMPLATE_NAME = 'default';

interface CompiledTemplate {
  text: string;
  program: Template;
}

export interface ChatTemplateLoadOptions {
  /** Use this named template whatever the render call asks (error at load if the model has none by that name). */
  name?: string;
  /** Use this template text instead of the model's (the config still provides the special tokens). */
  template?: string;
}

export class ChatTemplate {
  /** Special tokens as template variables: `bos_token`, `eos_token`, … (strings) and `additional_special_tokens`. */
  readonly specialTokens: Readonly<Record<string, string | readonly string[]>>;
  private readonly templates: ReadonlyMap<string, CompiledTemplate>;

  private constructor(
    /** Where the template came from (a path), for error messages. */
    readonly source: string,
    templates: ReadonlyMap<string, string>,
    specialTokens: Record<string, string | readonly string[]>,
    private readonly fixedName: string | undefined,
  ) {
    const compiled = new Map<string, CompiledTemplate>();
    for (const [name, text] of templates) {
      try {
        compiled.set(name, { text, program: new Template(text) });
      } catch (e) {
        throw new ChatTemplateError(`chat template '${name}' of ${source} does not parse: ${(e as Error).message}`, name);
      }
    }
    this.templates = compiled;
    this.specialTokens = specialTokens;
    if (fixedName !== undefined && !compiled.has(fixedName)) {
      throw new ChatTemplateError(`${source} has no chat template named '${fixedName}' (it has: ${[...compiled.keys()].join(', ')})`, fixedName);
    }
  }

  /**
   * Load the template of a Hugging Face model directory: `chat_template.jinja` when present (newer
   * transformers write it, and it replaces the config's), plus named templates in
   * `additional_chat_templates/<name>.jinja`; else `chat_template` of `tokenizer_config.json`.
   * Special tokens come from `tokenizer_config.json`.
   */
  static fromDirectory(dir: string, opts: ChatTemplateLoadOptions = {}): ChatTemplate {
    const cfgPath = join(dir, 'tokenizer_config.json');
    const jinjaPath = join(dir, 'chat_template.jinja');
    const hasConfig = existsSync(cfgPath);
    if (!hasConfig && !existsSync(jinjaPath) && opts.template === undefined) {
      throw new ChatTemplateError(`${dir} has neither tokenizer_config.json nor chat_template.jinja, so it has no chat template; pass one explicitly ({ template: '...' })`);
    }
    const config = hasConfig ? readJsonObject(cfgPath) : {};
    const files: Record<string, string> = {};
    if (existsSync(jinjaPath)) files[DEFAULT_TEMPLATE_NAME] = readFileSync(jinjaPath, 'utf8');
    const extraDir = join(dir, 'additional_chat_templates');
    if (existsSync(extraDir)) {
      for (const f of readdirSync(extraDir).sort()) {
        if (f.endsWith('.jinja')) files[f.slice(0, -'.jinja'.length)] = readFileSync(join(extraDir, f), 'utf8');
      }
    }
    const source = files[DEFAULT_TEMPLATE_NAME] !== undefined ? jinjaPath : cfgPath;
    return ChatTemplate.fromTokenizerConfig(config, { ...opts, source, templateFiles: files });
  }

  /**
   * Build from parsed tokenizer_config.json contents. `chat_template` is a string, or a list of
   * `{name, template}`; `templateFiles` (name → text, from .jinja files) replace it: the 'default'
   * file replaces the config's template(s) entirely, as transformers does.
   */
  static fromTokenizerConfig(
    config: Record<string, unknown>,
    opts: ChatTemplateLoadOptions & { source?: string; templateFiles?: Record<string, string> } = {},
  ): ChatTemplate {
    const configSource = opts.source ?? 'tokenizer_config.json';
    const source = opts.template !== undefined ? `the template given for ${configSource}` : configSource;
    const templates = new Map<string, string>();
    if (opts.template !== undefined) {
      templates.set(DEFAULT_TEMPLATE_NAME, opts.template);
    } else {
      const files = opts.templateFiles ?? {};
      if (files[DEFAULT_TEMPLATE_NAME] === undefined) {
        for (const [name, text] of configTemplates(config.chat_template, source)) templates.set(name, text);
      }
      for (const [name, text] of Object.entries(files)) templates.set(name, text);
    }
    if (templates.size === 0) {
      throw new ChatTemplateError(
        `${source} has no chat_template (and there is no chat_template.jinja next to it); this looks like a base model without a chat format: pass a template explicitly ({ template: '...' } or ChatTemplate.fromString)`,
      );
    }
    return new ChatTemplate(source, templates, specialTokensOf(config, configSource), opts.name);
  }

  /** A template given as text, with the special tokens it may refer to (`{ bos_token: '<s>' }`). */
  static fromString(text: string, opts: { name?: string; source?: string; specialTokens?: Record<string, unknown> } = {}): ChatTemplate {
    const name = opts.name ?? DEFAULT_TEMPLATE_NAME;
    const source = opts.source ?? 'the given template';
    return new ChatTemplate(source, new Map([[name, text]]), specialTokensOf(opts.specialTokens ?? {}, source), name);
  }

  /** Names of the templates held ('default' for a single template). */
  get names(): string[] {
    return [...this.templates.keys()];
  }

  get bosToken(): string | undefined {
    return this.specialTokens.bos_token as string | undefined;
  }

  get eosToken(): string | undefined {
    return this.specialTokens.eos_token as string | undefined;
  }

  /** The template text `render` would use with these options. */
  text(opts: Pick<ChatRenderOptions, 'templateName' | 'tools'> = {}): string {
    return this.select(opts.templateName, opts.tools).template.text;
  }

  /**
   * Render `messages` to prompt text, as transformers' `apply_chat_template(..., tokenize=False)`.
   * Tool-call `arguments` given as a JSON string are parsed into an object first (as vLLM does),
   * since templates like Qwen2.5's write `arguments | tojson` and would otherwise quote the string.
   */
  render(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    const msgs = normaliseMessages(messages);
    const { name, template } = this.select(opts.templateName, opts.tools);
    const kwargs = opts.kwargs ?? {};
    for (const key of Object.keys(kwargs)) {
      if (RESERVED_KWARGS.has(key)) throw new ChatTemplateError(`template kwarg '${key}' is set by the renderer itself; pass it as a render option instead`, name);
    }
    const env = new Environment(templateGlobals(opts.now));
    const vars: Record<string, unknown> = {
      ...this.specialTokens,
      ...kwargs,
      messages: msgs,
      tools: opts.tools ?? null,
      documents: opts.documents ?? null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    for (const [key, value] of Object.entries(vars)) env.set(key, value);
    try {
      const out = new Interpreter(env).run(template.program.parsed);
      return String(out.value);
    } catch (e) {
      if (e instanceof RaisedByTemplate) {
        throw new ChatTemplateError(`chat template '${name}' of ${this.source} raised an exception: ${e.message}`, name, e.message);
      }
      throw new ChatTemplateError(`chat template '${name}' of ${this.source} failed to render: ${(e as Error).message}`, name);
    }
  }

  /** transformers' choice: the asked name; else 'tool_use' when tools are given and it exists; else 'default'. */
  private select(asked: string | undefined, tools: readonly ChatToolSchema[] | null | undefined): { name: string; template: CompiledTemplate } {
    let name = asked ?? this.fixedName;
    if (name === undefined) {
      if (tools != null && this.templates.has('tool_use')) name = 'tool_use';
      else if (this.templates.has(DEFAULT_TEMPLATE_NAME)) name = DEFAULT_TEMPLATE_NAME;
      else throw new ChatTemplateError(`${this.source} has several chat templates and none named 'default' (${this.names.join(', ')}); pass { templateName }`);
    }
    const template = this.templates.get(name);
    if (!template) throw new ChatTemplateError(`${this.source} has no chat template named '${name}' (it has: ${this.names.join(', ')})`, name);
    return { name, template };
  }
}

/** Anything with a Hugging Face–style `encode`; HfTokenizer adds no special tokens unless asked. */
export interface ChatTokenizer {
  readonly eosId: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[]): string;
}

/**
 * Token ids of the rendered conversation. Special-token strings in the text (`<|im_start|>`) become
 * their ids; nothing is added around the text (the template writes BOS itself when the model uses one).
 */
export function encodeChat(template: ChatTemplate, tokenizer: ChatTokenizer, messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): number[] {
  return tokenizer.encode(template.render(messages, opts), { addSpecialTokens: false });
}

// ---------------------------------------------------------------------------------------------
// Multi-turn prefix check

export interface PrefixCheckOptions extends Omit<ChatRenderOptions, 'addGenerationPrompt'> {
  /**
   * 'report' (default): return the result. 'warn': also print one console warning on a mismatch
   * (meant for model load; render errors are warned about, not thrown). 'strict': throw on a
   * mismatch, or when the conversation has no assistant turn followed by another message (tests).
   */
  mode?: 'report' | 'warn' | 'strict';
  /** Model name used in the warning (default: the template's source). */
  label?: string;
  /** Text of the token that ends a generated turn (default: the tokenizer's EOS, e.g. <|im_end|>). */
  endOfTurn?: string;
  /** Tokens shown in each snippet (default 16). */
  snippetTokens?: number;
}

export interface PrefixMismatch {
  /** 1-based number of the assistant turn whose tokens are not extended. */
  turn: number;
  /** Index of that assistant message in the conversation. */
  messageIndex: number;
  /** Position of the first token that differs. */
  tokenIndex: number;
  /**
   * 'history-rewritten': the next prompt does not start with this turn's prompt + reply;
   * 'reply-not-after-prompt': the template renders the reply so that it does not even start with the
   * generation prompt it was generated after (e.g. a thinking block where the prompt disabled thinking).
   */
  kind: 'history-rewritten' | 'reply-not-after-prompt';
  /** Decoded tokens just before `tokenIndex` (shared by both). */
  context: string;
  /** Decoded tokens from `tokenIndex` on, as the model saw/generated them. */
  expected: string;
  /** Decoded tokens from `tokenIndex` on, as the later prompt has them ('' when it ends there). */
  actual: string;
}

export interface PrefixCheckResult {
  ok: boolean;
  /** Assistant turns compared with a following prompt. */
  turnsChecked: number;
  mismatch: PrefixMismatch | null;
  /** Set only in 'warn' mode when the template could not render the conversation. */
  error?: string;
}

/**
 * A conversation for the load-time check: plain user/assistant turns, no system message (some
 * templates refuse one) and no tools. Any template that rewrites history shows it here.
 */
export const PREFIX_PROBE_CONVERSATION: readonly ChatMessage[] = [
  { role: 'user', content: 'What is 2 + 3?' },
  { role: 'assistant', content: 'It is 5.' },
  { role: 'user', content: 'And times 4?' },
  { role: 'assistant', content: 'That makes 20.' },
  { role: 'user', content: 'Thanks.' },
];

/**
 * For each assistant message followed by more conversation, compare the tokens of turn t as the
 * model had them (prompt rendered with the generation prompt + reply up to and including the
 * end-of-turn token) with the start of the next prompt (rendered up to the next assistant message).
 * Reports the first turn and token position where they differ.
 */
export function checkPrefixExtension(
  template: ChatTemplate,
  tokenizer: ChatTokenizer,
  conversation: readonly ChatMessage[],
  opts: PrefixCheckOptions = {},
): PrefixCheckResult {
  const mode = opts.mode ?? 'report';
  const label = opts.label ?? template.source;
  let result: PrefixCheckResult;
  try {
    result = comparePrefixes(template, tokenizer, conversation, opts);
  } catch (e) {
    if (mode !== 'warn' || !(e instanceof ChatTemplateError)) throw e;
    console.warn(`agentrl: could not check whether the chat template of ${label} keeps multi-turn history verbatim: ${e.message}`);
    return { ok: false, turnsChecked: 0, mismatch: null, error: e.message };
  }
  const m = result.mismatch;
  if (m && mode !== 'report') {
    const text =
      `the chat template of ${label} does not keep turn ${m.turn} (message ${m.messageIndex}) verbatim in the next prompt: ` +
      `${m.kind === 'history-rewritten' ? 'the next prompt' : 'the rendered reply'} differs from the tokens the model saw and generated at token ${m.tokenIndex} ` +
      `(after ${JSON.stringify(m.context)}: had ${JSON.stringify(m.expected)}, now ${JSON.stringify(m.actual)}). ` +
      `Multi-turn token-in-token-out training would then train on a context the model never saw; use a template that keeps history verbatim, or train each turn as its own sample.`;
    if (mode === 'strict') throw new ChatTemplateError(text);
    console.warn(`agentrl: ${text}`);
  }
  if (mode === 'strict' && result.turnsChecked === 0) {
    throw new ChatTemplateError('checkPrefixExtension: the conversation has no assistant message followed by another message, so nothing was checked');
  }
  return result;
}

function comparePrefixes(template: ChatTemplate, tokenizer: ChatTokenizer, conversation: readonly ChatMessage[], opts: PrefixCheckOptions): PrefixCheckResult {
  const renderOpts: ChatRenderOptions = { tools: opts.tools, documents: opts.documents, kwargs: opts.kwargs, templateName: opts.templateName, now: opts.now };
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const render = (n: number, generationPrompt: boolean) => template.render(conversation.slice(0, n), { ...renderOpts, addGenerationPrompt: generationPrompt });
  const endOfTurn = opts.endOfTurn ?? tokenizer.decode([tokenizer.eosId]);
  const snippet = opts.snippetTokens ?? 16;
  const mismatchAt = (turn: number, messageIndex: number, kind: PrefixMismatch['kind'], had: number[], now: number[], at: number): PrefixCheckResult => ({
    ok: false,
    turnsChecked: turn,
    mismatch: {
      turn,
      messageIndex,
      tokenIndex: at,
      kind,
      context: tokenizer.decode(had.slice(Math.max(0, at - snippet), at)),
      expected: tokenizer.decode(had.slice(at, at + snippet)),
      actual: tokenizer.decode(now.slice(at, at + snippet)),
    },
  });

  let turn = 0;
  for (let i = 0; i < conversation.length - 1; i++) {
    if (conversation[i].role !== 'assistant') continue;
    turn++;
    const promptText = render(i, true);
    const fullText = render(i + 1, false);
    const promptTokens = encode(promptText);
    if (!fullText.startsWith(promptText)) {
      const fullTokens = encode(fullText);
      return mismatchAt(turn, i, 'reply-not-after-prompt', promptTokens, fullTokens, firstDifference(promptTokens, fullTokens));
    }
    // The model stops at the end-of-turn token; what the template writes after it (a newline) is not generated.
    const reply = fullText.slice(promptText.length);
    const cut = reply.indexOf(endOfTurn);
    const replyTokens = cut >= 0 ? encode(reply.slice(0, cut + endOfTurn.length)) : [...encode(reply), ...encode(endOfTurn)];
    const generated = [...promptTokens, ...replyTokens];
    let next = i + 1;
    while (next < conversation.length && conversation[next].role !== 'assistant') next++;
    const nextPrompt = encode(render(next, true));
    const at = firstDifference(generated, nextPrompt);
    if (at >= 0) return mismatchAt(turn, i, 'history-rewritten', generated, nextPrompt, at);
  }
  return { ok: true, turnsChecked: turn, mismatch: null };
}

/** Index of the first token of `a` that `b` does not repeat; -1 when `a` is a prefix of `b`. */
function firstDifference(a: readonly number[], b: readonly number[]): number {
  for (let k = 0; k < a.length; k++) if (k >= b.length || a[k] !== b[k]) return k;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Template environment

/** Thrown by the template's `raise_exception` so render can tell it from interpreter errors. */
class RaisedByTemplate extends Error {}

function templateGlobals(now: Date | undefined): Environment {
  const g = new Environment();
  for (const [k, v] of [['true', true], ['false', false], ['none', null], ['True', true], ['False', false], ['None', null]] as const) g.set(k, v);
  g.set('raise_exception', (message: unknown) => {
    throw new RaisedByTemplate(String(message));
  });
  g.set('strftime_now', (format: unknown) => strftime(now ?? new Date(), String(format)));
  g.set('range', pythonRange);
  return g;
}

function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/**
 * Python's `datetime.now().strftime(format)` in local time with the C locale (English names), the
 * common directives, and glibc's `%-d` style unpadded forms. Unknown directives stay as written.
 */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const hour12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  const dayOfYear = Math.floor((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86_400_000) + 1;
  const fields: Record<string, [number | string, number]> = {
    Y: [date.getFullYear(), 4],
    y: [date.getFullYear() % 100, 2],
    m: [date.getMonth() + 1, 2],
    d: [date.getDate(), 2],
    H: [date.getHours(), 2],
    I: [hour12, 2],
    M: [date.getMinutes(), 2],
    S: [date.getSeconds(), 2],
    j: [dayOfYear, 3],
    a: [DAYS[date.getDay()].slice(0, 3), 0],
    A: [DAYS[date.getDay()], 0],
    b: [MONTHS[date.getMonth()].slice(0, 3), 0],
    B: [MONTHS[date.getMonth()], 0],
    p: [date.getHours() < 12 ? 'AM' : 'PM', 0],
  };
  return format.replace(/%(-?)([A-Za-z%])/g, (whole, unpadded: string, d: string) => {
    if (d === '%') return unpadded ? whole : '%';
    const f = fields[d];
    if (!f) return whole;
    const [value, width] = f;
    return typeof value === 'string' || unpadded ? String(value) : pad(value, width);
  });
}

// ---------------------------------------------------------------------------------------------
// Input checks and config parsing

const toolCallSchema = z
  .object({
    function: z.object({ name: z.string().min(1), arguments: z.union([z.string(), z.record(z.unknown())]) }).passthrough(),
  })
  .passthrough();

const messageSchema = z
  .object({
    role: z.string().min(1),
    content: z.union([z.string(), z.array(z.object({ type: z.string() }).passthrough()), z.null()]).optional(),
    reasoning_content: z.string().nullable().optional(),
    tool_calls: z.array(toolCallSchema).optional(),
  })
  .passthrough();

/** Validate, copy, and parse JSON-string tool-call arguments into objects. */
function normaliseMessages(messages: readonly ChatMessage[]): Record<string, unknown>[] {
  if (!Array.isArray(messages)) throw new ChatTemplateError('chat messages must be an array of { role, content } objects');
  return messages.map((m, i) => {
    const parsed = messageSchema.safeParse(m);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const at = issue.path.length > 0 ? `.${issue.path.join('.')}` : '';
      throw new ChatTemplateError(`chat message ${i}${at}: ${issue.message}`);
    }
    const out: Record<string, unknown> = { ...parsed.data };
    if (parsed.data.tool_calls) {
      out.tool_calls = parsed.data.tool_calls.map((call) => {
        const args = call.function.arguments;
        if (typeof args !== 'string') return call;
        let value: unknown;
        try {
          value = JSON.parse(args);
        } catch {
          return call; // not JSON: leave it to the template
        }
        return isPlainObject(value) ? { ...call, function: { ...call.function, arguments: value } } : call;
      });
    }
    return out;
  });
}

/** `chat_template` of a config: a string, or a list of `{name, template}`. */
function configTemplates(raw: unknown, source: string): [string, string][] {
  if (raw === undefined || raw === null) return [];
  if (typeof raw === 'string') return [[DEFAULT_TEMPLATE_NAME, raw]];
  if (Array.isArray(raw)) {
    return raw.map((entry, i) => {
      if (!isPlainObject(entry) || typeof entry.name !== 'string' || typeof entry.template !== 'string') {
        throw new ChatTemplateError(`${source}: chat_template[${i}] must be an object { name: string, template: string }`);
      }
      return [entry.name, entry.template];
    });
  }
  throw new ChatTemplateError(`${source}: chat_template must be a string or a list of { name, template } (got ${typeof raw})`);
}

function specialTokensOf(config: Record<string, unknown>, source: string): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const v = config[key];
    if (v === undefined || v === null) continue;
    const content = tokenContent(v);
    if (content === undefined) throw new ChatTemplateError(`${source}: ${key} must be a string or an object with a string 'content' (got ${JSON.stringify(v)})`);
    out[key] = content;
  }
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra)) {
    out.additional_special_tokens = extra.map((t, i) => {
      const content = tokenContent(t);
      if (content === undefined) throw new ChatTemplateError(`${source}: additional_special_tokens[${i}] must be a string or an object with a string 'content'`);
      return content;
    });
  }
  return out;
}

/** A token in tokenizer_config.json is a string or an AddedToken object `{ content, ... }`. */
function tokenContent(x: unknown): string | undefined {
  if (typeof x === 'string') return x;
  if (isPlainObject(x) && typeof x.content === 'string') return x.content;
  return undefined;
}

function readJsonObject(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ChatTemplateError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(value)) throw new ChatTemplateError(`${path} must hold a JSON object`);
  return value;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

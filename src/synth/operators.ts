/**
 * The QA synthesis agent's edit operators (ASearcher's INJECT and FUZZ) over a QA with supporting
 * statements, in two interchangeable sets behind `SynthOperators`:
 *
 * - rule-based, over the synthetic KB (offline, exact; the default): questions are phrases of the KB
 *   question grammar below, edited as trees and rendered back to text;
 * - LLM, through an OpenAI-compatible chat-completions endpoint, for text the grammar cannot express.
 *
 * INJECT replaces an entity X named in the question by "the r of Y" for a KB fact Y --r--> X (the
 * relation is functional, so the phrase denotes X and nothing else) and adds that fact: one more hop.
 * FUZZ replaces a named entity by a description built from the fewest of its own facts that no other
 * entity of its type shares ("the person whose birthplace is … and whose employer is …"); hops stay.
 *
 * An operator that finds no edit to make answers `{ ok: false, reason }` (the agent records it and
 * tries again); only broken infrastructure (an LLM endpoint that keeps failing) throws.
 */
import { z } from 'zod';
import type { Rng } from '../core/rng.ts';
import { ENTITY_TYPES, RELATIONS, factSentence, worldDocs, type EntityType, type KbEntity, type KbFact, type KbWorld } from './kb.ts';
import { callWithRetries, postJson } from '../tools/retry.ts';
import { DEFAULT_TOOL_LIMITS, type ToolDoc, type ToolLimits } from '../tools/types.ts';
import { normalizeAnswer } from '../rewards/squad.ts';

/** A question-answer pair with the statements that support it. */
export interface SynthQa {
  question: string;
  answer: string;
  statements: string[];
  /** Chain length: the seed's hops plus one per injection (fuzzing keeps it). */
  hops: number;
}

export type EditOp = 'inject' | 'fuzz';

export type OpResult =
  | { ok: true; qa: SynthQa; /** Statements this edit added. */ added: string[]; /** What was replaced by what, for the history. */ note: string }
  | { ok: false; reason: string };

export interface SynthOperators {
  /** For logs and edit histories: 'rule', 'llm'. */
  readonly name: string;
  inject(qa: SynthQa, rng: Rng, signal?: AbortSignal): Promise<OpResult>;
  fuzz(qa: SynthQa, rng: Rng, signal?: AbortSignal): Promise<OpResult>;
}

// ---------------------------------------------------------------------------------------------------
// The KB question grammar:
//   question := "what is" phrase "?"
//   phrase   := name (two words) | "the" relation "of" phrase | "the" type "whose" clause ("and whose" clause)*
//   clause   := relation "is" phrase
// Nested descriptions can make "and whose" attach to more than one description, so parsing returns
// every reading; rendering puts the clauses that contain a description last, which keeps a question
// single-reading unless one description has two such clauses (the operators refuse those edits).

export type KbPhrase =
  | { kind: 'name'; name: string }
  | { kind: 'of'; relation: string; of: KbPhrase }
  | { kind: 'whose'; type: EntityType; clauses: KbClause[] };

export interface KbClause {
  relation: string;
  value: KbPhrase;
}

const RELATION_NAMES: ReadonlySet<string> = new Set(RELATIONS.map((r) => r.name));
const TYPE_NAMES: ReadonlySet<string> = new Set(ENTITY_TYPES);
const GRAMMAR_WORDS: ReadonlySet<string> = new Set(['what', 'is', 'the', 'of', 'whose', 'and', '?', '.']);

function isNameWord(t: string | undefined): boolean {
  return t !== undefined && !GRAMMAR_WORDS.has(t) && !RELATION_NAMES.has(t) && !TYPE_NAMES.has(t);
}

function containsDescription(p: KbPhrase): boolean {
  if (p.kind === 'whose') return true;
  if (p.kind === 'of') return containsDescription(p.of);
  return false;
}

export function renderPhrase(p: KbPhrase): string {
  if (p.kind === 'name') return p.name;
  if (p.kind === 'of') return `the ${p.relation} of ${renderPhrase(p.of)}`;
  const ordered = [...p.clauses.filter((c) => !containsDescription(c.value)), ...p.clauses.filter((c) => containsDescription(c.value))];
  return `the ${p.type} whose ${ordered.map((c) => `${c.relation} is ${renderPhrase(c.value)}`).join(' and whose ')}`;
}

/** The question text (the same form as kb.ts's `chainQuestionText` for relation chains). */
export function renderQuestion(p: KbPhrase): string {
  return `what is ${renderPhrase(p)} ?`;
}

/** Readings kept per position; beyond this a question counts as hopelessly ambiguous. */
export const MAX_READINGS = 64;

export interface QuestionParse {
  /** Every reading of the question (empty: not in the grammar). */
  readings: KbPhrase[];
  /** False when readings were cut at MAX_READINGS (so `readings` is not all of them). */
  complete: boolean;
}

interface Parsed<T> {
  value: T;
  end: number;
}

/** All readings of a question in the KB question grammar. */
export function parseQuestion(text: string): QuestionParse {
  const t = text.trim().split(/\s+/);
  let complete = true;
  const cap = <T>(xs: T[]): T[] => {
    if (xs.length <= MAX_READINGS) return xs;
    complete = false;
    return xs.slice(0, MAX_READINGS);
  };
  const phraseMemo = new Map<number, Parsed<KbPhrase>[]>();
  const clauseMemo = new Map<number, Parsed<KbClause[]>[]>();
  const phrase = (i: number): Parsed<KbPhrase>[] => {
    const hit = phraseMemo.get(i);
    if (hit) return hit;
    const out: Parsed<KbPhrase>[] = [];
    if (t[i] === 'the' && RELATION_NAMES.has(t[i + 1]!) && t[i + 2] === 'of') {
      for (const p of phrase(i + 3)) out.push({ value: { kind: 'of', relation: t[i + 1]!, of: p.value }, end: p.end });
    }
    if (t[i] === 'the' && TYPE_NAMES.has(t[i + 1]!) && t[i + 2] === 'whose') {
      for (const c of clauses(i + 3)) out.push({ value: { kind: 'whose', type: t[i + 1] as EntityType, clauses: c.value }, end: c.end });
    }
    if (isNameWord(t[i]) && isNameWord(t[i + 1])) out.push({ value: { kind: 'name', name: `${t[i]} ${t[i + 1]}` }, end: i + 2 });
    const kept = cap(out);
    phraseMemo.set(i, kept);
    return kept;
  };
  const clauses = (i: number): Parsed<KbClause[]>[] => {
    const hit = clauseMemo.get(i);
    if (hit) return hit;
    const out: Parsed<KbClause[]>[] = [];
    if (RELATION_NAMES.has(t[i]!) && t[i + 1] === 'is') {
      for (const v of phrase(i + 2)) {
        const first: KbClause = { relation: t[i]!, value: v.value };
        out.push({ value: [first], end: v.end });
        if (t[v.end] === 'and' && t[v.end + 1] === 'whose') {
          for (const rest of clauses(v.end + 2)) out.push({ value: [first, ...rest.value], end: rest.end });
        }
      }
    }
    const kept = cap(out);
    clauseMemo.set(i, kept);
    return kept;
  };
  if (t.length < 4 || t[0] !== 'what' || t[1] !== 'is' || t[t.length - 1] !== '?') return { readings: [], complete: true };
  const readings = phrase(2)
    .filter((p) => p.end === t.length - 1)
    .map((p) => p.value);
  return { readings, complete };
}

/** The entity names a phrase mentions, in reading order (a name may repeat). */
export function phraseNames(p: KbPhrase): string[] {
  if (p.kind === 'name') return [p.name];
  if (p.kind === 'of') return phraseNames(p.of);
  return p.clauses.flatMap((c) => phraseNames(c.value));
}

/** `p` with its k-th name (reading order, 0-based) replaced by `by`. */
export function replaceName(p: KbPhrase, k: number, by: KbPhrase): KbPhrase {
  let seen = 0;
  const go = (q: KbPhrase): KbPhrase => {
    if (q.kind === 'name') return seen++ === k ? by : q;
    if (q.kind === 'of') return { ...q, of: go(q.of) };
    return { ...q, clauses: q.clauses.map((c) => ({ ...c, value: go(c.value) })) };
  };
  const out = go(p);
  if (k < 0 || k >= seen) throw new Error(`replaceName: the phrase has ${seen} names, no name #${k}`);
  return out;
}

const byNameCache = new WeakMap<KbWorld, Map<string, KbEntity>>();

/** The entity with this full name in the world (names are unique within a world). */
export function entityByName(world: KbWorld, name: string): KbEntity | undefined {
  let m = byNameCache.get(world);
  if (!m) {
    m = new Map(world.entities.map((e) => [e.name, e]));
    byNameCache.set(world, m);
  }
  return m.get(name);
}

function dedupe(xs: readonly string[]): string[] {
  return [...new Set(xs)];
}

function shuffled<T>(xs: readonly T[], rng: Rng): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The fewest of `e`'s facts (none whose object is in `avoid`) that no other entity of its type has all of; every minimal choice. */
export function minimalDescriptions(world: KbWorld, e: KbEntity, avoid: ReadonlySet<string> = new Set()): KbFact[][] {
  const usable = e.facts.filter((f) => !avoid.has(f.object) && f.object !== e.id);
  const rivals = world.entities.filter((x) => x.type === e.type && x !== e);
  const objectOf = (x: KbEntity, relation: string) => x.facts.find((f) => f.relation === relation)?.object;
  for (let size = 1; size <= usable.length; size++) {
    const found: KbFact[][] = [];
    const pick = (from: number, chosen: KbFact[]) => {
      if (chosen.length === size) {
        if (!rivals.some((x) => chosen.every((f) => objectOf(x, f.relation) === f.object))) found.push([...chosen]);
        return;
      }
      for (let i = from; i < usable.length; i++) pick(i + 1, [...chosen, usable[i]!]);
    };
    pick(0, []);
    if (found.length > 0) return found;
  }
  return [];
}

/** The entity ids a phrase denotes in the world (a set: a phrase that is not unique denotes several). */
export function resolveInWorld(world: KbWorld, p: KbPhrase): Set<string> {
  if (p.kind === 'name') {
    const e = entityByName(world, p.name);
    return new Set(e ? [e.id] : []);
  }
  if (p.kind === 'of') {
    const out = new Set<string>();
    for (const id of resolveInWorld(world, p.of)) {
      const f = world.byId.get(id)!.facts.find((x) => x.relation === p.relation);
      if (f) out.add(f.object);
    }
    return out;
  }
  const values = p.clauses.map((c) => ({ relation: c.relation, allowed: resolveInWorld(world, c.value) }));
  const out = new Set<string>();
  for (const e of world.entities) {
    if (e.type !== p.type) continue;
    if (values.every((v) => e.facts.some((f) => f.relation === v.relation && v.allowed.has(f.object)))) out.add(e.id);
  }
  return out;
}

/** Every entity some part of the phrase denotes: the named ones, each intermediate one and the answer. */
export function involvedEntities(world: KbWorld, p: KbPhrase): Set<string> {
  const out = new Set<string>();
  const go = (q: KbPhrase) => {
    for (const id of resolveInWorld(world, q)) out.add(id);
    if (q.kind === 'of') go(q.of);
    if (q.kind === 'whose') for (const c of q.clauses) go(c.value);
  };
  go(p);
  return out;
}

interface KbState {
  tree: KbPhrase;
  names: string[];
  entities: KbEntity[];
  answer: KbEntity;
  /** Entities the question already passes through (see involvedEntities), the answer included. */
  involved: Set<string>;
}

/** The question as a single-reading tree over world entities, or why it is not one. */
function kbState(world: KbWorld, qa: SynthQa): KbState | string {
  const { readings, complete } = parseQuestion(qa.question);
  if (readings.length === 0) return `the question is not in the KB question grammar: ${JSON.stringify(qa.question)}`;
  if (readings.length > 1 || !complete) return `the question has ${complete ? readings.length : `over ${MAX_READINGS}`} readings; edit a single-reading question`;
  const tree = readings[0]!;
  const names = phraseNames(tree);
  const entities: KbEntity[] = [];
  for (const n of names) {
    const e = entityByName(world, n);
    if (!e) return `the question names '${n}', which is no entity of world '${world.name}'`;
    entities.push(e);
  }
  const answer = entityByName(world, qa.answer);
  if (!answer) return `the answer '${qa.answer}' is no entity of world '${world.name}'`;
  const involved = involvedEntities(world, tree);
  involved.add(answer.id);
  return { tree, names, entities, answer, involved };
}

/** Render `tree` and accept it only when the text reads back as that one tree. */
function singleReading(tree: KbPhrase): string | null {
  const text = renderQuestion(tree);
  const { readings, complete } = parseQuestion(text);
  return complete && readings.length === 1 ? text : null;
}

/** The rule-based operators over a synthetic KB world (exact and offline). */
export function ruleOperators(world: KbWorld): SynthOperators {
  return {
    name: 'rule',

    async inject(qa, rng) {
      const s = kbState(world, qa);
      if (typeof s === 'string') return { ok: false, reason: s };
      // Per named entity X: the facts Y --r--> X of entities Y the question does not already pass through
      // (a Y on the chain would let a reader skip hops: its document would already hold a later step).
      const options = s.entities.map((x) => world.entities.flatMap((y) => (s.involved.has(y.id) ? [] : y.facts.filter((f) => f.object === x.id).map((f) => ({ y, f })))));
      let ambiguous = 0;
      for (const k of shuffled(s.entities.map((_, i) => i), rng)) {
        if (options[k]!.length === 0) continue;
        const { y, f } = options[k]![rng.int(options[k]!.length)]!;
        const tree = replaceName(s.tree, k, { kind: 'of', relation: f.relation, of: { kind: 'name', name: y.name } });
        const question = singleReading(tree);
        if (!question) {
          ambiguous++;
          continue;
        }
        const added = [factSentence(world, y, f)];
        return {
          ok: true,
          qa: { question, answer: qa.answer, statements: dedupe([...qa.statements, ...added]), hops: qa.hops + 1 },
          added,
          note: `'${s.names[k]}' → 'the ${f.relation} of ${y.name}'`,
        };
      }
      return { ok: false, reason: ambiguous > 0 ? 'every injection would make the question ambiguous' : 'no entity off the question\'s chain has a fact whose object is an entity the question names' };
    },

    async fuzz(qa, rng) {
      const s = kbState(world, qa);
      if (typeof s === 'string') return { ok: false, reason: s };
      let ambiguous = 0;
      for (const k of shuffled(s.entities.map((_, i) => i), rng)) {
        const x = s.entities[k]!;
        // Descriptions may not point at entities the question passes through (the answer included):
        // "the employer of the person whose employer is C" would hand out C.
        const choices = minimalDescriptions(world, x, s.involved);
        if (choices.length === 0) continue;
        const facts = choices[rng.int(choices.length)]!;
        const description: KbPhrase = {
          kind: 'whose',
          type: x.type,
          clauses: facts.map((f) => ({ relation: f.relation, value: { kind: 'name', name: world.byId.get(f.object)!.name } })),
        };
        const question = singleReading(replaceName(s.tree, k, description));
        if (!question) {
          ambiguous++;
          continue;
        }
        const added = facts.map((f) => factSentence(world, x, f));
        return {
          ok: true,
          qa: { question, answer: qa.answer, statements: dedupe([...qa.statements, ...added]), hops: qa.hops },
          added,
          note: `'${x.name}' → '${renderPhrase(description)}'`,
        };
      }
      return {
        ok: false,
        reason: ambiguous > 0 ? 'every description would make the question ambiguous' : 'no entity the question names is singled out by any combination of its facts (that point off the question\'s chain)',
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// LLM operators.

export interface LlmOptions {
  /** OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (requests go to {baseUrl}/chat/completions). */
  baseUrl: string;
  model: string;
  /** Bearer key; default: the environment variable `apiKeyEnv`. No Authorization header when neither is set. */
  apiKey?: string;
  /** Default OPENAI_API_KEY. */
  apiKeyEnv?: string;
  /** Default 0.7 (edits should vary); the checks use 0. */
  temperature?: number;
  /** Per-call bounds (default DEFAULT_TOOL_LIMITS with a 120 s timeout); an unparseable reply counts as a failed attempt and is retried. */
  limits?: Partial<ToolLimits>;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

const ChatReplySchema = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string().nullable() }) })).min(1),
});

/** The first JSON object in a reply (bare, or inside a ```json fence). */
export function extractJsonObject(content: string): unknown {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(content);
  const body = fenced ? fenced[1]! : content;
  const start = body.indexOf('{');
  const end = body.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error(`the reply holds no JSON object: ${JSON.stringify(content.slice(0, 160))}`);
  try {
    return JSON.parse(body.slice(start, end + 1));
  } catch (e) {
    throw new Error(`the reply's JSON does not parse (${e instanceof Error ? e.message : String(e)}): ${JSON.stringify(content.slice(0, 160))}`);
  }
}

/** A chat-completions client that asks for one JSON object and retries replies that are not the one asked for. */
export class ChatJsonClient {
  readonly url: string;
  private readonly limits: ToolLimits;
  private readonly headers: Record<string, string>;

  constructor(readonly options: LlmOptions) {
    if (!/^https?:\/\//.test(options.baseUrl)) throw new Error(`LLM base URL must start with http:// or https:// (got '${options.baseUrl}'), e.g. http://127.0.0.1:8000/v1`);
    if (!options.model) throw new Error('LLM model name is empty; pass the model the endpoint serves');
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    // Generation is slower than a search call: two minutes per attempt unless told otherwise.
    this.limits = { ...DEFAULT_TOOL_LIMITS, timeoutMs: 120_000, ...options.limits };
    const key = options.apiKey ?? process.env[options.apiKeyEnv ?? 'OPENAI_API_KEY'];
    this.headers = key ? { authorization: `Bearer ${key}` } : {};
  }

  /** Send `messages`; parse the reply's first JSON object with `schema`. Throws a ToolError naming `tool` after the last retry. */
  async json<T>(tool: string, messages: ChatMessage[], schema: z.ZodType<T>, temperature = this.options.temperature ?? 0.7, signal?: AbortSignal): Promise<T> {
    return callWithRetries(
      tool,
      this.limits,
      async (s) => {
        const raw = await postJson(this.url, { model: this.options.model, messages, temperature }, { signal: s, maxBytes: this.limits.maxBytes, headers: this.headers });
        const reply = ChatReplySchema.safeParse(raw);
        if (!reply.success) throw new Error(`${this.url} did not answer in the chat-completions shape (choices[0].message.content)`);
        const obj = extractJsonObject(reply.data.choices[0]!.message.content ?? '');
        const parsed = schema.safeParse(obj);
        if (!parsed.success) throw new Error(`the reply's JSON is not the object asked for: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
        return parsed.data;
      },
      signal,
    );
  }
}

/** A document related to the question (the source of an injection), or null when there is none. */
export type RelatedDoc = (qa: SynthQa, rng: Rng) => ToolDoc | null | Promise<ToolDoc | null>;

/** For KB questions: the document of an entity with a fact about an entity the question names (not the answer, not already named). */
export function kbRelatedDoc(world: KbWorld): RelatedDoc {
  const docs = new Map(worldDocs(world).map((d) => [d.id, d]));
  return (qa, rng) => {
    const q = ` ${qa.question} `;
    const namedIds = new Set(world.entities.filter((e) => q.includes(` ${e.name} `)).map((e) => e.id));
    // Keep off the question's chain when the question is in the KB grammar (see ruleOperators.inject).
    const { readings } = parseQuestion(qa.question);
    const off = readings.length === 1 ? involvedEntities(world, readings[0]!) : new Set(namedIds);
    const candidates = world.entities.filter((y) => !off.has(y.id) && !namedIds.has(y.id) && y.name !== qa.answer && y.facts.some((f) => namedIds.has(f.object)));
    if (candidates.length === 0) return null;
    return docs.get(candidates[rng.int(candidates.length)]!.id)!;
  };
}

export const LlmEditSchema = z.object({
  question: z.string().min(1),
  answer: z.string().min(1),
  statements: z.array(z.string()),
});

const SYSTEM = 'You edit question-answer pairs to build hard multi-hop questions that need several look-ups to answer. Reply with one JSON object and nothing else.';

function qaBlock(qa: SynthQa): string {
  return [`Question: ${qa.question}`, `Answer: ${qa.answer}`, 'Supporting statements:', ...qa.statements.map((s) => `- ${s}`)].join('\n');
}

const REPLY_FORMAT = 'Reply with JSON: {"question": "<the new question>", "answer": "<the answer, unchanged>", "statements": ["<every statement the new question needs, the old ones and the new ones>"]}';

export function injectionPrompt(qa: SynthQa, doc: ToolDoc): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM },
    {
      role: 'user',
      content: [
        qaBlock(qa),
        '',
        `Related document (title: ${doc.title}):`,
        doc.contents,
        '',
        'Task (injection): choose an entity named in the question that the related document links to (the bridge entity). ' +
          'Using a fact from the related document, write a description that identifies the bridge entity uniquely, and put it in the question in place of the bridge entity\'s name, ' +
          'so that answering needs one more look-up. Keep the answer exactly as it is; do not mention the answer in the question; do not just join two questions with "and". ' +
          'Add the fact you used, as a sentence, to the statements.',
        REPLY_FORMAT,
      ].join('\n'),
    },
  ];
}

export function fuzzPrompt(qa: SynthQa): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM },
    {
      role: 'user',
      content: [
        qaBlock(qa),
        '',
        'Task (fuzzing): blur one specific detail of the question (a name, a date, a number, a place): replace it by a vaguer description that still identifies it uniquely. ' +
          'Keep the answer exactly as it is; do not mention the answer in the question. Add the facts the description relies on, as sentences, to the statements.',
        REPLY_FORMAT,
      ].join('\n'),
    },
  ];
}

/** The LLM operators: injection from a related document, fuzzing by the model's own rewording. */
export function llmOperators(options: LlmOptions & { relatedDoc: RelatedDoc; client?: ChatJsonClient }): SynthOperators {
  const client = options.client ?? new ChatJsonClient(options);
  const finish = (qa: SynthQa, op: EditOp, reply: z.infer<typeof LlmEditSchema>): OpResult => {
    if (normalizeAnswer(reply.answer) !== normalizeAnswer(qa.answer)) return { ok: false, reason: `the LLM changed the answer from '${qa.answer}' to '${reply.answer}'` };
    if (reply.question.trim() === qa.question.trim()) return { ok: false, reason: 'the LLM returned the question unchanged' };
    const old = new Set(qa.statements);
    const added = dedupe(reply.statements.map((s) => s.trim()).filter((s) => s && !old.has(s)));
    return {
      ok: true,
      qa: { question: reply.question.trim(), answer: qa.answer, statements: [...qa.statements, ...added], hops: qa.hops + (op === 'inject' ? 1 : 0) },
      added,
      note: `llm ${op}`,
    };
  };
  return {
    name: 'llm',
    async inject(qa, rng, signal) {
      const doc = await options.relatedDoc(qa, rng);
      if (!doc) return { ok: false, reason: 'no related document to inject from' };
      return finish(qa, 'inject', await client.json('llm-inject', injectionPrompt(qa, doc), LlmEditSchema, undefined, signal));
    },
    async fuzz(qa, _rng, signal) {
      return finish(qa, 'fuzz', await client.json('llm-fuzz', fuzzPrompt(qa), LlmEditSchema, undefined, signal));
    },
  };
}

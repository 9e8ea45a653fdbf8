/**
 * The checks the synthesis agent runs after every edit:
 *
 * - supported: the answer follows from the QA's statements alone;
 * - unique: the question has exactly one answer in the world, the given one;
 * - hidden: the question does not state its answer;
 * - difficulty: a policy without tools fails it (ASearcher: 0 of 8 samples correct).
 *
 * For KB questions the first two are exact: the question's phrases are resolved as entity sets, against
 * the statements only (supported) or against the whole world (unique), over every reading of the
 * text. For LLM-written questions an LLM judges them.
 */
import { z } from 'zod';
import { RELATIONS, type KbWorld } from './kb.ts';
import { ChatJsonClient, entityByName, parseQuestion, resolveInWorld, type ChatMessage, type KbPhrase, type LlmOptions, type SynthQa } from './operators.ts';
import { em, normalizeAnswer } from '../rewards/squad.ts';

export interface CheckOutcome {
  pass: boolean;
  detail: string;
}

export interface ValidityChecks {
  supported: CheckOutcome;
  unique: CheckOutcome;
  hidden: CheckOutcome;
}

export interface SynthChecks {
  readonly name: string;
  validate(qa: SynthQa, signal?: AbortSignal): Promise<ValidityChecks>;
}

/** Every validity check passed. */
export function checksPass(c: ValidityChecks): boolean {
  return c.supported.pass && c.unique.pass && c.hidden.pass;
}

/** The answer, as normalised words, does not occur in the normalised question. */
export function hiddenCheck(qa: SynthQa): CheckOutcome {
  const a = normalizeAnswer(qa.answer);
  const q = ` ${normalizeAnswer(qa.question)} `;
  if (!a) return { pass: false, detail: 'the answer is empty after normalisation' };
  return q.includes(` ${a} `) ? { pass: false, detail: `the question names its answer '${qa.answer}'` } : { pass: true, detail: 'the question does not name its answer' };
}

// ---------------------------------------------------------------------------------------------------
// Rule-based resolution of KB questions.

const RELATION_FROM = new Map(RELATIONS.map((r) => [r.name, r.from]));

export interface StatementTriple {
  subject: string;
  relation: string;
  object: string;
}

/** "the <relation> of <subject> is <object> ." → its triple, or null for any other sentence. */
export function parseStatement(s: string): StatementTriple | null {
  const m = /^the (\S+) of (.+?) is (.+?) \.$/.exec(s.trim());
  return m ? { relation: m[1]!, subject: m[2]!, object: m[3]! } : null;
}

/** The names a phrase denotes using only these triples (a relation's subject type is known from the relation). */
export function resolveInStatements(triples: readonly StatementTriple[], p: KbPhrase): Set<string> {
  if (p.kind === 'name') return new Set([p.name]);
  if (p.kind === 'of') {
    const from = resolveInStatements(triples, p.of);
    return new Set(triples.filter((t) => t.relation === p.relation && from.has(t.subject)).map((t) => t.object));
  }
  if (p.clauses.some((c) => RELATION_FROM.get(c.relation) !== p.type)) return new Set();
  const values = p.clauses.map((c) => ({ relation: c.relation, allowed: resolveInStatements(triples, c.value) }));
  const subjects = new Set(triples.map((t) => t.subject));
  return new Set([...subjects].filter((s) => values.every((v) => triples.some((t) => t.subject === s && t.relation === v.relation && v.allowed.has(t.object)))));
}

function show(names: Iterable<string>): string {
  const xs = [...names];
  return xs.length === 0 ? 'nothing' : xs.map((x) => `'${x}'`).join(', ');
}

/** Exact checks for questions of the KB question grammar. */
export function ruleChecks(world: KbWorld): SynthChecks {
  return {
    name: 'rule',
    async validate(qa) {
      const hidden = hiddenCheck(qa);
      const { readings, complete } = parseQuestion(qa.question);
      if (readings.length === 0 || !complete) {
        const why = readings.length === 0 ? 'the question is not in the KB question grammar' : `the question has over ${readings.length} readings`;
        return { supported: { pass: false, detail: why }, unique: { pass: false, detail: why }, hidden };
      }
      const triples = qa.statements.map(parseStatement).filter((t): t is StatementTriple => t !== null);
      const answer = entityByName(world, qa.answer);
      let supported: CheckOutcome = { pass: true, detail: `every reading gives '${qa.answer}' from the ${triples.length} statements` };
      let unique: CheckOutcome = answer
        ? { pass: true, detail: `every reading denotes exactly '${qa.answer}' in world '${world.name}'` }
        : { pass: false, detail: `the answer '${qa.answer}' is no entity of world '${world.name}'` };
      for (const [i, r] of readings.entries()) {
        const reading = readings.length > 1 ? ` (reading ${i + 1} of ${readings.length})` : '';
        const fromStatements = resolveInStatements(triples, r);
        if (supported.pass && !(fromStatements.size === 1 && fromStatements.has(qa.answer))) {
          supported = { pass: false, detail: `the statements give ${show(fromStatements)}${reading}, not just '${qa.answer}'` };
        }
        const inWorld = resolveInWorld(world, r);
        if (unique.pass && !(inWorld.size === 1 && inWorld.has(answer!.id))) {
          unique = { pass: false, detail: `the question denotes ${show([...inWorld].map((id) => world.byId.get(id)!.name))} in world '${world.name}'${reading}` };
        }
      }
      return { supported, unique, hidden };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// LLM-judged checks.

export const LlmVerdictSchema = z.object({ supported: z.boolean(), unique: z.boolean(), reason: z.string().default('') });

export function checkPrompt(qa: SynthQa): ChatMessage[] {
  return [
    { role: 'system', content: 'You check question-answer pairs written for a multi-hop question-answering dataset. Reply with one JSON object and nothing else.' },
    {
      role: 'user',
      content: [
        `Question: ${qa.question}`,
        `Answer: ${qa.answer}`,
        'Statements:',
        ...qa.statements.map((s) => `- ${s}`),
        '',
        '1. supported: can the answer be derived from the statements alone, by following them step by step from what the question says?',
        '2. unique: does the question have exactly one correct answer, the given one (no other entity fits every part of it)?',
        'Reply with JSON: {"supported": true|false, "unique": true|false, "reason": "<one sentence>"}',
      ].join('\n'),
    },
  ];
}

/** Checks judged by an LLM (temperature 0); `hidden` stays a string check. */
export function llmChecks(options: LlmOptions | ChatJsonClient): SynthChecks {
  const client = options instanceof ChatJsonClient ? options : new ChatJsonClient(options);
  return {
    name: 'llm',
    async validate(qa, signal) {
      const v = await client.json('llm-check', checkPrompt(qa), LlmVerdictSchema, 0, signal);
      return {
        supported: { pass: v.supported, detail: `LLM: ${v.supported ? 'supported' : 'not supported'}${v.reason ? ` (${v.reason})` : ''}` },
        unique: { pass: v.unique, detail: `LLM: ${v.unique ? 'unique' : 'not unique'}${v.reason ? ` (${v.reason})` : ''}` },
        hidden: hiddenCheck(qa),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Difficulty.

/**
 * How many of `n` tool-free attempts at `question` are correct. `answer` is passed for checks that
 * grade themselves; a check that ignores it is still a DifficultyCheck.
 */
export type DifficultyCheck = (question: string, n: number, answer: string) => Promise<number>;

export interface DifficultyOutcome extends CheckOutcome {
  correct: number;
  n: number;
}

/** A DifficultyCheck from a tool-free policy: n answers, graded by SQuAD exact match. */
export function toolFreeDifficulty(policy: (question: string) => Promise<string>): DifficultyCheck {
  return async (question, n, answer) => {
    let correct = 0;
    // One at a time: a seeded policy then answers in a fixed order.
    for (let i = 0; i < n; i++) correct += em(await policy(question), answer);
    return correct;
  };
}

/** Run a difficulty check: it passes when no attempt is correct. */
export async function checkDifficulty(check: DifficultyCheck, qa: SynthQa, n: number): Promise<DifficultyOutcome> {
  const correct = await check(qa.question, n, qa.answer);
  if (!Number.isInteger(correct) || correct < 0 || correct > n) throw new Error(`difficulty check returned ${correct} correct of ${n}; it must return an integer from 0 to ${n}`);
  return { pass: correct === 0, correct, n, detail: `${correct}/${n} tool-free answers correct` };
}

/**
 * The QA synthesis agent (src/synth/{operators,checks,agent}.ts and `agentrl synth`):
 * - the KB question grammar parses what it renders and finds every reading of ambiguous text;
 * - rule-based INJECT and FUZZ on a hand-made world give the hand-computed questions and statements;
 *   on generated worlds every kept edit leaves the question uniquely answerable by the same answer,
 *   injections add one hop each, fuzzed descriptions denote one entity, no entity is visited twice;
 * - operators that find no edit report it (no throw); the checks catch unsupported, non-unique,
 *   ambiguous and answer-naming questions;
 * - the loop is deterministic given its seed, respects maxSteps and the target hops, and with
 *   requireDifficulty keeps fuzzing until a (fake) tool-free policy fails;
 * - the LLM operators and checks against a local fake OpenAI-compatible server: a garbage reply then
 *   a good one is retried, replies that change the answer are refused, the last retry's error is clear;
 * - `agentrl synth corpus|qa` write valid, reloadable, deterministic JSONL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/core/rng.ts';
import { generateWorlds, worldDocs, type KbEntity, type KbWorld } from '../src/synth/kb.ts';
import {
  ChatJsonClient,
  entityByName,
  extractJsonObject,
  involvedEntities,
  kbRelatedDoc,
  llmOperators,
  minimalDescriptions,
  parseQuestion,
  renderPhrase,
  renderQuestion,
  resolveInWorld,
  ruleOperators,
  type KbPhrase,
  type SynthQa,
} from '../src/synth/operators.ts';
import { checkDifficulty, hiddenCheck, llmChecks, parseStatement, ruleChecks, toolFreeDifficulty } from '../src/synth/checks.ts';
import { seedQa, synthesize, type SynthesisResult } from '../src/synth/agent.ts';
import { ToolError } from '../src/tools/types.ts';
import { runSynthQa, type QaCliOptions } from '../src/cli/synth.ts';

const ROOT = join(import.meta.dirname, '..');

/** A hand-made world: ids are the keys, facts name objects by key. */
function handWorld(spec: Record<string, { name: string; type: KbEntity['type']; facts: Record<string, string> }>): KbWorld {
  const entities: KbEntity[] = Object.entries(spec).map(([id, e]) => ({ id, name: e.name, type: e.type, facts: Object.entries(e.facts).map(([relation, object]) => ({ relation, object })) }));
  return { name: 'hand', entities, byId: new Map(entities.map((e) => [e.id, e])) };
}

/*
 * ana bel (A): employer acme co, birthplace xan ton, mentor bo cid
 * bo cid  (B): employer acme co, birthplace yor ton, mentor cy dot
 * cy dot  (C): employer zed co,  birthplace yor ton, mentor bo cid
 * di eve  (D): employer zed co   (nothing points at D)
 * xan ton (X): mayor cy dot, twin yor ton;   yor ton (Y): mayor ana bel, twin xan ton
 * acme co (K1): founder cy dot, headquarters xan ton;   zed co (K2): founder bo cid, headquarters yor ton
 */
const HAND = handWorld({
  A: { name: 'ana bel', type: 'person', facts: { employer: 'K1', birthplace: 'X', mentor: 'B' } },
  B: { name: 'bo cid', type: 'person', facts: { employer: 'K1', birthplace: 'Y', mentor: 'C' } },
  C: { name: 'cy dot', type: 'person', facts: { employer: 'K2', birthplace: 'Y', mentor: 'B' } },
  D: { name: 'di eve', type: 'person', facts: { employer: 'K2' } },
  X: { name: 'xan ton', type: 'city', facts: { mayor: 'C', twin: 'Y' } },
  Y: { name: 'yor ton', type: 'city', facts: { mayor: 'A', twin: 'X' } },
  K1: { name: 'acme co', type: 'company', facts: { founder: 'C', headquarters: 'X' } },
  K2: { name: 'zed co', type: 'company', facts: { founder: 'B', headquarters: 'Y' } },
});

const SEED_A: SynthQa = { question: 'what is the birthplace of ana bel ?', answer: 'xan ton', statements: ['the birthplace of ana bel is xan ton .'], hops: 1 };

function single(text: string): KbPhrase {
  const { readings, complete } = parseQuestion(text);
  expect(complete).toBe(true);
  expect(readings, text).toHaveLength(1);
  return readings[0]!;
}

function countPhrases(p: KbPhrase): number {
  if (p.kind === 'name') return 1;
  if (p.kind === 'of') return 1 + countPhrases(p.of);
  return 1 + p.clauses.reduce((s, c) => s + countPhrases(c.value), 0);
}

function descriptions(p: KbPhrase): KbPhrase[] {
  if (p.kind === 'name') return [];
  if (p.kind === 'of') return descriptions(p.of);
  return [p, ...p.clauses.flatMap((c) => descriptions(c.value))];
}

describe('the KB question grammar', () => {
  it('parses a chain question into nested relations and renders it back', () => {
    const q = 'what is the founder of the employer of ana bel ?';
    const p = single(q);
    expect(p).toEqual({ kind: 'of', relation: 'founder', of: { kind: 'of', relation: 'employer', of: { kind: 'name', name: 'ana bel' } } });
    expect(renderQuestion(p)).toBe(q);
  });

  it('renders clauses that hold a description last, so nested descriptions stay single-reading', () => {
    const p: KbPhrase = {
      kind: 'whose',
      type: 'person',
      clauses: [
        { relation: 'mentor', value: { kind: 'whose', type: 'person', clauses: [{ relation: 'employer', value: { kind: 'name', name: 'zed co' } }] } },
        { relation: 'birthplace', value: { kind: 'name', name: 'yor ton' } },
      ],
    };
    const text = renderQuestion(p);
    expect(text).toBe('what is the person whose birthplace is yor ton and whose mentor is the person whose employer is zed co ?');
    // Persons born in yor ton: bo cid (mentor cy dot, employed by zed co) and cy dot (mentor bo cid, employed by acme co).
    expect(resolveInWorld(HAND, single(text))).toEqual(new Set(['B']));
  });

  it('finds every reading of an ambiguous "and whose" (hand-computed)', () => {
    const { readings } = parseQuestion('what is the birthplace of the person whose mentor is the person whose employer is acme co and whose birthplace is yor ton ?');
    expect(readings).toHaveLength(2);
    // Reading 1: inner = employed by K1 and born in Y = {B}; persons mentored by B = {A, C}.
    // Reading 2: inner = employed by K1 = {A, B}; persons mentored by one of them and born in Y = {C}.
    const got = readings.map((r) => [...resolveInWorld(HAND, r)].map((id) => HAND.byId.get(id)!.name).sort());
    expect(got).toContainEqual(['xan ton', 'yor ton']);
    expect(got).toContainEqual(['yor ton']);
  });

  it('gives no reading for text outside the grammar', () => {
    for (const q of ['who founded acme co ?', 'what is the founder of ?', 'what is the founder of acme co', 'what is the person whose employer acme co ?', 'what is ana ?']) {
      expect(parseQuestion(q).readings, q).toEqual([]);
    }
  });
});

describe('rule-based operators on a hand-made world', () => {
  const ops = ruleOperators(HAND);
  const checks = ruleChecks(HAND);

  it('INJECT replaces the named entity by "the r of Y" for the one fact pointing at it, adds that fact and a hop', async () => {
    const r = await ops.inject(SEED_A, new Rng(0));
    expect(r).toEqual({
      ok: true,
      qa: { question: 'what is the birthplace of the mayor of yor ton ?', answer: 'xan ton', statements: ['the birthplace of ana bel is xan ton .', 'the mayor of yor ton is ana bel .'], hops: 2 },
      added: ['the mayor of yor ton is ana bel .'],
      note: "'ana bel' → 'the mayor of yor ton'",
    });
    if (!r.ok) return;
    const c = await checks.validate(r.qa);
    expect([c.supported.pass, c.unique.pass, c.hidden.pass]).toEqual([true, true, true]);
  });

  it('FUZZ describes the named entity by the fewest of its facts no other person shares (not the answer)', async () => {
    // A's usable facts: employer acme co (B too), mentor bo cid (C too); birthplace xan ton is the answer.
    expect(minimalDescriptions(HAND, HAND.byId.get('A')!, new Set(['X'])).map((fs) => fs.map((f) => f.relation))).toEqual([['employer', 'mentor']]);
    const r = await ops.fuzz(SEED_A, new Rng(0));
    expect(r).toEqual({
      ok: true,
      qa: {
        question: 'what is the birthplace of the person whose employer is acme co and whose mentor is bo cid ?',
        answer: 'xan ton',
        statements: ['the birthplace of ana bel is xan ton .', 'the employer of ana bel is acme co .', 'the mentor of ana bel is bo cid .'],
        hops: 1,
      },
      added: ['the employer of ana bel is acme co .', 'the mentor of ana bel is bo cid .'],
      note: "'ana bel' → 'the person whose employer is acme co and whose mentor is bo cid'",
    });
    if (!r.ok) return;
    const d = descriptions(single(r.qa.question));
    expect(d).toHaveLength(1);
    expect(resolveInWorld(HAND, d[0]!)).toEqual(new Set(['A']));
    const c = await checks.validate(r.qa);
    expect([c.supported.pass, c.unique.pass, c.hidden.pass]).toEqual([true, true, true]);
  });

  it('one fact suffices when it is unique: the city whose mayor is ana bel', async () => {
    // "what is the twin of yor ton ?" (answer xan ton): Y's facts are mayor A (no other city) and twin X (the answer).
    const r = await ops.fuzz({ question: 'what is the twin of yor ton ?', answer: 'xan ton', statements: ['the twin of yor ton is xan ton .'], hops: 1 }, new Rng(0));
    expect(r.ok && r.qa.question).toBe('what is the twin of the city whose mayor is ana bel ?');
  });

  it('operators that find no edit say why instead of throwing', async () => {
    // Nothing points at di eve; its only fact (employer zed co) is the answer.
    const qa: SynthQa = { question: 'what is the employer of di eve ?', answer: 'zed co', statements: ['the employer of di eve is zed co .'], hops: 1 };
    expect(await ops.inject(qa, new Rng(0))).toEqual({ ok: false, reason: "no entity off the question's chain has a fact whose object is an entity the question names" });
    expect(await ops.fuzz(qa, new Rng(0))).toEqual({ ok: false, reason: "no entity the question names is singled out by any combination of its facts (that point off the question's chain)" });
    expect(await ops.inject({ ...qa, question: 'who employs di eve ?' }, new Rng(0))).toEqual({ ok: false, reason: 'the question is not in the KB question grammar: "who employs di eve ?"' });
    expect(await ops.fuzz({ ...qa, question: 'what is the employer of no one ?' }, new Rng(0))).toEqual({ ok: false, reason: "the question names 'no one', which is no entity of world 'hand'" });
    const amb = 'what is the birthplace of the person whose mentor is the person whose employer is acme co and whose birthplace is yor ton ?';
    expect(await ops.inject({ ...qa, question: amb }, new Rng(0))).toEqual({ ok: false, reason: 'the question has 2 readings; edit a single-reading question' });
  });

  it('INJECT never brings in an entity the question already passes through', async () => {
    // yor ton → (twin) xan ton → (mayor) cy dot. Facts pointing at yor ton: the birthplace of bo cid and
    // of cy dot, the twin of xan ton, the headquarters of zed co. cy dot is the answer and xan ton is on
    // the chain ("the twin of the twin of xan ton" would come back to it), so two injections remain.
    const qa: SynthQa = { question: 'what is the mayor of the twin of yor ton ?', answer: 'cy dot', statements: ['the twin of yor ton is xan ton .', 'the mayor of xan ton is cy dot .'], hops: 2 };
    const seen = new Set<string>();
    for (let s = 0; s < 20; s++) {
      const r = await ops.inject(qa, new Rng(s));
      if (r.ok) seen.add(r.qa.question);
    }
    expect([...seen].sort()).toEqual(['what is the mayor of the twin of the birthplace of bo cid ?', 'what is the mayor of the twin of the headquarters of zed co ?']);
  });
});

describe('rule-based checks', () => {
  const checks = ruleChecks(HAND);

  it('unique fails when a description fits two entities, though the statements support the answer', async () => {
    const c = await checks.validate({
      question: 'what is the birthplace of the person whose employer is acme co ?',
      answer: 'xan ton',
      statements: ['the employer of ana bel is acme co .', 'the birthplace of ana bel is xan ton .'],
      hops: 1,
    });
    expect(c.supported).toEqual({ pass: true, detail: "every reading gives 'xan ton' from the 2 statements" });
    expect(c.unique).toEqual({ pass: false, detail: "the question denotes 'xan ton', 'yor ton' in world 'hand'" });
  });

  it('supported fails when a link of the chain is missing from the statements', async () => {
    const c = await checks.validate({ question: 'what is the birthplace of the mayor of yor ton ?', answer: 'xan ton', statements: ['the birthplace of ana bel is xan ton .'], hops: 2 });
    expect(c.supported).toEqual({ pass: false, detail: "the statements give nothing, not just 'xan ton'" });
    expect(c.unique.pass).toBe(true);
  });

  it('unique fails when the readings of ambiguous text disagree, naming the reading', async () => {
    const c = await checks.validate({
      question: 'what is the birthplace of the person whose mentor is the person whose employer is acme co and whose birthplace is yor ton ?',
      answer: 'yor ton',
      statements: [],
      hops: 1,
    });
    expect(c.unique.pass).toBe(false);
    expect(c.unique.detail).toMatch(/\(reading [12] of 2\)/);
  });

  it('hidden fails when the question names its answer (normalised)', async () => {
    // The mentor of bo cid is cy dot, whose mentor is bo cid.
    const qa: SynthQa = { question: 'what is the mentor of the mentor of bo cid ?', answer: 'Bo Cid.', statements: ['the mentor of bo cid is cy dot .', 'the mentor of cy dot is bo cid .'], hops: 2 };
    expect(hiddenCheck(qa)).toEqual({ pass: false, detail: "the question names its answer 'Bo Cid.'" });
    const c = await checks.validate({ ...qa, answer: 'bo cid' });
    expect([c.supported.pass, c.unique.pass, c.hidden.pass]).toEqual([true, true, false]);
  });

  it('parses statements into triples and ignores other sentences', () => {
    expect(parseStatement('the twin of xan ton is yor ton .')).toEqual({ relation: 'twin', subject: 'xan ton', object: 'yor ton' });
    expect(parseStatement('xan ton is a city .')).toBeNull();
  });
});

describe('difficulty', () => {
  it('counts SQuAD exact matches of a tool-free policy and passes only at 0 correct', async () => {
    let k = 0;
    const alternating = toolFreeDifficulty(async () => (k++ % 2 === 0 ? 'The  Xan Ton!' : 'yor ton'));
    expect(await alternating('q', 8, 'xan ton')).toBe(4);
    const knows = await checkDifficulty(toolFreeDifficulty(async () => 'xan ton'), SEED_A, 8);
    expect(knows).toEqual({ pass: false, correct: 8, n: 8, detail: '8/8 tool-free answers correct' });
    const clueless = await checkDifficulty(toolFreeDifficulty(async () => 'no idea'), SEED_A, 8);
    expect(clueless).toEqual({ pass: true, correct: 0, n: 8, detail: '0/8 tool-free answers correct' });
    await expect(checkDifficulty(async () => 9, SEED_A, 8)).rejects.toThrow(/returned 9 correct of 8/);
  });
});

describe('the synthesis loop', () => {
  const [world] = generateWorlds({ seed: 5, perType: 8, worlds: ['w'] });
  const ops = ruleOperators(world!);
  const checks = ruleChecks(world!);

  async function run(seed: number, targetHops: number, extra: Partial<Parameters<typeof synthesize>[1]> = {}): Promise<{ start: SynthQa; r: SynthesisResult }> {
    const start = seedQa(world!, new Rng(seed));
    return { start, r: await synthesize(start, { seed, targetHops, operators: ops, checks, ...extra }) };
  }

  it('keeps the answer, stays uniquely answerable and supported, adds one hop per injection, never revisits an entity', async () => {
    const reached: number[] = [];
    for (let seed = 0; seed < 40; seed++) {
      const target = 1 + (seed % 8);
      const { start, r } = await run(seed, target);
      expect(start.hops).toBe(1);
      expect(r.qa.answer).toBe(start.answer);
      expect(r.qa.hops).toBe(1 + r.injections);
      expect(r.qa.hops).toBeLessThanOrEqual(target);
      if (r.status === 'done') reached.push(target);
      expect(r.status === 'done').toBe(r.qa.hops === target);
      let qa = start;
      for (const e of r.edits) {
        expect(e.questionBefore).toBe(qa.question);
        if (!e.accepted) continue;
        expect(e.hopsAfter).toBe(e.hopsBefore + (e.op === 'inject' ? 1 : 0));
        expect(e.added.length).toBe(e.op === 'inject' ? 1 : e.added.length);
        qa = { ...qa, question: e.questionAfter!, hops: e.hopsAfter! };
      }
      expect(qa.question).toBe(r.qa.question);
      const c = await checks.validate(r.qa);
      expect([c.supported.pass, c.unique.pass, c.hidden.pass], r.qa.question).toEqual([true, true, true]);
      const tree = single(r.qa.question);
      expect([...resolveInWorld(world!, tree)]).toEqual([entityByName(world!, r.qa.answer)!.id]);
      // Every phrase of the question denotes a different entity: no hop can be skipped.
      expect(involvedEntities(world!, tree).size).toBe(countPhrases(tree));
      for (const d of descriptions(tree)) expect(resolveInWorld(world!, d).size).toBe(1);
      // Every statement is a fact of the world.
      for (const s of r.qa.statements) {
        const t = parseStatement(s)!;
        const subj = entityByName(world!, t.subject)!;
        expect(subj.facts.some((f) => f.relation === t.relation && world!.byId.get(f.object)!.name === t.object), s).toBe(true);
      }
    }
    // Runs that miss their target are dead ends of the KB (a company or university nobody points at,
    // singled out by no fact but the answer: neither operator applies); 25 of these 40 reach it.
    expect(reached.length).toBeGreaterThanOrEqual(20);
    expect(reached).toContain(8);
  });

  it('fuzzed descriptions are unique and kept edits of both kinds occur', async () => {
    let fuzzes = 0;
    let done = 0;
    for (let seed = 100; seed < 120; seed++) {
      const { r } = await run(seed, 6);
      fuzzes += r.fuzzes;
      if (r.status === 'done') {
        done++;
        expect(r.injections).toBe(5);
      }
      for (const e of r.edits.filter((x) => x.accepted && x.op === 'fuzz')) {
        expect(e.questionAfter).toMatch(/ whose /);
        expect(e.checks!.unique.pass).toBe(true);
      }
    }
    expect(fuzzes).toBeGreaterThan(0);
    expect(done).toBeGreaterThanOrEqual(5); // 8 of these 20
  });

  it('is deterministic given the seed; another seed gives another history', async () => {
    const a = await run(7, 5);
    const b = await run(7, 5);
    expect(b).toEqual(a);
    const c = await synthesize(a.start, { seed: 8, targetHops: 5, operators: ops, checks });
    expect(c.edits).not.toEqual(a.r.edits);
  });

  it('respects maxSteps and stops at once when the seed is already at the target', async () => {
    const zero = await run(3, 4, { maxSteps: 0 });
    expect(zero.r).toMatchObject({ status: 'max-steps', edits: [], qa: zero.start });
    const three = await run(3, 8, { maxSteps: 3 });
    expect(three.r.edits.length).toBe(3);
    expect(three.r.status).toBe('max-steps');
    const fuzzOnly = await run(3, 3, { pInject: 0, maxSteps: 5 });
    expect(fuzzOnly.r.edits.map((e) => e.op)).toEqual(['fuzz', 'fuzz', 'fuzz', 'fuzz', 'fuzz']);
    expect(fuzzOnly.r.qa.hops).toBe(1);
    const atTarget = await run(3, 1);
    expect(atTarget.r).toMatchObject({ status: 'done', edits: [] });
  });

  it('records failed operators and goes on (no throw)', async () => {
    const qa: SynthQa = { question: 'what is the employer of di eve ?', answer: 'zed co', statements: ['the employer of di eve is zed co .'], hops: 1 };
    const r = await synthesize(qa, { seed: 1, targetHops: 3, maxSteps: 4, operators: ruleOperators(HAND), checks: ruleChecks(HAND) });
    expect(r.status).toBe('max-steps');
    expect(r.edits).toHaveLength(4);
    for (const e of r.edits) {
      expect(e.accepted).toBe(false);
      expect(e.reason).toMatch(/^no entity/);
      expect(e.checks).toBeUndefined();
    }
    expect(r.qa).toEqual(qa);
  });

  it('rejects an edit whose checks fail, and records the failed check', async () => {
    // Checks that refuse everything: every edit is made but none kept.
    const refuse = { name: 'refuse', validate: async () => ({ supported: { pass: true, detail: 'ok' }, unique: { pass: false, detail: 'two answers' }, hidden: { pass: true, detail: 'ok' } }) };
    let checked = 0;
    for (let seed = 0; seed < 20; seed++) {
      const { start, r } = await run(seed, 4, { checks: refuse, maxSteps: 3 });
      expect(r.qa).toEqual(start);
      expect(r.edits.every((e) => !e.accepted)).toBe(true);
      // Edits the operators could make were all refused by the check; the others found no edit.
      const made = r.edits.filter((e) => e.questionAfter !== undefined);
      expect(made.every((e) => e.reason === 'unique: two answers')).toBe(true);
      checked += made.length;
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('with requireDifficulty, keeps fuzzing past the target until the tool-free policy fails', async () => {
    // A fake tool-free policy that "knows" every relation chain but cannot resolve descriptions.
    const asked: string[] = [];
    const policy = async (q: string) => {
      asked.push(q);
      if (q.includes(' whose ')) return 'no idea';
      let e: KbEntity | undefined;
      const m = /^what is (.*) \?$/.exec(q)!;
      const p = single(`what is ${m[1]} ?`);
      for (const id of resolveInWorld(world!, p)) e = world!.byId.get(id);
      return e!.name;
    };
    let done = 0;
    let fuzzedPastTarget = 0;
    for (let seed = 0; seed < 12; seed++) {
      const { r } = await run(seed, 3, { difficulty: toolFreeDifficulty(policy), requireDifficulty: true });
      expect(r.seedDifficulty).toMatchObject({ pass: false, correct: 8, n: 8 });
      if (r.status === 'max-steps') {
        // A dead end (see above): every step was spent and the policy never failed at 3 hops.
        expect(r.edits).toHaveLength(16);
        expect(r.edits.some((e) => e.accepted && e.hopsAfter === 3 && e.difficulty!.pass)).toBe(false);
        continue;
      }
      done++;
      expect(r.qa.hops).toBe(3);
      expect(r.qa.question).toMatch(/ whose /);
      const kept = r.edits.filter((e) => e.accepted);
      expect(kept.at(-1)!.difficulty).toMatchObject({ pass: true, correct: 0 });
      // Had an earlier edit reached 3 hops with the policy failing, the loop would have stopped there.
      for (const e of kept.slice(0, -1)) if (e.hopsAfter === 3) expect(e.difficulty!.pass).toBe(false);
      if (kept.at(-1)!.op === 'fuzz' && kept.at(-1)!.hopsBefore === 3) fuzzedPastTarget++;
    }
    expect(done).toBeGreaterThanOrEqual(5);
    expect(fuzzedPastTarget).toBeGreaterThan(0);
    // Without the requirement the loop stops at 3 hops whatever the policy says: find a seed that
    // reaches 3 hops by injections only (which this policy answers) and check it stops there.
    let stoppedAnswerable = 0;
    for (let seed = 0; seed < 40 && stoppedAnswerable === 0; seed++) {
      const { r } = await run(seed, 3, { difficulty: toolFreeDifficulty(policy) });
      if (r.status !== 'done' || r.qa.question.includes(' whose ')) continue;
      expect(r.qa.hops).toBe(3);
      expect(r.edits.at(-1)!.difficulty).toMatchObject({ pass: false, correct: 8 });
      stoppedAnswerable++;
    }
    expect(stoppedAnswerable).toBe(1);
    await expect(run(0, 3, { requireDifficulty: true })).rejects.toThrow(/requireDifficulty is set but no difficulty check was given/);
  });

  it('refuses bad settings, naming the field', async () => {
    await expect(run(0, 0)).rejects.toThrow(/targetHops/);
    await expect(run(0, 3, { pInject: 2 })).rejects.toThrow(/pInject/);
    await expect(run(0, 3, { maxSteps: -1 })).rejects.toThrow(/maxSteps/);
  });
});

// ---------------------------------------------------------------------------------------------------
// LLM operators and checks against a fake OpenAI-compatible server.

interface FakeRequest {
  url: string;
  authorization?: string;
  body: { model: string; messages: { role: string; content: string }[]; temperature: number };
}

class FakeLlm {
  server!: Server;
  requests: FakeRequest[] = [];
  /** Replies (message contents) in order; when empty, `fallback` answers. */
  queue: string[] = [];
  fallback: (req: FakeRequest) => string = () => 'no reply configured';
  url = '';

  async start(): Promise<void> {
    this.server = createServer(async (req: IncomingMessage, res) => {
      let data = '';
      for await (const chunk of req) data += chunk;
      const r: FakeRequest = { url: req.url ?? '', authorization: req.headers.authorization, body: JSON.parse(data) };
      this.requests.push(r);
      const content = this.queue.length > 0 ? this.queue.shift()! : this.fallback(r);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content } }] }));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  reset(): void {
    this.requests = [];
    this.queue = [];
    this.fallback = () => 'no reply configured';
  }
}

const llm = new FakeLlm();
const LIMITS = { retries: 2, backoffMs: 1, timeoutMs: 10_000 };

beforeAll(async () => {
  await llm.start();
});

afterAll(async () => {
  await new Promise((resolve) => llm.server.close(resolve));
});

describe('LLM operators and checks (fake OpenAI-compatible server)', () => {
  it('INJECT: a garbage reply is retried, the good one (in a ```json fence) becomes the edit', async () => {
    llm.reset();
    const good = {
      question: 'what is the birthplace of the mayor of yor ton ?',
      answer: 'xan ton',
      statements: ['the birthplace of ana bel is xan ton .', 'the mayor of yor ton is ana bel .'],
    };
    llm.queue = ['Sure! The new question is about the mayor.', '```json\n' + JSON.stringify(good) + '\n```'];
    const ops = llmOperators({ baseUrl: llm.url, model: 'fake-model', apiKey: 'k-123', temperature: 0.5, limits: LIMITS, relatedDoc: kbRelatedDoc(HAND) });
    const r = await ops.inject(SEED_A, new Rng(0));
    expect(r).toEqual({ ok: true, qa: { ...good, hops: 2 }, added: ['the mayor of yor ton is ana bel .'], note: 'llm inject' });
    expect(llm.requests).toHaveLength(2);
    const req = llm.requests[0]!;
    expect(req.url).toBe('/v1/chat/completions');
    expect(req.authorization).toBe('Bearer k-123');
    expect(req.body.model).toBe('fake-model');
    expect(req.body.temperature).toBe(0.5);
    const prompt = req.body.messages.at(-1)!.content;
    expect(prompt).toContain('Question: what is the birthplace of ana bel ?');
    expect(prompt).toContain('Answer: xan ton');
    expect(prompt).toContain('- the birthplace of ana bel is xan ton .');
    // The related document: yor ton is the only entity off the chain with a fact about ana bel.
    expect(prompt).toContain('Related document (title: yor ton):\nyor ton is a city . the mayor of yor ton is ana bel . the twin of yor ton is xan ton .');
    expect(prompt).toContain('Task (injection)');
  });

  it('FUZZ: a reply that changes the answer is refused (reported, not thrown); the key comes from the env var', async () => {
    llm.reset();
    process.env.SYNTH_TEST_KEY = 'env-key';
    llm.queue = [JSON.stringify({ question: 'what is the birthplace of a person employed by acme co ?', answer: 'yor ton', statements: [] })];
    const ops = llmOperators({ baseUrl: llm.url + '/', model: 'm', apiKeyEnv: 'SYNTH_TEST_KEY', limits: LIMITS, relatedDoc: () => null });
    expect(await ops.fuzz(SEED_A, new Rng(0))).toEqual({ ok: false, reason: "the LLM changed the answer from 'xan ton' to 'yor ton'" });
    expect(llm.requests[0]!.authorization).toBe('Bearer env-key');
    expect(llm.requests[0]!.url).toBe('/v1/chat/completions');
    expect(llm.requests[0]!.body.temperature).toBe(0.7);
    expect(llm.requests[0]!.body.messages.at(-1)!.content).toContain('Task (fuzzing)');
    // No related document: the injection fails without asking the LLM.
    expect(await ops.inject(SEED_A, new Rng(0))).toEqual({ ok: false, reason: 'no related document to inject from' });
    expect(llm.requests).toHaveLength(1);
    delete process.env.SYNTH_TEST_KEY;
  });

  it('after the last retry: a ToolError naming the tool, the attempts and what was wrong', async () => {
    llm.reset();
    llm.fallback = () => '{"question": "only a question"}';
    const ops = llmOperators({ baseUrl: llm.url, model: 'm', limits: LIMITS, relatedDoc: () => null });
    const err = await ops.fuzz(SEED_A, new Rng(0)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).message).toMatch(/^llm-fuzz: failed after 3 attempts: the reply's JSON is not the object asked for: answer: Required; statements: Required$/);
    expect(llm.requests).toHaveLength(3);
    expect(llm.requests[0]!.authorization).toBeUndefined();
  });

  it('checks: the LLM verdict (temperature 0), with the string check for a named answer', async () => {
    llm.reset();
    llm.queue = ['not json at all', '{"supported": true, "unique": false, "reason": "two people fit"}'];
    const c = await llmChecks({ baseUrl: llm.url, model: 'm', limits: LIMITS }).validate({ ...SEED_A, question: 'what is xan ton ?' });
    expect(c).toEqual({
      supported: { pass: true, detail: 'LLM: supported (two people fit)' },
      unique: { pass: false, detail: 'LLM: not unique (two people fit)' },
      hidden: { pass: false, detail: "the question names its answer 'xan ton'" },
    });
    expect(llm.requests).toHaveLength(2);
    expect(llm.requests[1]!.body.temperature).toBe(0);
  });

  it('the synthesis loop runs on LLM operators and checks', async () => {
    llm.reset();
    llm.fallback = (req) => {
      const prompt = req.body.messages.at(-1)!.content;
      if (prompt.includes('1. supported')) return '{"supported": true, "unique": true}';
      const q = /^Question: (.*)$/m.exec(prompt)![1]!;
      const statements = [...prompt.matchAll(/^- (.*)$/gm)].map((m) => m[1]!);
      const edited = prompt.includes('Task (injection)') ? q.replace(/\?$/, 'in the injected way ?') : q.replace(/\?$/, 'roughly ?');
      return JSON.stringify({ question: edited, answer: 'xan ton', statements: [...statements, `fact ${statements.length}`] });
    };
    const client = new ChatJsonClient({ baseUrl: llm.url, model: 'm', limits: LIMITS });
    const r = await synthesize(SEED_A, { seed: 3, targetHops: 3, operators: llmOperators({ baseUrl: llm.url, model: 'm', client, relatedDoc: kbRelatedDoc(HAND) }), checks: llmChecks(client) });
    expect(r.status).toBe('done');
    expect(r.qa.hops).toBe(3);
    expect(r.injections).toBe(2);
    expect(r.qa.statements).toEqual(['the birthplace of ana bel is xan ton .', ...Array.from({ length: r.injections + r.fuzzes }, (_, i) => `fact ${i + 1}`)]);
  });

  it('extracts the first JSON object of a reply, or says there is none', () => {
    expect(extractJsonObject('Here: {"a": 1} done')).toEqual({ a: 1 });
    expect(() => extractJsonObject('nothing here')).toThrow(/holds no JSON object/);
    expect(() => extractJsonObject('{"a": }')).toThrow(/does not parse/);
    expect(() => new ChatJsonClient({ baseUrl: 'localhost:8000', model: 'm' })).toThrow(/must start with http/);
  });
});

// ---------------------------------------------------------------------------------------------------
// The CLI.

const execFileP = promisify(execFile);

async function agentrl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, timeout: 60_000, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout, stderr: err.stderr };
  }
}

function jsonl(path: string): Record<string, unknown>[] {
  const text = readFileSync(path, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('agentrl synth', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentrl-synth-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('corpus: writes every world\'s documents as {id, url, title, contents} JSONL and options that regenerate them', async () => {
    const out = join(dir, 'kb');
    const r = await agentrl(['synth', 'corpus', '--seed', '4', '--per-type', '3', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('wrote 24 documents');
    const docs = jsonl(join(out, 'corpus.jsonl'));
    expect(docs).toHaveLength(2 * 4 * 3);
    for (const d of docs) expect(Object.keys(d).sort()).toEqual(['contents', 'id', 'title', 'url']);
    const opts = JSON.parse(readFileSync(join(out, 'worlds.json'), 'utf8'));
    expect(opts).toEqual({ seed: 4, perType: 3, worlds: ['train', 'heldout'] });
    expect(docs).toEqual(generateWorlds(opts).flatMap((w) => worldDocs(w)));
  });

  it('qa: writes QAs the evaluator reads, cycling target hops, every one uniquely answered; the same run twice gives the same file', async () => {
    const out1 = join(dir, 'qa1.jsonl');
    const out2 = join(dir, 'qa2.jsonl');
    const args = ['synth', 'qa', '--seed', '4', '--per-type', '6', '--world', 'heldout', '--count', '6', '--min-hops', '2', '--max-hops', '4'];
    const [r1, r2] = await Promise.all([agentrl([...args, '--out', out1]), agentrl([...args, '--out', out2])]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r1.stdout).toContain("wrote 6 QAs over world 'heldout'");
    expect(readFileSync(out2, 'utf8')).toBe(readFileSync(out1, 'utf8'));
    const lines = jsonl(out1);
    const world = generateWorlds({ seed: 4, perType: 6, worlds: ['train', 'heldout'] })[1]!;
    const checks = ruleChecks(world);
    expect(lines.map((l) => l.hops)).toEqual([2, 3, 4, 2, 3, 4]);
    for (const [i, l] of lines.entries()) {
      expect(Object.keys(l).sort()).toEqual(['answer', 'edits', 'golden_answers', 'hops', 'id', 'question', 'source', 'statements', 'world']);
      expect(l).toMatchObject({ id: `heldout-synth-${i}`, world: 'heldout', source: 'synth', golden_answers: [l.answer] });
      expect(Array.isArray(l.edits) && l.edits.length > 0).toBe(true);
      const c = await checks.validate({ question: l.question as string, answer: l.answer as string, statements: l.statements as string[], hops: l.hops as number });
      expect([c.supported.pass, c.unique.pass, c.hidden.pass]).toEqual([true, true, true]);
    }
  });

  it('qa --kb reads worlds.json; --ops llm runs against an OpenAI-compatible server', async () => {
    llm.reset();
    llm.fallback = (req) => {
      const prompt = req.body.messages.at(-1)!.content;
      if (prompt.includes('1. supported')) return '{"supported": true, "unique": true, "reason": "fine"}';
      const q = /^Question: (.*)$/m.exec(prompt)![1]!;
      const a = /^Answer: (.*)$/m.exec(prompt)![1]!;
      return JSON.stringify({ question: q.replace(/\?$/, 'by way of a bridge ?'), answer: a, statements: ['a bridge fact .'] });
    };
    const out = join(dir, 'qa-llm.jsonl');
    const r = await agentrl(['synth', 'qa', '--kb', join(dir, 'kb', 'worlds.json'), '--count', '2', '--min-hops', '1', '--max-hops', '2', '--ops', 'llm', '--llm-url', llm.url, '--llm-model', 'fake', '--out', out], { OPENAI_API_KEY: 'cli-key' });
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonl(out);
    expect(lines.map((l) => l.hops)).toEqual([1, 2]);
    expect(lines[1]!.question).toMatch(/by way of a bridge \?$/);
    expect(lines[1]!.statements).toContain('a bridge fact .');
    expect(llm.requests.length).toBeGreaterThanOrEqual(2);
    expect(llm.requests.every((q) => q.authorization === 'Bearer cli-key' && q.body.model === 'fake')).toBe(true);
  });

  it('refuses bad flags with a message naming them', async () => {
    const out = join(dir, 'bad.jsonl');
    const kb = join(dir, 'kb', 'worlds.json');
    // Through the CLI (exit code 1, message on stderr): the checks that live in the command itself.
    const cli: [string[], RegExp][] = [
      [['--kb', kb, '--per-type', '3'], /^agentrl: --kb gives the world options; drop --per-type \(use --qa-seed for the synthesis seed\)$/m],
      [['--per-type', '3', '--world', 'nope'], /^agentrl: --world nope: no such world \(the worlds are train, heldout\)$/m],
    ];
    const results = await Promise.all(cli.map(([flags]) => agentrl(['synth', 'qa', '--count', '1', ...flags, '--out', out])));
    for (const [i, [, msg]] of cli.entries()) {
      expect(results[i]!.code, results[i]!.stdout).toBe(1);
      expect(results[i]!.stderr).toMatch(msg);
    }
    // The rest in-process, with the CLI's defaults.
    const base: QaCliOptions = { seed: 0, perType: 3, worlds: ['train', 'heldout'], world: 'heldout', count: 1, minHops: 1, maxHops: 8, maxSteps: 16, pInject: 0.67, attempts: 20, ops: 'rule', llmKeyEnv: 'OPENAI_API_KEY', out };
    const inProcess: [Partial<QaCliOptions>, RegExp][] = [
      [{ minHops: 3, maxHops: 2 }, /--min-hops must be ≥ 1 and ≤ --max-hops \(got 3 and 2\)/],
      [{ ops: 'llm' }, /--ops llm needs --llm-url/],
      [{ ops: 'gpt' }, /--ops must be 'rule' or 'llm' \(got 'gpt'\)/],
      [{ maxSteps: 3 }, /--max-hops 8 cannot be reached in --max-steps 3 edits from a 1-hop seed; raise --max-steps to at least 7/],
      [{ perType: 0 }, /invalid world options: perType: Number must be greater than or equal to 1/],
      [{ worlds: ['a', 'a'], world: 'a' }, /--worlds lists a world twice: a,a/],
      [{ count: 0 }, /--count must be ≥ 1 \(got 0\)/],
      [{ ops: 'llm', llmUrl: 'localhost:1', llmModel: 'm' }, /LLM base URL must start with http/],
    ];
    for (const [o, msg] of inProcess) await expect(runSynthQa({ ...base, ...o })).rejects.toThrow(msg);
    await expect(runSynthQa({ ...base, kb: join(dir, 'missing.json') })).rejects.toThrow(/--kb .*missing\.json: cannot read it as JSON/);
  });

  it('gives up with a clear message when no QA reaches its target', async () => {
    // pInject 0: only fuzzing, so no seed QA ever gets a second hop.
    const o: QaCliOptions = { seed: 0, perType: 4, worlds: ['w'], world: 'w', count: 1, minHops: 2, maxHops: 2, maxSteps: 2, pInject: 0, attempts: 3, ops: 'rule', llmKeyEnv: 'X', out: join(dir, 'none.jsonl') };
    await expect(runSynthQa(o)).rejects.toThrow(/no 2-hop QA #0 after 3 seed QAs \(world 'w' too small, or --max-steps 2 \/ --p-inject 0 too low\)/);
  });
});

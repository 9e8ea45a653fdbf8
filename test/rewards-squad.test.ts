import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { answerTokens, em, f1, normalizeAnswer, PY_PUNCTUATION, PY_SPACE_CLASS, PY_WORD_CLASS, pySplit, pyStrip, squadScores, tokenF1 } from '../src/rewards/squad.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'rewards');

interface Case {
  name: string;
  prediction: string;
  golds: string[];
  normPrediction: string;
  normGolds: string[];
  em: number;
  f1: number;
}
/** Written by runs/rewards/squad_reference.py: the official SQuAD v1.1 functions run by CPython. */
const squad = JSON.parse(readFileSync(join(FIXTURES, 'squad-cases.json'), 'utf8')) as { python: string; cases: Case[]; fuzz: Case[] };

/** Written by runs/rewards/unicode_tables.py: CPython's str.lower(), str.isspace() and re's \w for every code point. */
const tables = JSON.parse(readFileSync(join(FIXTURES, 'python-unicode-tables.json'), 'utf8')) as {
  python: string;
  unicode: string;
  unassigned: [number, number][];
  space: number[];
  word: [number, number][];
  lower: number[][];
};

function expand(ranges: [number, number][]): Set<number> {
  const s = new Set<number>();
  for (const [a, b] of ranges) for (let c = a; c <= b; c++) s.add(c);
  return s;
}

describe('SQuAD metrics match the official Python script', () => {
  it('the fixture covers at least 40 hand-picked cases and a seeded random set', () => {
    expect(squad.cases.length).toBeGreaterThanOrEqual(40);
    expect(squad.fuzz.length).toBeGreaterThanOrEqual(200);
  });

  for (const set of ['cases', 'fuzz'] as const) {
    it(`normalised strings, EM and F1 agree on every ${set} entry`, () => {
      const mismatches: string[] = [];
      for (const c of squad[set]) {
        const got = {
          normPrediction: normalizeAnswer(c.prediction),
          normGolds: c.golds.map(normalizeAnswer),
          em: em(c.prediction, c.golds),
          f1: f1(c.prediction, c.golds),
        };
        const same =
          got.normPrediction === c.normPrediction &&
          JSON.stringify(got.normGolds) === JSON.stringify(c.normGolds) &&
          got.em === c.em &&
          Math.abs(got.f1 - c.f1) <= 1e-12;
        if (!same) mismatches.push(`${c.name}: ${JSON.stringify(c.prediction)} vs ${JSON.stringify(c.golds)} → got ${JSON.stringify(got)}, Python ${JSON.stringify({ normPrediction: c.normPrediction, normGolds: c.normGolds, em: c.em, f1: c.f1 })}`);
      }
      expect(mismatches).toEqual([]);
    });
  }

  it('squadScores gives the same EM and F1 as em() and f1()', () => {
    for (const c of [...squad.cases, ...squad.fuzz]) {
      expect(squadScores(c.prediction, c.golds)).toEqual({ em: em(c.prediction, c.golds), f1: f1(c.prediction, c.golds) });
    }
  });
});

describe('Python string semantics, code point by code point (Unicode ' + tables.unicode + ', CPython ' + tables.python + ')', () => {
  const unassigned = expand(tables.unassigned);
  const word = expand(tables.word);
  const space = new Set(tables.space);
  const lower = new Map(tables.lower.map(([cp, ...to]) => [cp!, String.fromCodePoint(...to)]));
  const wordRe = new RegExp(`^[${PY_WORD_CLASS}]$`, 'u');
  const spaceRe = new RegExp(`^[${PY_SPACE_CLASS}]$`, 'u');

  /** Every code point Python's Unicode database assigns (newer characters follow the JS engine). */
  function* assigned(): Generator<[number, string]> {
    for (let cp = 0; cp < 0x110000; cp++) {
      if ((cp >= 0xd800 && cp <= 0xdfff) || unassigned.has(cp)) continue;
      yield [cp, String.fromCodePoint(cp)];
    }
  }

  it('re \\w: letters, numbers and underscore', () => {
    const bad: string[] = [];
    for (const [cp, ch] of assigned()) if (wordRe.test(ch) !== word.has(cp)) bad.push(cp.toString(16));
    expect(bad).toEqual([]);
  });

  it('str.isspace() (what str.split() splits on), including U+001C–U+001F and U+0085 but not U+FEFF', () => {
    const bad: string[] = [];
    for (const [cp, ch] of assigned()) {
      if (spaceRe.test(ch) !== space.has(cp)) bad.push(cp.toString(16));
      if (pySplit(`x${ch}y`).length !== (space.has(cp) ? 2 : 1)) bad.push(`split ${cp.toString(16)}`);
    }
    expect(bad).toEqual([]);
    expect(space.has(0xfeff)).toBe(false);
    expect(/\s/.test('\ufeff')).toBe(true); // why JS's \s cannot be used
  });

  it('str.lower() equals toLowerCase() for every single code point', () => {
    const bad: string[] = [];
    for (const [cp, ch] of assigned()) if (ch.toLowerCase() !== (lower.get(cp) ?? ch)) bad.push(cp.toString(16));
    expect(bad).toEqual([]);
  });
});

describe('SQuAD metrics, hand-computed', () => {
  it('normalises step by step', () => {
    expect(normalizeAnswer('  The  Eiffel-Tower! ')).toBe('eiffeltower');
    expect(normalizeAnswer('An apple, a pear and THE plum')).toBe('apple pear and plum');
    expect(normalizeAnswer('a\u00a0b\u3000c')).toBe('b c');
    expect(normalizeAnswer('ΟΔΟΣ')).toBe('οδος');
    expect(PY_PUNCTUATION).toHaveLength(32);
    expect(normalizeAnswer(PY_PUNCTUATION)).toBe('');
    expect(answerTokens('the cat, the hat')).toEqual(['cat', 'hat']);
  });

  it.each([
    // prediction, golds, em, f1 (worked out by hand)
    ['the cat sat', 'cat sat down', 0, 0.8], // p = 2/2, r = 2/3 → 2·(2/3)/(5/3)
    ['a b c d', 'b c', 0, 0.8], // 'a' is an article: p = 2/3, r = 1
    ['x x y', 'x y y', 0, 2 / 3], // bag overlap min(2,1) + min(1,2) = 2: p = r = 2/3
    ['The  Eiffel-Tower!', 'eiffeltower', 1, 1],
    ['Paris', ['London', 'Paris, France'], 0, 2 / 3], // best gold: p = 1, r = 1/2
    ['Paris', ['London', 'paris'], 1, 1],
    ['', 'Paris', 0, 0],
    ['Paris', '', 0, 0],
    ['', '', 1, 0], // official script: num_same = 0 → F1 0, yet the empty strings are equal → EM 1
    ['the', 'a', 1, 0], // both normalise to ''
  ] as const)('%j vs %j → EM %d, F1 %d', (prediction, golds, wantEm, wantF1) => {
    expect(em(prediction, golds)).toBe(wantEm);
    expect(f1(prediction, golds)).toBeCloseTo(wantF1, 12);
  });

  it('tokenF1 counts tokens as a bag', () => {
    expect(tokenF1(['a', 'a', 'b'], ['a', 'b', 'b', 'c'])).toBeCloseTo((2 * (2 / 3) * (2 / 4)) / (2 / 3 + 2 / 4), 15);
    expect(tokenF1([], [])).toBe(0);
  });

  it('an empty gold list is an error that says what to pass', () => {
    expect(() => em('x', [])).toThrow(/gold answer list is empty/);
    expect(() => f1('x', [])).toThrow(/at least one gold answer/);
  });

  it('pyStrip strips Python whitespace only', () => {
    expect(pyStrip('\x85\u3000 query \x1c')).toBe('query');
    expect(pyStrip('\ufeffquery')).toBe('\ufeffquery');
  });
});

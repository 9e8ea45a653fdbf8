/**
 * The local BM25 index (src/tools/bm25-index.ts) on real SQLite files: rankings and scores against
 * FTS5's bm25 formula computed independently here (k1 = 1.2, b = 0.75, idf = log((N−n+0.5)/(n+0.5))
 * floored at 1e-6, term frequencies summed over title and contents, length = tokens of both), the
 * pruned query plan against the plain FTS5 query, hostile query text, access by url/id, and the
 * build's errors (with line numbers) and all-or-nothing writes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bm25Index, buildIndex, queryTerms } from '../src/tools/bm25-index.ts';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentrl-bm25-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Doc {
  id: string;
  title: string;
  contents: string;
  url?: string;
}

function writeCorpus(name: string, lines: (Doc | string)[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return path;
}

/** FTS5's bm25 for an OR of words, computed from the texts (ASCII corpora: words are [a-z0-9]+). */
function referenceScores(docs: Doc[], query: string[]): Map<string, number> {
  const tokens: string[][] = docs.map((d) => `${d.title} ${d.contents}`.toLowerCase().match(/[a-z0-9]+/g) ?? []);
  const N = docs.length;
  const avgdl = tokens.reduce((s, t) => s + t.length, 0) / N;
  const scores = new Map<string, number>();
  docs.forEach((d, i) => {
    let score = 0;
    let matched = false;
    for (const q of query) {
      const f = tokens[i]!.filter((t) => t === q).length;
      if (f === 0) continue;
      matched = true;
      const n = tokens.filter((t) => t.includes(q)).length;
      const idf = Math.max(Math.log((N - n + 0.5) / (n + 0.5)), 0) || 1e-6;
      score += (idf * f * 2.2) / (f + 1.2 * (0.25 + (0.75 * tokens[i]!.length) / avgdl));
    }
    if (matched) scores.set(d.id, score);
  });
  return scores;
}

const SPACE: Doc[] = [
  { id: 'd1', title: 'Apollo program', contents: 'The Apollo program landed astronauts on the Moon in 1969.' },
  { id: 'd2', title: 'Moon', contents: 'The Moon is the only natural satellite of the Earth.' },
  { id: 'd3', title: 'Mars', contents: 'Mars is the fourth planet from the Sun; rovers explore Mars.' },
  { id: 'd4', title: 'Saturn V', contents: 'Saturn V was the rocket of the Apollo program.' },
  { id: 'd5', title: 'Sun', contents: 'The Sun is a star at the centre of the Solar System.' },
  { id: 'd6', title: 'Tides', contents: 'Ocean tides are caused by the Moon and the Sun.', url: 'https://example.org/tides' },
];

describe('Bm25Index on a small corpus', () => {
  let index: Bm25Index;
  beforeAll(async () => {
    const built = await buildIndex(writeCorpus('space.jsonl', SPACE), join(dir, 'space.db'));
    expect(built.docs).toBe(6);
    index = new Bm25Index(join(dir, 'space.db'));
  });
  afterAll(() => index.close());

  it('scores one word exactly as FTS5 bm25 does (worked by hand)', () => {
    // 'apollo': in d1 (title + contents: f = 2, 12 tokens) and d4 (f = 1, 11 tokens); N = 6, 70 tokens
    // in all (12 + 11 + 12 + 11 + 13 + 11), avgdl = 11.6667, idf = ln(4.5/2.5) = 0.5877867.
    // d1: 0.5877867 · 2·2.2 / (2 + 1.2·(0.25 + 0.75·12/11.6667)) = 0.5877867 · 4.4 / 3.2257143 = 0.8017639
    // d4: 0.5877867 · 2.2 / (1 + 1.2·(0.25 + 0.75·11/11.6667)) = 0.5877867 · 2.2 / 2.1485714 = 0.6018560
    const hits = index.searchSync('apollo', 5);
    expect(hits.map((h) => h.id)).toEqual(['d1', 'd4']);
    expect(hits[0]!.score).toBeCloseTo(0.8017639185, 9);
    expect(hits[1]!.score).toBeCloseTo(0.6018560266, 9);
    expect(hits[0]).toMatchObject({ url: 'corpus://d1', title: 'Apollo program', contents: SPACE[0]!.contents });
  });

  it('ranks OR queries as the formula does, best first, a word in half the passages counting 1e-6', () => {
    for (const q of ['apollo moon', 'sun moon earth', 'mars planet rovers', 'the solar system star', 'saturn rocket apollo program']) {
      const want = [...referenceScores(SPACE, queryTerms(q)).entries()].sort((a, b) => b[1] - a[1]);
      const got = index.searchSync(q, 10);
      expect(got.length, q).toBe(want.length);
      got.forEach((h, i) => {
        expect(h.score!, `${q} #${i}`).toBeCloseTo(want[i]![1], 5);
        expect(h.score!, `${q} ${h.id}`).toBeCloseTo(referenceScores(SPACE, queryTerms(q)).get(h.id!)!, 5);
        if (i > 0) expect(h.score!).toBeLessThanOrEqual(got[i - 1]!.score!);
      });
    }
    // 'moon' is in 3 of 6 passages: idf ln(3.5/3.5) = 0 is floored at 1e-6, so d1 wins on 'apollo'.
    const hits = index.searchSync('apollo moon', 5);
    expect(hits.map((h) => h.id).slice(0, 2)).toEqual(['d1', 'd4']);
    // d1 gets 1e-6 · 2.2 / 2.2257143 = 9.88e-7 more for its one 'moon';
    // d2 (f = 2, 11 tokens) 1e-6 · 4.4 / 3.1485714 = 1.3974592e-6 ranks above d6 (f = 1) 1.0239362e-6.
    expect(hits[0]!.score).toBeCloseTo(0.8017649069, 9);
    expect(hits.slice(2).map((h) => h.id)).toEqual(['d2', 'd6']);
    expect(hits[2]!.score).toBeCloseTo(1.3974592e-6, 12);
    expect(hits[3]!.score).toBeCloseTo(1.0239362e-6, 12);
  });

  it('keeps top-k: fewer hits for a smaller k, none for k < 1', () => {
    expect(index.searchSync('the sun', 2).map((h) => h.id)).toEqual(index.searchSync('the sun', 10).slice(0, 2).map((h) => h.id));
    expect(index.searchSync('the sun', 2.9)).toHaveLength(2);
    expect(index.searchSync('the sun', 0)).toEqual([]);
    expect(index.searchSync('', 5)).toEqual([]);
    expect(index.searchSync('  ;;; ', 5)).toEqual([]);
    expect(index.searchSync('xylophone', 5)).toEqual([]);
  });

  it('never lets query text act as FTS5 syntax or SQL', async () => {
    const hostile = ['"', '-foo', 'a*', 'title:x', '(', ')', 'NEAR(a b)', 'NEAR', 'AND', 'OR', 'NOT', 'a AND', 'OR OR', '^moon', '+moon', 'moon^2', 'moon"', '{title}: moon', "'; DROP TABLE docs; --", '"" OR ""', '*', ':', '\u0000', 'Münch 東京 ٣ e\u0301'];
    for (const q of hostile) {
      await expect(index.search(q, 5), q).resolves.toBeInstanceOf(Array);
    }
    // Operators are just words: '-apollo' finds apollo, 'NOT apollo' finds 'not' or 'apollo'.
    expect(index.searchSync('-apollo', 5).map((h) => h.id)).toEqual(['d1', 'd4']);
    expect(index.searchSync('apollo*', 5).map((h) => h.id)).toEqual(['d1', 'd4']);
    expect(index.searchSync('title:mars', 5)[0]!.id).toBe('d3');
    expect(index.searchSync('NEAR(a b)', 5).map((h) => h.id)).toEqual(['d5']);
    expect(index.searchSync('AND', 5).map((h) => h.id)).toEqual(['d6']);
    expect(index.count()).toBe(6);
  });

  it('caps queries at 32 distinct words', () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`);
    expect(queryTerms(words.join(' '))).toEqual(words.slice(0, 32));
    expect(queryTerms('Moon moon MOON sun')).toEqual(['moon', 'sun']);
    expect(index.searchSync(`${words.join(' ')} mars`, 5)).toEqual([]);
  });

  it('counts the passages holding a word', () => {
    expect([index.documentFrequency('moon'), index.documentFrequency('Apollo'), index.documentFrequency('the'), index.documentFrequency('xylophone')]).toEqual([3, 2, 6, 0]);
  });

  it('reads passages by url or id, and null for unknown ones', async () => {
    expect(await index.access('https://example.org/tides')).toEqual({ id: 'd6', url: 'https://example.org/tides', title: 'Tides', contents: SPACE[5]!.contents });
    expect(await index.access('corpus://d2')).toMatchObject({ id: 'd2', title: 'Moon' });
    expect(await index.access('d3')).toMatchObject({ id: 'd3', url: 'corpus://d3' });
    expect(await index.access('corpus://d9')).toBeNull();
    expect(await index.access('')).toBeNull();
  });
});

describe('the pruned query plan', () => {
  // A Zipf-like corpus: the first words are in most passages (idf floored), the next ones common.
  const vocab = Array.from({ length: 60 }, (_, i) => `w${i}`);
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const word = () => vocab[Math.min(vocab.length - 1, Math.floor(vocab.length ** rand()) - 1)]!;
  const docs: Doc[] = Array.from({ length: 400 }, (_, i) => ({ id: `p${i}`, title: `${word()} ${word()}`, contents: Array.from({ length: 5 + Math.floor(rand() * 20) }, word).join(' ') }));
  const queries = Array.from({ length: 80 }, () => Array.from({ length: 1 + Math.floor(rand() * 5) }, word).join(' '));

  it('gives the plain FTS5 query\'s hits and scores (up to 2.2e-6 per word in half the passages)', async () => {
    const db = join(dir, 'zipf.db');
    await buildIndex(writeCorpus('zipf.jsonl', docs), db);
    const plain = new Database(db, { readonly: true });
    const plainStmt = plain.prepare('SELECT d.id, -rank AS score FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid WHERE docs_fts MATCH ? ORDER BY rank LIMIT ?');
    const pruned = new Bm25Index(db, { commonDf: 1 }); // every word in 2+ passages is "common"
    const standard = new Bm25Index(db);
    let rounds = 0;
    for (const q of queries) {
      const terms = queryTerms(q);
      const ref = referenceScores(docs, terms);
      const want = plainStmt.all(terms.map((t) => `"${t}"`).join(' OR '), 5) as { id: string; score: number }[];
      for (const index of [pruned, standard]) {
        const got = index.searchSync(q, 5);
        expect(got.length, q).toBe(want.length);
        got.forEach((h, i) => {
          expect(Math.abs(h.score! - want[i]!.score), `${q} #${i}`).toBeLessThan(1.2e-5);
          expect(Math.abs(h.score! - ref.get(h.id!)!), `${q} ${h.id}`).toBeLessThan(1.2e-5);
        });
      }
      rounds += want.length;
    }
    expect(rounds).toBeGreaterThan(300);
    plain.close();
    pruned.close();
    standard.close();
  });
});

describe('buildIndex', () => {
  it('accepts text for contents, numeric ids, missing urls and titles, blank lines and a byte-order mark', async () => {
    const corpus = writeCorpus('mixed.jsonl', ['\ufeff{"id": 7, "text": "seven samurai"}', '', '{"id": "x", "title": "T", "contents": "samurai jack", "url": "https://x.org"}', '   ']);
    const progress: [number, number, number][] = [];
    const r = await buildIndex(corpus, join(dir, 'mixed.db'), { batchSize: 1, onProgress: (a, b, c) => progress.push([a, b, c]) });
    expect(r.docs).toBe(2);
    expect(r.dbBytes).toBeGreaterThan(0);
    expect(progress.map((p) => p[2])).toEqual([1, 2]);
    expect(progress.at(-1)![1]).toBe(readFileSync(corpus).length);
    const index = new Bm25Index(join(dir, 'mixed.db'));
    expect(index.accessSync('7')).toEqual({ id: '7', url: 'corpus://7', title: '', contents: 'seven samurai' });
    expect(index.searchSync('samurai', 5).map((h) => h.url).sort()).toEqual(['corpus://7', 'https://x.org']);
    index.close();
  });

  const bad: [string, string[], RegExp][] = [
    ['malformed JSON', ['{"id":"a","contents":"x"}', '{"id":"b", contents}'], /bad\.jsonl line 2: not valid JSON/],
    ['a non-object line', ['{"id":"a","contents":"x"}', '', '[1, 2]'], /line 3: expected a JSON object/],
    ['a duplicate id', ['{"id":"a","contents":"x"}', '{"id":"b","contents":"y"}', '{"id":"a","contents":"z"}'], /line 3: duplicate id 'a'/],
    ['a duplicate url', ['{"id":"a","contents":"x","url":"u"}', '{"id":"b","contents":"y","url":"u"}'], /line 2: duplicate url 'u' \(id 'b'\)/],
    ['missing contents', ['{"id":"a","title":"x"}'], /line 1: missing 'contents' \(or 'text'\), a string, for id 'a'/],
    ['a missing id', ['{"contents":"x"}'], /line 1: missing 'id'/],
    ['a non-string title', ['{"id":"a","contents":"x","title":3}'], /line 1: 'title' must be a string/],
    ['no documents', ['', ' '], /holds no documents/],
  ];
  for (const [what, lines, message] of bad) {
    it(`refuses ${what}, naming the line, and leaves no index behind`, async () => {
      const out = join(dir, 'bad.db');
      await expect(buildIndex(writeCorpus('bad.jsonl', lines), out, { batchSize: 2 })).rejects.toThrow(message);
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.building`)).toBe(false);
    });
  }

  it('replaces an existing index only with a complete one', async () => {
    const out = join(dir, 'keep.db');
    await buildIndex(writeCorpus('good.jsonl', SPACE), out);
    await expect(buildIndex(writeCorpus('broken.jsonl', [JSON.stringify(SPACE[0]), '{']), out)).rejects.toThrow(/broken\.jsonl line 2/);
    const index = new Bm25Index(out);
    expect(index.count()).toBe(6);
    index.close();
    await expect(buildIndex(join(dir, 'none.jsonl'), out)).rejects.toThrow(/none\.jsonl not found/);
  });

  it('refuses to open what is not an index', () => {
    expect(() => new Bm25Index(join(dir, 'missing.db'))).toThrow(/not found; build it with: agentrl index build/);
    const other = join(dir, 'other.db');
    new Database(other).exec('CREATE TABLE t (x)').close();
    expect(() => new Bm25Index(other)).toThrow(/is not an agentrl BM25 index/);
  });
});

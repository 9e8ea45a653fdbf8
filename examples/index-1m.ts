/**
 * How the local BM25 index scales: generate N synthetic passages deterministically (60–100 words
 * each from a Zipf-distributed vocabulary of 50,000 made-up words, with 2–3 word titles), write them
 * as JSONL, time `buildIndex`, then time 1,000 random top-5 queries (2–6 words from the same Zipf
 * distribution, so they mix very common and rare words as real questions do). Prints one JSON line;
 * `commonOnlyQueries` counts the queries whose every word is in at least half the passages (FTS5
 * then has to score all those passages: see Bm25Index) and `latencyMsOthers` times the rest.
 *
 *   node --import tsx examples/index-1m.ts [--passages 1000000] [--out runs/index-1m] [--keep]
 *
 * The corpus and the index are deleted at the end unless --keep is given (1M passages ≈ 0.6 GB of
 * JSONL plus the index).
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Bm25Index, buildIndex } from '../src/tools/bm25-index.ts';
import { mulberry32 } from '../src/envs/rng.ts';
import { makeVocabulary, writeCorpus, zipf } from '../bench/synthetic-corpus.ts';

const VOCAB = 50_000;
const ZIPF_S = 1.0;
const QUERIES = 1_000;

/** A small seeded PRNG: the same corpus on every machine. */
const rng = mulberry32;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { passages: { type: 'string', default: '1000000' }, out: { type: 'string', default: 'runs/index-1m' }, keep: { type: 'boolean', default: false } } });
  const passages = Number(values.passages);
  if (!Number.isInteger(passages) || passages < 1) throw new Error(`--passages must be a positive integer (got ${values.passages})`);
  mkdirSync(values.out, { recursive: true });
  const corpus = join(values.out, 'corpus.jsonl');
  const db = join(values.out, 'index.db');
  const vocab = makeVocabulary(VOCAB, rng(0));

  let t = performance.now();
  await writeCorpus(corpus, passages, vocab, rng(1));
  const generateSeconds = (performance.now() - t) / 1000;
  console.error(`generated ${passages} passages (${statSync(corpus).size} bytes) in ${generateSeconds.toFixed(1)} s; indexing…`);

  let lastReport = 0;
  const built = await buildIndex(corpus, db, {
    onProgress: (read, total, docs) => {
      if (performance.now() - lastReport < 10_000) return;
      lastReport = performance.now();
      console.error(`  ${docs} docs, ${((100 * read) / total).toFixed(0)}% of the corpus read`);
    },
  });

  const index = new Bm25Index(db);
  const rand = rng(2);
  const rank = zipf(VOCAB, ZIPF_S, rand);
  const queries = Array.from({ length: QUERIES }, () => Array.from({ length: 2 + Math.floor(rand() * 5) }, () => vocab[rank()]).join(' '));
  const latencies: number[] = [];
  const others: number[] = [];
  let hits = 0;
  for (const q of queries) {
    t = performance.now();
    hits += index.searchSync(q, 5).length;
    const ms = performance.now() - t;
    latencies.push(ms);
    if (q.split(' ').some((w) => index.documentFrequency(w) < built.docs / 2)) others.push(ms);
  }
  index.close();
  latencies.sort((a, b) => a - b);
  others.sort((a, b) => a - b);
  const ms = (x: number) => Number(x.toFixed(2));

  const result = {
    passages: built.docs,
    corpusBytes: statSync(corpus).size,
    buildSeconds: Number(built.seconds.toFixed(1)),
    docsPerSecond: Math.round(built.docs / built.seconds),
    dbBytes: built.dbBytes,
    queries: QUERIES,
    topK: 5,
    meanHits: hits / QUERIES,
    latencyMs: { median: ms(quantile(latencies, 0.5)), p99: ms(quantile(latencies, 0.99)), max: ms(latencies.at(-1)!) },
    commonOnlyQueries: QUERIES - others.length,
    latencyMsOthers: { median: ms(quantile(others, 0.5)), p99: ms(quantile(others, 0.99)), max: ms(others.at(-1)!) },
  };
  if (!values.keep) {
    rmSync(corpus, { force: true });
    rmSync(db, { force: true });
  }
  console.log(JSON.stringify(result));
}

await main();
